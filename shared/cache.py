"""The inventory as services see it: an in-memory view kept in step with Redis.

:class:`InventoryView` answers the questions services ask (``host(mac)``, ``host_by_ip(ip)``,
``profile(name)``, ``subnet_for_relay(giaddr)`` ...) from memory, in microseconds.
:class:`InventoryCache` is a view that loads every object at start, then follows Redis keyspace
notifications so that a change made by anyone (the CLI, ``redis-cli``, another service) is seen
within a second, and re-reads everything every ``resync_interval`` seconds (and after a lost
connection) so nothing missed stays missed. Where Redis forbids ``CONFIG SET`` and notifications
are off, it falls back to a full re-read every second and says so in its log.

A record that fails validation never replaces a good one: the cache keeps the last good version
(or treats the object as unknown if it never had one), logs the key, field, value and reason once
per change, and counts it in ``bootyard_inventory_invalid_records_total``.

Test doubles with the same questions: :class:`StaticInventory` (fixed records; empty if given
none) and :class:`BrokenInventory` (every question raises InventoryUnavailable).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shared import keys, logs, metrics
from shared.records import Export, Host, Image, Mirror, Profile, Subnet
from shared.schema import KINDS, split_key
from shared.store import InventoryUnavailable, ResponseError, WrongType, db_index, redis_errors
from shared.validation import parse_record

ChangeListener = Callable[[str, str], None]


def notification_pattern() -> str:
    """One glob for every object kind's keys (``bootyard:[deg...][eim...]*``), subscribed to instead
    of a pattern per kind: Redis matches each keyspace notification against every subscribed
    pattern, and the DHCP lease writes (``bootyard:lease:*``, three hash writes per exchange)
    are notified too: one pattern instead of ten is ~5 % less of Redis's work per exchange
    (docs/benchmarks.md, DHCP, fifth round). It may also match keys of no kind (a few
    ``bootyard:mirrorsync:...`` writes): :func:`split_key` drops those; it never matches the
    per-packet keys (``lease``, ``leases:``, ``attempt``, ``events`` streams)."""
    first, second = ("".join(sorted({name[i] for name in KINDS})) for i in (0, 1))
    return f"{keys.PREFIX}:[{first}][{second}]*"  # two letters: ``export`` but not ``events``
# Hands every object hash the cache reads to someone else (the audit trail's DirectRecorder):
# (key, hash ({} if gone), initial: read by the first load)
RawListener = Callable[[str, dict, bool], Awaitable[None]]


class InventoryView:
    """Valid records by kind and id, with the indexes services need. Reads never touch Redis."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {name: {} for name in KINDS}
        self._ip_to_mac: dict[str, str] = {}
        self._listeners: list[ChangeListener] = []
        self.version = 0  # bumped on every change: render caches compare it
        self.ready = True
        self._memos: dict[str, tuple[int, dict]] = {}

    # -- questions ---------------------------------------------------------------------------
    def _check(self) -> None:
        if not self.ready:
            raise InventoryUnavailable("inventory not loaded yet: Redis has not answered")

    def host(self, mac: str) -> Host | None:
        """The host with this canonical MAC, or None (unknown, or disabled-and-invalid)."""
        if not self.ready:  # (_check, written out: the DHCP service asks once a packet)
            self._check()
        return self._objects["host"].get(mac)

    def knows_host(self, mac: str) -> bool:
        """Whether the MAC is a host of the inventory (the events' ``known``: its own stream)."""
        return self.host(mac) is not None

    def host_by_ip(self, ip: str) -> Host | None:
        self._check()
        mac = self._ip_to_mac.get(ip)
        return self._objects["host"].get(mac) if mac else None

    def profile(self, name: str) -> Profile | None:
        self._check()
        return self._objects["profile"].get(name)

    def subnet(self, name: str) -> Subnet | None:
        self._check()
        return self._objects["subnet"].get(name)

    def export(self, name: str) -> Export | None:
        self._check()
        return self._objects["export"].get(name)

    def mirror(self, name: str) -> Mirror | None:
        self._check()
        return self._objects["mirror"].get(name)

    def image(self, name: str) -> Image | None:
        self._check()
        return self._objects["image"].get(name)

    def all(self, kind: str) -> list[Any]:
        self._check()
        return list(self._objects[kind].values())

    def hosts(self) -> list[Host]:
        return self.all("host")

    def memo(self, name: str) -> dict:
        """A dict for answers derived from the inventory (a host's groups resolved:
        shared/groups.py), emptied whenever the inventory changes."""
        found = self._memos.get(name)
        if found is None or found[0] != self.version:
            found = self._memos[name] = (self.version, {})
        return found[1]

    def subnets(self) -> list[Subnet]:
        return [s for s in self.all("subnet") if s.enabled]

    def subnet_containing(self, ip: str) -> Subnet | None:
        """The enabled subnet whose network holds ``ip`` (the most specific one)."""
        address = ipaddress.IPv4Address(ip)
        best = None
        for subnet in self.subnets():
            if address in subnet.network and (
                    best is None or subnet.network.prefixlen > best.network.prefixlen):
                best = subnet
        return best

    def subnet_for_relay(self, giaddr: str) -> Subnet | None:
        """The subnet a relay at ``giaddr`` serves: one listing it in ``relays``, else the one
        whose network holds it (RFC 2131 §4.3.1)."""
        for subnet in self.subnets():
            if giaddr in subnet.relays:
                return subnet
        return self.subnet_containing(giaddr)

    # -- changes -----------------------------------------------------------------------------
    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(kind, id)`` after any object changes or disappears."""
        self._listeners.append(listener)

    def _put(self, kind: str, ident: str, record: Any | None) -> None:
        objects = self._objects[kind]
        old = objects.get(ident)
        if old == record:
            return
        if kind == "host":
            if old is not None and old.ip and self._ip_to_mac.get(old.ip) == ident:
                del self._ip_to_mac[old.ip]
            if record is not None and record.ip:
                self._ip_to_mac[record.ip] = ident
        if record is None:
            objects.pop(ident, None)
        else:
            objects[ident] = record
        self.version += 1
        metrics.INVENTORY_OBJECTS.labels(kind).set(len(objects))
        for listener in self._listeners:
            listener(kind, ident)


class StaticInventory(InventoryView):
    """A fixed inventory for unit tests of policy: ``StaticInventory(hosts=[...], ...)``."""

    def __init__(self, *, hosts: Iterable[Host] = (), profiles: Iterable[Profile] = (),
                 subnets: Iterable[Subnet] = (), exports: Iterable[Export] = (),
                 mirrors: Iterable[Mirror] = (), groups: Iterable[Any] = (),
                 images: Iterable[Image] = ()) -> None:
        super().__init__()
        for kind, records in (("host", hosts), ("profile", profiles), ("subnet", subnets),
                              ("export", exports), ("mirror", mirrors), ("group", groups),
                              ("image", images)):
            for record in records:
                self.put(kind, record)

    def put(self, kind: str, record: Any) -> None:
        self._put(kind, getattr(record, KINDS[kind].id_field), record)

    def remove(self, kind: str, ident: str) -> None:
        self._put(kind, ident, None)


class BrokenInventory(InventoryView):
    """Every question fails as if Redis were down and nothing had ever been loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False


class InventoryCache(InventoryView):
    """An InventoryView that follows Redis. ``await cache.run(stop)`` in the service's TaskGroup;
    ``await cache.wait_ready()`` before serving."""

    def __init__(self, client, *, resync_interval: float = 30.0, poll_interval: float = 1.0,
                 service: str = "cache", on_raw: RawListener | None = None) -> None:
        super().__init__()
        self._on_raw = on_raw
        self.ready = False
        self._redis = client
        self._resync_interval = resync_interval
        self._poll_interval = poll_interval
        self._log = logs.get_logger(f"{service}.inventory")
        self._reported: dict[str, tuple] = {}
        self._ready_event = asyncio.Event()
        self._redis_down = False
        self.mode = "starting"  # "notifications" or "polling" once running

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    async def run(self, stop: asyncio.Event) -> None:
        """Load, then follow changes until ``stop`` is set; reconnects on its own."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._follow(stop)
                return
            except InventoryUnavailable as exc:
                self._mark_down(str(exc))
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 5.0)

    async def refresh(self) -> None:
        """Re-read every object now (also used by tests and after reconnects)."""
        with redis_errors("inventory"):
            found = [k async for k in self._redis.scan_iter(match=keys.ANY_KEY, count=1000)]
            objects = [k for k in found if split_key(k)]
            pipe = self._redis.pipeline(transaction=False)
            for key in objects:
                pipe.hgetall(key)
            hashes = await pipe.execute(raise_on_error=False) if objects else []
        seen = {name: set() for name in KINDS}
        for key, raw in zip(objects, hashes):
            if isinstance(raw, Exception):  # a key of the wrong type: ignored, said once
                if not str(raw).startswith("WRONGTYPE"):
                    with redis_errors("inventory"):
                        raise raw
                self._wrong_type(key)
                continue
            kind, ident = split_key(key)
            seen[kind.name].add(ident)
            self._apply(key, raw)
            if self._on_raw is not None:
                await self._on_raw(key, raw, not self.ready)
        for name in KINDS:
            for ident in list(self._objects[name]):
                if ident not in seen[name]:
                    self._put(name, ident, None)
                    if self._on_raw is not None:
                        await self._on_raw(keys.object_key(name, ident), {}, False)
        metrics.INVENTORY_RELOADS.labels("full").inc()
        self._mark_up()
        if not self.ready:
            self.ready = True
            self._ready_event.set()
            self._log.info("inventory_loaded", mode=self.mode,
                           **{k: len(v) for k, v in self._objects.items()})

    async def _follow(self, stop: asyncio.Event) -> None:
        notifications = await self._enable_notifications()
        if not notifications:
            self.mode = "polling"
            await self.refresh()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self._poll_interval)
                except TimeoutError:
                    await self.refresh()
            return
        self.mode = "notifications"
        db = db_index(self._redis)
        pubsub = self._redis.pubsub()
        try:
            with redis_errors("inventory"):
                await pubsub.psubscribe(f"__keyspace@{db}__:{notification_pattern()}")
            await self.refresh()  # after subscribing, so no change falls between the two
            loop = asyncio.get_running_loop()
            next_resync = loop.time() + self._resync_interval
            while not stop.is_set():
                with redis_errors("inventory"):
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=0.25)
                if message is not None:
                    key = message["channel"].split(":", 1)[1]
                    await self._reload_key(key)
                if loop.time() >= next_resync:
                    await self.refresh()
                    next_resync = loop.time() + self._resync_interval
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
                pass

    async def _enable_notifications(self) -> bool:
        """Make sure Redis publishes keyspace events for hashes and generic commands."""
        with redis_errors("inventory"):
            try:
                current = (await self._redis.config_get("notify-keyspace-events")).get(
                    "notify-keyspace-events", "")
                wanted = set(current) | {"K"}
                if "A" not in wanted:
                    wanted |= {"g", "h", "x"}
                if set(current) != wanted:
                    await self._redis.config_set("notify-keyspace-events", "".join(sorted(wanted)))
                return True
            except ResponseError as exc:  # CONFIG renamed or forbidden
                self._log.warning("keyspace_notifications_unavailable", reason=str(exc),
                                  fallback=f"full re-read every {self._poll_interval}s")
                return False

    async def _reload_key(self, key: str) -> None:
        if not split_key(key):
            return
        try:
            with redis_errors("inventory"):
                raw = await self._redis.hgetall(key)
        except WrongType:
            self._wrong_type(key)
            return
        metrics.INVENTORY_RELOADS.labels("notification").inc()
        self._apply(key, raw)
        if self._on_raw is not None:
            await self._on_raw(key, raw, False)

    def _apply(self, key: str, raw: dict[str, str]) -> None:
        kind, ident = split_key(key)
        if not raw:
            self._reported.pop(key, None)
            self._put(kind.name, ident, None)
            return
        record, problems = parse_record(kind, ident, raw)
        fingerprint = tuple(sorted(raw.items()))
        if problems and self._reported.get(key) != fingerprint:
            self._reported[key] = fingerprint
            kept = self._objects[kind.name].get(ident)
            for problem in problems:
                if problem.severity == "error":
                    self._log.warning(
                        "inventory_invalid_record", key=problem.key, field=problem.field,
                        value=problem.value, reason=problem.reason,
                        action="kept last good version" if kept else "treated as unknown")
                else:
                    self._log.info("inventory_record_warning", key=problem.key,
                                   field=problem.field, value=problem.value, reason=problem.reason)
            if record is None:
                metrics.INVALID_RECORDS.labels(kind.name).inc()
        elif not problems:
            self._reported.pop(key, None)
        if record is not None:
            self._put(kind.name, ident, record)

    def _wrong_type(self, key: str) -> None:
        if self._reported.get(key) != ("WRONGTYPE",):
            self._reported[key] = ("WRONGTYPE",)
            self._log.warning("inventory_wrong_type", key=key, action="ignored",
                              reason="not a hash (bootyard validate names it)")

    def _mark_down(self, reason: str) -> None:
        metrics.REDIS_UP.set(0)
        if not self._redis_down:
            self._redis_down = True
            self._log.error("redis_unreachable", reason=reason,
                            action="serving the last loaded inventory; retrying")

    def _mark_up(self) -> None:
        metrics.REDIS_UP.set(1)
        if self._redis_down:
            self._redis_down = False
            self._log.info("redis_reachable_again")
