"""DHCP leases in Redis: atomic allocation (Lua), the lease contract hash, and lookups.

Keys (:mod:`shared.keys`; docs/dhcp.md documents them for operators):

``bootyard:lease:<ip>`` (the contract read by TFTP and HTTP)
    hash: ``mac`` (canonical, from chaddr), ``client`` (the client identity the lease belongs
    to, see below), ``state`` (``offered``, ``bound``, ``declined``, ``released``), ``expires``
    (Unix seconds, integer text), ``subnet`` (subnet name), ``hostname`` (may be empty). A lease
    is current when ``state == bound`` and ``expires`` > now.
``bootyard:leases:pool:<subnet>``
    sorted set of the subnet's dynamic addresses; the score is the Unix time from which the
    address may be handed out (0: never used; an offer's hold time; a lease's expiry; the end of
    a DECLINE quarantine). Allocation takes the lowest score not in the future, so expired leases
    return to the pool by themselves and recently used addresses are reused last.
``bootyard:leases:mac:<subnet>``
    hash ``client identity -> ip``: the address each client last held, offered to it again when
    free.

The client identity (RFC 2131 §4.2) is option 61 when the client sends it, else its htype and
chaddr (``services.dhcp.codec.client_identity``, in the DHCP service's compiled packet path);
for an Ethernet client (no option 61, or option 61 holding its own Ethernet address) it is its
canonical MAC. Two clients with one chaddr and different
option 61 (IPoIB, RFC 4390: hlen 0, chaddr empty) hold different leases.

Every step of an exchange (offer, request, release, decline) runs inside one Lua script, atomically
in Redis, so two DHCP processes on one Redis never hand one address to two clients.
:meth:`LeaseStore.run` sends a whole batch of steps (one per packet of a worker's batch) as one
script call: one command and one round trip per batch, and the step's boot timeline event is
appended to the event streams by the same script.

TFTP and HTTP read leases through :class:`Leases` (``holder(ip)``: the MAC holding a current
lease on an address); :class:`StaticLeases` is its in-memory double for unit tests.

Acknowledged leases and a Redis crash: Redis persists with ``appendfsync everysec`` (up to a
second of writes can be lost when it is killed). The store keeps the leases it acknowledged in
the last :data:`JOURNAL_SECONDS` seconds and, after any Redis failure, writes them again (only
where Redis has nothing newer) before its next step, so a crash and restart loses no acknowledged
lease.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from shared import keys, metrics, store as door
from shared.lease_script import LIBRARY, RS, SEP
from shared.lease_wire import Deadline, Replies, fcall, pack
from shared.store import InventoryUnavailable, redis_errors

JOURNAL_SECONDS = 10.0
# offer_step and request_step write the separators into their f-strings
assert (SEP, RS) == ("\x1f", "\x1e")

# Outcome and Step are built per packet: named tuples, made where it counts with _tuple_new
# (tuple.__new__: no Python __init__ runs, ~2,000 instructions less each than a dataclass's,
# docs/benchmarks.md, DHCP, eighth round).
_tuple_new = tuple.__new__


class Outcome(NamedTuple):
    """A lease step's result: ``kind`` is ok, nak, conflict, exhausted or ignored."""

    kind: str
    ip: str = ""
    state: str = ""  # for ok: the lease state now (offered, bound, released, declined)
    expires: int = 0
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    ip: str
    mac: str
    state: str
    expires: int
    subnet: str
    hostname: str
    client: str = ""  # the client identity ('': the MAC, as in records from before it was kept)

    def __post_init__(self) -> None:
        if not self.client:
            object.__setattr__(self, "client", self.mac)

    def current(self, now: float | None = None) -> bool:
        return self.state == "bound" and self.expires > (time.time() if now is None else now)


class Step(NamedTuple):
    op: str  # offer, request, release, decline, restore
    subnet: str
    mac: str
    now: int
    args: tuple[str, ...]
    client: str = ""  # the client identity (codec.client_identity()); '': the MAC
    journal: bool = False  # remember an acknowledged bind for replay after a Redis failure
    # (interface, boot_file, boot_reason, known) to record; known: the MAC is an inventory
    # host, whose event also goes to its own stream
    event: tuple[str, str, str, bool] | None = None
    text: str = ""  # the step packed for the lease function (offer_step, request_step), or ''

    def packed(self) -> str:
        """The step for the lease function (its batch's time is the batch's, not the step's)."""
        return self.text or _packed(self.op, self.subnet, self.mac, self.client, self.now,
                                    self.event, self.args)


# the texts of the numbers steps carry (a batch's steps share their now, hold and expiry):
# str() of an int is ~700 instructions, a dict lookup ~100
_NUMBERS: dict[int, str] = {}


def _number(n: int) -> str:
    text = _NUMBERS.get(n)
    if text is None:
        if len(_NUMBERS) > 256:
            _NUMBERS.clear()
        text = _NUMBERS[n] = str(n)
    return text


def _packed(op: str, subnet: str, mac: str, client: str, now: int,
            event: tuple[str, str, str, bool] | None, args: tuple[str, ...]) -> str:
    """A step's fields joined for the lease function: the header of nine (lease_script's
    comment), then the op's arguments; a separator inside a field is dropped."""
    if event is None:
        fields = (op, subnet, mac, client or mac, _number(now), "0", "", "", "", *args)
    else:
        fields = (op, subnet, mac, client or mac, _number(now), "2" if event[3] else "1",
                  event[0], event[1], event[2], *args)
    text = SEP.join(fields)
    if text.count(SEP) != len(fields) - 1 or RS in text:  # a separator inside a field
        text = SEP.join(v.replace(SEP, "").replace(RS, "") for v in fields)
    return text


_EXPIRY: dict[str, int] = {}  # int() of the expiries' texts the lease function answered


def _expiry(text: str) -> int:
    if len(_EXPIRY) > 256:
        _EXPIRY.clear()
    seconds = _EXPIRY[text] = int(text)
    return seconds


def _record(ip: str, raw: dict[str, str]) -> LeaseRecord | None:
    if not raw or "mac" not in raw:
        return None
    try:
        expires = int(raw.get("expires", "0"))
    except ValueError:
        expires = 0
    mac = raw.get("mac", "")
    return LeaseRecord(ip, mac, raw.get("state", ""), expires, raw.get("subnet", ""),
                       raw.get("hostname", ""), raw.get("client", ""))


def connect(url: str, timeout: float = 2.0):
    """A client for lease steps: no silent retries and no idle health checks, so a Redis restart
    surfaces as an error on the next step (and the journal is replayed before any new step)."""
    return door.connect(url, timeout, retries=False)


class Leases:
    """What TFTP and HTTP ask of the leases, read from Redis. Each question raises
    InventoryUnavailable when Redis cannot be reached (or no connection frees up in time)."""

    def __init__(self, client) -> None:
        self._redis = client

    async def lease(self, ip: str) -> LeaseRecord | None:
        """The lease record of ``ip`` (current or not: check ``.current()``), None if none."""
        with redis_errors("leases"):
            raw = await self._redis.hgetall(keys.lease(ip))
        return _record(ip, raw)

    async def holder(self, ip: str, now: float | None = None) -> str | None:
        """The MAC holding a current lease on ``ip``, or None."""
        return _holder(await self.lease(ip), now)

    async def all(self) -> list[LeaseRecord]:
        """Every lease record (any state), sorted by address."""
        with redis_errors("leases"):
            found = [k async for k in self._redis.scan_iter(match=keys.LEASE_PREFIX + "*",
                                                             count=1000)]
            pipe = self._redis.pipeline(transaction=False)
            for key in found:
                pipe.hgetall(key)
            raws = await pipe.execute() if found else []
        records = [_record(k[len(keys.LEASE_PREFIX):], raw) for k, raw in zip(found, raws)]
        return _sorted(r for r in records if r is not None)


class StaticLeases:
    """:class:`Leases` in memory, for unit tests: ``StaticLeases([LeaseRecord(...), ...])``;
    ``broken=True``: every question raises InventoryUnavailable, as if Redis were down."""

    def __init__(self, records: Iterable[LeaseRecord] = (), *, broken: bool = False) -> None:
        self.records = {r.ip: r for r in records}
        self.broken = broken

    def _check(self) -> None:
        if self.broken:
            raise InventoryUnavailable("Redis unreachable (StaticLeases(broken=True))")

    def put(self, record: LeaseRecord) -> None:
        self.records[record.ip] = record

    async def lease(self, ip: str) -> LeaseRecord | None:
        self._check()
        return self.records.get(ip)

    async def holder(self, ip: str, now: float | None = None) -> str | None:
        return _holder(await self.lease(ip), now)

    async def all(self) -> list[LeaseRecord]:
        self._check()
        return _sorted(self.records.values())


def _holder(lease: LeaseRecord | None, now: float | None) -> str | None:
    if lease is None or not lease.current(now):
        return None
    return lease.mac or None


def _sorted(records: Iterable[LeaseRecord]) -> list[LeaseRecord]:
    def by_address(rec: LeaseRecord):
        try:
            return (0, int(ipaddress.IPv4Address(rec.ip)))
        except ValueError:
            return (1, 0)
    return sorted(records, key=by_address)


class LeaseStore:
    """Lease steps for the DHCP service. Build steps with the ``*_step`` methods, send a batch
    with :meth:`run` (one command, one round trip, atomic in Redis)."""

    def __init__(self, client, *, offer_hold: int = 30, quarantine: int = 600,
                 wait_replicas: int = 0, wait_timeout: float = 0.1) -> None:
        """``wait_replicas``: after each batch, wait (Redis ``WAIT``, at most ``wait_timeout``
        seconds) until that many replicas hold its writes before the replies go out; a batch
        that times out is counted (``bootyard_lease_replication_total{outcome="short"}``) and
        answered anyway: the journal below replays it on a new master after a failover."""
        self.redis = client
        self.offer_hold = offer_hold
        self.quarantine = quarantine
        self.wait_replicas = wait_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))
        self._loaded = False  # LIBRARY loaded (FUNCTION LOAD) on this Redis since the last failure
        # (monotonic time, step, outcome) of recent acknowledged binds; replayed as restore
        # steps (built only then) after a Redis failure
        self._journal: collections.deque[tuple[float, Step, Outcome]] = collections.deque()
        self._replay: list[Step] = []
        # reserved hosts acknowledged from the cache while Redis was unreachable (the degraded
        # mode): {(client, ip): restore step}, written with the replay when Redis answers again
        self._offline: dict[tuple[str, str], Step] = {}
        self.replayed = 0  # restore steps the last replay wrote (after a Redis failure)
        self._idle: list = []  # connections of _evalsha with no call in flight
        self._open: set = set()
        self._replies: dict = {}  # connection -> its Replies (shared/lease_wire.py)
        self.failed = False

    # -- steps (``event``: (interface, boot_file, boot_reason, known), see Step; ``client``:
    # the client identity, codec.client_identity(), if it is not the MAC) --------------------
    # (offer_step and request_step take their arguments by position too: the DHCP service's
    # compiled packet path calls them so, ~1,200 instructions less a call than with keywords)
    def offer_step(self, subnet: str, mac: str, reserved: str | None, requested: str | None,
                   hostname: str, now: int, event=None, client: str = "",
                   discover: str | None = None, arches: str = "") -> Step:
        """``discover``: the client's arches (option 93, comma-separated) to record the
        DISCOVER's ``dhcp.discover`` event in the same step, before the OFFER's (with
        ``event``); None: no discover event. ``arches``: the same, given with or without the
        discover event: an inventory host's DISCOVER with arches may begin a new boot attempt
        (shared/attempts.py)."""
        numbers = _NUMBERS
        hold = numbers.get(now + self.offer_hold) or _number(now + self.offer_hold)
        reserved, requested = reserved or "", requested or ""
        flag, arches = "0" if discover is None else "1", discover or arches
        # packed here, in one f-string of the lease function's fields (lease_script.py): no
        # call, tuple or join more per step (docs/benchmarks.md, DHCP, ninth round)
        nows = numbers.get(now) or _number(now)
        if event is None:
            text = (f"offer\x1f{subnet}\x1f{mac}\x1f{client or mac}\x1f{nows}\x1f0\x1f\x1f\x1f"
                    f"\x1f{hold}\x1f{reserved}\x1f{requested}\x1f{hostname}\x1f{flag}\x1f{arches}")
        else:
            text = (f"offer\x1f{subnet}\x1f{mac}\x1f{client or mac}\x1f{nows}\x1f"
                    f"{'2' if event[3] else '1'}\x1f{event[0]}\x1f{event[1]}\x1f{event[2]}\x1f"
                    f"{hold}\x1f{reserved}\x1f{requested}\x1f{hostname}\x1f{flag}\x1f{arches}")
        args = (hold, reserved, requested, hostname, flag, arches)
        if text.count(SEP) != 14 or RS in text:  # a separator inside a field
            text = _packed("offer", subnet, mac, client, now, event, args)
        return _tuple_new(Step, ("offer", subnet, mac, now, args, client, False, event, text))

    def request_step(self, subnet: str, mac: str, ip: str, reserved: str | None,
                     hostname: str, lease_time: int, now: int, event=None,
                     client: str = "") -> Step:
        numbers = _NUMBERS
        expires = numbers.get(now + lease_time) or _number(now + lease_time)
        reserved = reserved or ""
        nows = numbers.get(now) or _number(now)
        if event is None:  # (packed here: offer_step)
            text = (f"request\x1f{subnet}\x1f{mac}\x1f{client or mac}\x1f{nows}\x1f0\x1f\x1f"
                    f"\x1f\x1f{expires}\x1f{reserved}\x1f{ip}\x1f{hostname}")
        else:
            text = (f"request\x1f{subnet}\x1f{mac}\x1f{client or mac}\x1f{nows}\x1f"
                    f"{'2' if event[3] else '1'}\x1f{event[0]}\x1f{event[1]}\x1f{event[2]}\x1f"
                    f"{expires}\x1f{reserved}\x1f{ip}\x1f{hostname}")
        args = (expires, reserved, ip, hostname)
        if text.count(SEP) != 12 or RS in text:  # a separator inside a field
            text = _packed("request", subnet, mac, client, now, event, args)
        return _tuple_new(Step, ("request", subnet, mac, now, args, client, True, event, text))

    def release_step(self, subnet: str, mac: str, ip: str, *, now: int,
                     only_offered: bool = False, event=None, client: str = "") -> Step:
        return Step("release", subnet, mac, now, (ip, "1" if only_offered else "0"), client,
                    event=event)

    def decline_step(self, subnet: str, mac: str, ip: str, *, now: int, event=None,
                     client: str = "") -> Step:
        return Step("decline", subnet, mac, now, (ip, str(now + self.quarantine)), client,
                    event=event)

    # -- running -------------------------------------------------------------------------------
    async def run(self, steps: Sequence[Step]) -> list[Outcome]:
        """Run ``steps`` atomically in one round trip; raise InventoryUnavailable if Redis
        fails (then nothing of the batch may be assumed done)."""
        try:
            with redis_errors("leases"):
                if self._replay or self._offline:
                    replay = self._replay + list(self._offline.values())
                    await self._execute([Step("restore", s.subnet, s.mac, int(time.time()),
                                              s.args, s.client) for s in replay])
                    self.replayed, self._replay = len(replay), []
                    self._offline.clear()
                results = await self._execute(steps)
        except InventoryUnavailable:
            # After a failure no kept connection is trusted, ours or the client's.
            await self.aclose()
            await self.redis.connection_pool.disconnect()
            self._fail()
            raise
        self.failed = False
        try:  # (the expiry is an integer's text: a batch's repeat, the numbers' texts kept)
            outcomes = [_tuple_new(Outcome, (kind, ip, state, _EXPIRY.get(expires)
                                             or _expiry(expires), reason))
                        for kind, ip, state, expires, reason in results]
        except ValueError:
            outcomes = [_tuple_new(Outcome, (kind, ip, state, int(float(expires or 0)), reason))
                        for kind, ip, state, expires, reason in results]
        now = time.monotonic()
        journal = self._journal
        for step, outcome in zip(steps, outcomes):
            if step.journal and outcome.kind == "ok":
                journal.append((now, step, outcome))
        while self._journal and self._journal[0][0] < now - JOURNAL_SECONDS:
            self._journal.popleft()
        return outcomes

    async def _execute(self, steps: Sequence[Step]) -> list:
        if not steps:
            return []
        # the batch's time (its events'), then the steps (packed when built: Step.text)
        packed = f"{time.time():.3f}{RS}{RS.join([s.text or s.packed() for s in steps])}{RS}"
        if not self._loaded:
            await self._load()
        try:
            reply = await self._script(packed)
        except door.ResponseError as exc:  # a Redis that lost its functions (emptied, new)
            if "function not found" not in str(exc).lower():
                raise
            await self._load()
            reply = await self._script(packed)
        results = [r.split(SEP) for r in reply.split(RS)[:-1]]
        if len(results) != len(steps):
            raise InventoryUnavailable(f"lease script answered {len(results)} results for "
                                       f"{len(steps)} steps (a bootyard version mismatch?)")
        return results

    async def _load(self) -> None:
        """Load the lease steps' function library (REPLACE: the same text under the same
        name, whoever loaded it before)."""
        await self._command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        self._loaded = True

    async def _script(self, packed: str):
        """The batch function, then (``wait_replicas``) ``WAIT`` on the same connection, which
        is what WAIT measures: both sent at once, one round trip."""
        call = fcall(packed)
        if not self.wait_replicas:  # (straight to _commands: one coroutine less per batch)
            return (await self._commands(call))[0]
        reply, acked = await self._commands(call, ("WAIT", self.wait_replicas, self._wait_ms))
        metrics.LEASE_REPLICATION.labels(
            "acked" if int(acked) >= self.wait_replicas else "short").inc()
        return reply

    async def _command(self, *args):
        return (await self._commands(args))[0]

    async def _commands(self, *commands):
        """Commands (argument tuples, or one already in the protocol's bytes) sent together
        on a connection of our own, their replies in order (the
        client's pool, retry and observability layers cost more per call than a small
        batch's own work, docs/benchmarks.md). One connection per call in flight; one that
        fails in any way is closed, never reused; an error reply is raised after every reply
        has been read (the connection stays usable)."""
        conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.redis.connection_pool.make_connection()
            self._open.add(conn)
        replies, refused = [], None
        try:
            replies_of = self._replies.get(conn)
            if replies_of is None:
                if not conn.is_connected:  # connect(): Sentinel's finds the master
                    await conn.connect()
                replies_of = self._replies[conn] = Replies.attach(conn)
            replies_of.transport.writelines([c if c.__class__ is bytes else pack(c)
                                             for c in commands])
            with Deadline(conn.socket_timeout):
                replies = await replies_of.wait(len(commands))
            for i, reply in enumerate(replies):
                if isinstance(reply, door.ResponseError):
                    refused = refused or reply
                    replies[i] = None
        except BaseException:
            self._open.discard(conn)
            self._replies.pop(conn, None)
            await conn.disconnect()
            raise
        self._idle.append(conn)
        if refused is not None:
            raise refused
        return replies

    async def aclose(self) -> None:
        """Close the connections :meth:`run` opened (the client is closed by its owner)."""
        for conn in list(self._open):
            await conn.disconnect()
        self._open.clear()
        self._idle.clear()
        self._replies.clear()

    def acked_offline(self, step: Step, ip: str) -> None:
        """A reserved host's REQUEST (``step``, a :meth:`request_step`) acknowledged with
        ``ip`` from the inventory cache while Redis was unreachable: its lease is written with
        the journal's replay, before any new step, once Redis answers again (one entry per
        client and address however often it renews meanwhile)."""
        client = step.client or step.mac
        self._offline[(client, ip)] = Step("restore", step.subnet, step.mac, step.now, (
            ip, "bound", step.args[0], step.args[3]), step.client)

    def _fail(self) -> None:
        if not self.failed:
            self.failed = True
            self._replay = [Step("restore", step.subnet, step.mac, step.now, (
                outcome.ip, outcome.state, str(outcome.expires), step.args[3]), step.client)
                for _, step, outcome in self._journal]
            self._loaded = False

    # -- one-step helper (tests, CLI) ----------------------------------------------------------
    async def step(self, step: Step) -> Outcome:
        return (await self.run([step]))[0]

    # -- pools ---------------------------------------------------------------------------------
    async def sync_pool(self, subnet: str, ranges: Iterable[tuple[str, str]],
                        reserved: Iterable[str] = ()) -> int:
        """Make the pool of ``subnet`` hold exactly the range addresses that are not reserved;
        new ones are free now, existing ones keep their score. Returns the pool size."""
        wanted: set[str] = set()
        for first, last in ranges:
            start, end = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
            wanted.update(str(ipaddress.IPv4Address(n)) for n in range(start, end + 1))
        wanted -= set(reserved)
        key = keys.pool(subnet)
        with redis_errors("leases"):
            present = set(await self.redis.zrange(key, 0, -1))
            new = sorted(wanted - present)
            gone = present - wanted
            scores = {}
            if new:  # an address with a lease record (a pool rebuilt after loss) keeps it
                pipe = self.redis.pipeline(transaction=False)
                for ip in new:
                    pipe.hmget(keys.lease(ip), "state", "expires")
                for ip, (state, expires) in zip(new, await pipe.execute()):
                    held = state in ("offered", "bound", "declined") and (expires or "").isdigit()
                    scores[ip] = int(expires) if held else 0
            pipe = self.redis.pipeline(transaction=True)
            if new:
                pipe.zadd(key, scores, nx=True)
            if gone:
                pipe.zrem(key, *gone)
            if new or gone:
                await pipe.execute()
        return len(wanted)

    async def pool_usage(self, subnet: str, now: int | None = None) -> tuple[int, int]:
        """(addresses in the pool, addresses held: offered, bound or quarantined)."""
        now = int(time.time()) if now is None else now
        key = keys.pool(subnet)
        with redis_errors("leases"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.zcard(key)
            pipe.zcount(key, f"({now}", "+inf")
            size, used = await pipe.execute()
        return int(size), int(used)

    async def expired_since(self, subnet: str, since: int, now: int) -> list[LeaseRecord]:
        """Bound leases of ``subnet`` whose expiry fell in (since, now] (for expire events)."""
        with redis_errors("leases"):
            ips = await self.redis.zrangebyscore(keys.pool(subnet), f"({since}", now)
            if not ips:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for ip in ips:
                pipe.hgetall(keys.lease(ip))
            raws = await pipe.execute()
        out = []
        for ip, raw in zip(ips, raws):
            rec = _record(ip, raw)
            if rec is not None and rec.state == "bound" and since < rec.expires <= now:
                out.append(rec)
        return out
