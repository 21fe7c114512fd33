"""The boot timeline: what every service did for a machine, in capped Redis streams.

Streams (:mod:`shared.keys`): ``bootyard:events`` (every event, capped near 100,000 entries) and
``bootyard:events:<mac>`` (one host's events, capped near 1,000) for the hosts in the inventory.
A MAC the inventory does not know (a pool client, a machine booting for discovery) gets no stream
of its own: its events are in the global stream only, so a flood of made-up MACs cannot create
Redis keys without bound. :meth:`EventLog.read` of a MAC merges its own stream (if any) with its
entries among the global stream's newest :data:`GLOBAL_SCAN`, and :meth:`EventLog.follow` of a MAC
follows the global stream, which has every event. Each entry holds the fields
``ts`` (Unix time in seconds, with milliseconds, taken when the event happened), ``service``
(left out when the kind begins with it and a dot, as ``dhcp.ack`` of the service ``dhcp``:
:func:`header` and :func:`service_of`; :meth:`Event.from_entry` puts it back),
``kind`` (``dhcp.ack``, ``tftp.transfer``, ``http.script`` ...), ``mac`` and ``ip`` when known,
and the event's own details (:data:`EVENT_FIELDS`: the layout of each DHCP event), and last, for an
inventory host's events, ``attempt``: the id of the host's boot attempt when the event was
written (shared/attempts.py; :attr:`Event.attempt`).

:meth:`EventLog.emit` never blocks and never raises: it queues the event, and a background task
writes the queue to Redis in batches, one script call each (``await log.run(stop)`` in the service's
TaskGroup, or ``await log.flush()`` in one-shot code). While Redis is down events wait in a bounded
queue; when it overflows the oldest are dropped and counted (``bootyard_events_dropped_total``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from shared import attempts, keys, logs, metrics
from shared.store import InventoryUnavailable, redis_errors

GLOBAL_STREAM = keys.EVENTS_STREAM
host_stream = keys.host_events  # one inventory host's stream
GLOBAL_MAXLEN = 100_000
HOST_MAXLEN = 1_000
GLOBAL_SCAN = 20_000  # newest global entries searched for a MAC's events by read()
SCAN_CHUNK = 1_000
QUEUE_LIMIT = 20_000
DROPPED = metrics.counter("bootyard_events_dropped_total",
                          "Events dropped because Redis was unreachable and the queue was full")

# The layout of an entry: these fields first, in this order, in every event (``service`` only
# where the kind does not say it: header()) ...
HEADER = ("ts", "service", "kind", "mac")
# ... then the kind's own fields, in this order (a field without a value is left out; fields a
# kind does not list follow them). The one definition of the DHCP events: EventLog.emit orders
# fields by it, and the lease script, which writes the events of its steps itself, is generated
# from it (shared/leases.py); tests/dhcp/test_leases.py checks that the two write the same.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "dhcp.discover": ("arch",),
    "dhcp.offer": ("ip", "subnet", "interface", "boot_file", "boot_reason"),
    "dhcp.ack": ("ip", "subnet", "interface", "boot_file", "boot_reason"),
    "dhcp.inform": ("ip", "subnet", "interface", "boot_file", "boot_reason"),
    "dhcp.nak": ("ip", "subnet", "interface", "reason"),
    "dhcp.ignored": ("ip", "subnet", "interface", "reason", "detail"),
    "dhcp.release": ("ip", "subnet", "interface", "result", "reason"),
    "dhcp.decline": ("ip", "subnet", "interface", "result", "reason"),
    "dhcp.expire": ("ip", "subnet"),
}


def header(service: str, kind: str) -> tuple[str, ...]:
    """The HEADER fields an event of ``kind`` written by ``service`` carries: ``service`` is
    left out when the kind begins with it (``dhcp.ack`` by ``dhcp``): the kind says it, and
    every DHCP exchange writes two events (two arguments less per XADD and its AOF text,
    docs/benchmarks.md, DHCP, eighth round)."""
    if kind_says_service(service, kind):
        return tuple(name for name in HEADER if name != "service")
    return HEADER


def kind_says_service(service: str, kind: str) -> bool:
    return kind.startswith(f"{service}.")


def service_of(kind: str) -> str:
    """The service of an entry without a ``service`` field: its kind's first part."""
    name, dot, _ = kind.partition(".")
    return name if dot and name else "?"


SEP = "\x1f"  # separates the fields of a packed event (and of a lease step: lease_script.py)
RS = "\x1e"  # separates the packed events of a batch

# Writes a batch of queued events: each to the global stream, an inventory host's also to its own
# with its boot attempt's id (shared/attempts.py) appended. ARGV[1]: the packed events, each
# ended by RS: own-stream MAC or '', attempt op ('discover', 'ack', ''), boot file, boot reason,
# then the entry's field/value pairs (ts first); ARGV[2]: now (integer seconds).
_FLUSH = """
local now = tonumber(ARGV[2])
%(attempts)s
for packed in string.gmatch(ARGV[1], '([^\\30]*)\\30') do
  local a = {}
  for f in string.gmatch(packed .. '\\31', '([^\\31]*)\\31') do a[#a + 1] = f end
  local e = {}
  for i = 5, #a do e[#e + 1] = a[i] end
  if a[1] ~= '' then
    local id = attempt_of(a[1], a[2], e[2], now, a[3], a[4])
    if id then
      e[#e + 1] = 'attempt'
      e[#e + 1] = id
    end
    redis.call('XADD', '%(global)s', 'MAXLEN', '~', %(global_max)d, '*', unpack(e))
    -- (pcall: a host stream of another type, made by hand, loses that host's copy only)
    redis.pcall('XADD', '%(host_prefix)s' .. a[1], 'MAXLEN', '~', %(host_max)d, '*', unpack(e))
  else
    redis.call('XADD', '%(global)s', 'MAXLEN', '~', %(global_max)d, '*', unpack(e))
  end
end
return 1
""" % {"attempts": attempts.LUA, "global": GLOBAL_STREAM, "global_max": GLOBAL_MAXLEN,
       "host_prefix": keys.HOST_EVENTS_PREFIX, "host_max": HOST_MAXLEN}


def _pack(mac: str | None, step: tuple[str, str, str] | None, entry: dict[str, str]) -> str:
    """One queued event for :data:`_FLUSH` (a separator inside a value is dropped)."""
    fields = [mac or "", *(step or ("", "", ""))]
    for name, value in entry.items():
        fields += (name, value)
    text = SEP.join(fields)
    if text.count(SEP) != len(fields) - 1 or RS in text:
        text = SEP.join(v.replace(SEP, "").replace(RS, "") for v in fields)
    return text + RS


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    ts: float
    service: str
    kind: str
    mac: str | None
    fields: dict[str, str]
    attempt: str | None = None  # the boot attempt it was written in (shared/attempts.py)

    def json(self) -> dict[str, Any]:
        """The one JSON shape of an event (the admin API, ``bootyard events --json``)."""
        return {"id": self.id, "ts": self.ts, "service": self.service, "kind": self.kind,
                "mac": self.mac, "fields": self.fields, "attempt": self.attempt}

    @classmethod
    def from_entry(cls, entry_id: str, data: dict[str, str]) -> Event:
        data = dict(data)
        try:
            ts = float(data.pop("ts"))
        except (KeyError, ValueError):
            ts = int(entry_id.split("-", 1)[0]) / 1000
        kind = data.pop("kind", "?")
        return cls(id=entry_id, ts=ts, service=data.pop("service", None) or service_of(kind),
                   kind=kind, mac=data.pop("mac", None) or None, fields=data,
                   attempt=data.pop("attempt", None) or None)


@dataclasses.dataclass(frozen=True)
class History:
    """What :meth:`EventLog.history` read: the events, and where :meth:`EventLog.follow` goes
    on from (the global stream's newest id when it was read, ``0-0`` if it was empty)."""
    events: list[Event]
    cursor: str


def _content(data: dict[str, str]) -> tuple:
    """What identifies one event written to two streams (the entry ids differ)."""
    return tuple(sorted(data.items()))


class EventLog:
    """``known(mac)`` says whether a MAC is an inventory host (so its events also go to its own
    stream); None: every MAC is. An exception from it counts as known."""

    def __init__(self, client, service: str, known: Callable[[str], bool] | None = None) -> None:
        self._redis = client
        self.service = service
        self._known = known
        self._queue: collections.deque[tuple[str | None, dict[str, str],
                                             tuple[str, str, str] | None]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._log = logs.get_logger(f"{service}.events")
        self._failing = False

    # -- writing -------------------------------------------------------------------------------
    def emit(self, kind: str, mac: str | None = None, *,
             attempt_step: tuple[str, str, str] | None = None, **fields: Any) -> None:
        """Queue one event (``kind`` like ``dhcp.ack``); values are stored as text.
        ``attempt_step``: the DHCP service's events that no lease step wrote, (op, boot file,
        boot reason) with op ``discover`` (a DISCOVER with option 93: it may begin a boot
        attempt) or ``ack`` (shared/attempts.py)."""
        entry = {"ts": f"{time.time():.3f}", "service": self.service, "kind": kind}
        if kind_says_service(self.service, kind):  # the kind says it (header())
            del entry["service"]
        if mac:
            entry["mac"] = mac
        layout = EVENT_FIELDS.get(kind)
        if layout:
            fields = {**{n: fields[n] for n in layout if n in fields}, **fields}
        for name, value in fields.items():
            if value is not None:
                entry[name] = value if isinstance(value, str) else str(value)
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            DROPPED.inc()
        self._queue.append((mac if mac and self.has_stream(mac) else None, entry, attempt_step))
        self._wakeup.set()

    def has_stream(self, mac: str) -> bool:
        """Whether ``mac``'s events also go to its own stream (it is an inventory host)."""
        if self._known is None:
            return True
        try:
            return bool(self._known(mac))
        except Exception:  # noqa: BLE001 - inventory not loaded: keep the host's stream
            return True

    async def flush(self) -> None:
        """Write everything queued; raises InventoryUnavailable (and keeps the queue) on failure."""
        while self._queue:
            batch = list(itertools.islice(self._queue, 500))
            packed = "".join(_pack(mac, step, entry) for mac, entry, step in batch)
            with redis_errors("events"):  # one script: the same round trip as a pipeline
                await self._redis.eval(_FLUSH, 0, packed, int(time.time()))
            for _ in batch:
                self._queue.popleft()
            metrics.EVENTS_EMITTED.labels(self.service).inc(len(batch))

    async def run(self, stop: asyncio.Event, interval: float = 0.05) -> None:
        """Write queued events until ``stop``; then a last flush (bounded by the caller's grace)."""
        while not stop.is_set():
            waiter = asyncio.ensure_future(self._wakeup.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            self._wakeup.clear()
            await self._flush_logged()
            await asyncio.sleep(interval)  # gather a batch
        await self._flush_logged()

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
            if self._failing:
                self._failing = False
                self._log.info("events_written_again")
        except InventoryUnavailable as exc:
            if not self._failing:
                self._failing = True
                self._log.error("events_not_written", reason=str(exc), queued=len(self._queue))
            await asyncio.sleep(1.0)
            self._wakeup.set()

    # -- reading -------------------------------------------------------------------------------
    async def read(self, mac: str | None = None, count: int = 200) -> list[Event]:
        """The events of :meth:`history`."""
        return (await self.history(mac, count)).events

    async def history(self, mac: str | None = None, count: int = 200) -> History:
        """The latest ``count`` events (of one host, or all), oldest first by when they happened
        (``ts``): services write events in batches, so stream order can differ slightly from
        time order under load (a DHCP ack batched behind the HTTP fetch it led to).

        For a MAC: its own stream merged with its entries among the global stream's newest
        :data:`GLOBAL_SCAN` (the events from before it was in the inventory, or all of them for
        a MAC the inventory does not know). An event in both is returned once, with the global
        stream's id. The cursor is the global stream's id, never a host stream's: the two
        streams' ids for one event differ, and following on from a host stream's id could
        repeat events."""
        if mac is None:
            with redis_errors("events"):
                entries = await self._redis.xrevrange(GLOBAL_STREAM, count=count)
            return History(sorted((Event.from_entry(i, d) for i, d in reversed(entries)),
                                  key=lambda e: e.ts),
                           entries[0][0] if entries else "0-0")
        matches: list[tuple[str, dict[str, str]]] = []
        cursor = "0-0"
        with redis_errors("events"):
            # the host's stream first: writers append to the global stream before the host's,
            # so each event read here has its global copy at or below the cursor read next
            own = await self._redis.xrevrange(host_stream(mac), count=count)
            start, scanned = "+", 0
            while scanned < GLOBAL_SCAN and len(matches) < count:
                chunk = await self._redis.xrevrange(GLOBAL_STREAM, max=start,
                                                    count=min(SCAN_CHUNK, GLOBAL_SCAN - scanned))
                if chunk and start == "+":
                    cursor = chunk[0][0]
                matches += [(i, d) for i, d in chunk if d.get("mac") == mac]
                scanned += len(chunk)
                if len(chunk) < SCAN_CHUNK:
                    break
                start = "(" + chunk[-1][0]
        return History(merge_host_entries(matches, own)[-count:], cursor)

    async def read_hosts(self, macs: Iterable[str], count: int = 200) -> dict[str, list[Event]]:
        """Each inventory host's latest ``count`` events from its own stream (oldest first, by
        ``ts``), in one pipelined round trip: the events of many hosts at once (their boot
        states), without scanning the global stream per host as :meth:`read` does. A host has
        no list here until its first event."""
        macs = list(macs)
        out: dict[str, list[Event]] = {}
        for start in range(0, len(macs), SCAN_CHUNK):
            chunk = macs[start:start + SCAN_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for mac in chunk:
                pipe.xrevrange(host_stream(mac), count=count)
            with redis_errors("events"):
                replies = await pipe.execute()
            for mac, entries in zip(chunk, replies):
                if entries:
                    out[mac] = sorted((Event.from_entry(i, d) for i, d in reversed(entries)),
                                      key=lambda e: e.ts)
        return out

    async def follow(self, mac: str | None = None, last_id: str = "$",
                     block_ms: int = 1000) -> AsyncIterator[Event]:
        """Yield new events as they arrive (forever; cancel the consumer to stop). Follows the
        global stream (every event is there), keeping only ``mac``'s if given; ``last_id`` is a
        global stream id (:meth:`read`'s events carry one where they can)."""
        while True:
            with redis_errors("events"):
                reply = await self._redis.xread({GLOBAL_STREAM: last_id}, block=block_ms,
                                                count=500)
            for _name, entries in reply or ():
                for entry_id, data in entries:
                    last_id = entry_id
                    if mac is None or data.get("mac") == mac:
                        yield Event.from_entry(entry_id, data)


def merge_host_entries(global_entries: Iterable[tuple[str, dict[str, str]]],
                       own_entries: Iterable[tuple[str, dict[str, str]]]) -> list[Event]:
    """One host's events from its entries in the global stream and in its own stream: each event
    once (with its global id when it has one), in time order.

    An event written to both streams is one event; equal events are not: a batch stamps one
    ``ts``, so a client's retransmitted REQUEST answered twice in one batch gives two identical
    ``dhcp.ack``. So each content counts as many times as the stream holding more copies has
    it: all global entries, plus the oldest own entries beyond the global count (those older
    than the part of the global stream that was searched)."""
    merged = list(global_entries)
    in_global = collections.Counter(_content(data) for _id, data in merged)
    own_by_content: dict[tuple, list[tuple[str, dict[str, str]]]] = {}
    for entry in own_entries:
        own_by_content.setdefault(_content(entry[1]), []).append(entry)
    for content, entries in own_by_content.items():
        extra = len(entries) - in_global[content]
        if extra > 0:
            merged += sorted(entries, key=lambda e: _id_order(e[0]))[:extra]
    return sorted((Event.from_entry(i, d) for i, d in merged),
                  key=lambda e: (e.ts, _id_order(e.id)))


def _id_order(entry_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in entry_id.split("-"))


def format_event(event: Event, previous_ts: float | None = None) -> str:
    """One timeline line: local time, the gap since the previous event, service, kind, details."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts)) + \
        f".{int(event.ts * 1000) % 1000:03d}"
    gap = f"+{event.ts - previous_ts:7.3f}s" if previous_ts is not None else " " * 9
    details = " ".join(f"{k}={v}" for k, v in sorted(event.fields.items()))
    who = "" if event.mac is None else f"{event.mac} "
    return f"{stamp} {gap} {event.service:<11} {event.kind:<22} {who}{details}".rstrip()
