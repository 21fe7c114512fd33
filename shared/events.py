"""The boot timeline: what every service did for a machine, in capped Redis streams.

Streams: ``bootyard:events`` (every event, capped near 100,000 entries) and
``bootyard:events:<mac>`` (one host's events, capped near 1,000). Each entry holds the fields
``ts`` (Unix time in seconds, with milliseconds, taken when the event happened), ``service``,
``kind`` (``dhcp.ack``, ``tftp.transfer``, ``http.script`` ...), ``mac`` and ``ip`` when known,
and the event's own details.

:meth:`EventLog.emit` never blocks and never raises: it queues the event, and a background task
writes the queue to Redis in pipelined batches (``await log.run(stop)`` in the service's
TaskGroup, or ``await log.flush()`` in one-shot code). While Redis is down events wait in a bounded
queue; when it overflows the oldest are dropped and counted (``bootyard_events_dropped_total``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from shared import logs, metrics
from shared.store import InventoryUnavailable, redis_errors

GLOBAL_STREAM = "bootyard:events"
GLOBAL_MAXLEN = 100_000
HOST_MAXLEN = 1_000
QUEUE_LIMIT = 20_000
DROPPED = metrics.counter("bootyard_events_dropped_total",
                          "Events dropped because Redis was unreachable and the queue was full")


def host_stream(mac: str) -> str:
    return f"bootyard:events:{mac}"


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    ts: float
    service: str
    kind: str
    mac: str | None
    fields: dict[str, str]

    @classmethod
    def from_entry(cls, entry_id: str, data: dict[str, str]) -> Event:
        data = dict(data)
        try:
            ts = float(data.pop("ts"))
        except (KeyError, ValueError):
            ts = int(entry_id.split("-", 1)[0]) / 1000
        return cls(id=entry_id, ts=ts, service=data.pop("service", "?"),
                   kind=data.pop("kind", "?"), mac=data.pop("mac", None) or None, fields=data)


class EventLog:
    def __init__(self, client, service: str) -> None:
        self._redis = client
        self.service = service
        self._queue: collections.deque[tuple[str | None, dict[str, str]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._log = logs.get_logger(f"{service}.events")
        self._failing = False

    # -- writing -------------------------------------------------------------------------------
    def emit(self, kind: str, mac: str | None = None, **fields: Any) -> None:
        """Queue one event (``kind`` like ``dhcp.ack``); values are stored as text."""
        entry = {"ts": f"{time.time():.3f}", "service": self.service, "kind": kind}
        if mac:
            entry["mac"] = mac
        for name, value in fields.items():
            if value is not None:
                entry[name] = value if isinstance(value, str) else str(value)
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            DROPPED.inc()
        self._queue.append((mac, entry))
        self._wakeup.set()

    async def flush(self) -> None:
        """Write everything queued; raises InventoryUnavailable (and keeps the queue) on failure."""
        while self._queue:
            batch = list(self._queue)[:500]
            pipe = self._redis.pipeline(transaction=False)
            for mac, entry in batch:
                pipe.xadd(GLOBAL_STREAM, entry, maxlen=GLOBAL_MAXLEN, approximate=True)
                if mac:
                    pipe.xadd(host_stream(mac), entry, maxlen=HOST_MAXLEN, approximate=True)
            with redis_errors("events"):
                await pipe.execute()
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
        """The latest ``count`` events (of one host, or all), oldest first by when they happened
        (``ts``): services write events in batches, so stream order can differ slightly from
        time order under load (a DHCP ack batched behind the HTTP fetch it led to)."""
        stream = host_stream(mac) if mac else GLOBAL_STREAM
        with redis_errors("events"):
            entries = await self._redis.xrevrange(stream, count=count)
        return sorted((Event.from_entry(i, d) for i, d in reversed(entries)), key=lambda e: e.ts)

    async def follow(self, mac: str | None = None, last_id: str = "$",
                     block_ms: int = 1000) -> AsyncIterator[Event]:
        """Yield new events as they arrive (forever; cancel the consumer to stop)."""
        stream = host_stream(mac) if mac else GLOBAL_STREAM
        while True:
            with redis_errors("events"):
                reply = await self._redis.xread({stream: last_id}, block=block_ms, count=100)
            for _name, entries in reply or ():
                for entry_id, data in entries:
                    last_id = entry_id
                    yield Event.from_entry(entry_id, data)


def newest_id(events: Iterable[Event], default: str = "$") -> str:
    """The highest stream id among ``events`` (where to follow on from), ``default`` if none."""
    ids = [e.id for e in events]
    return max(ids, key=lambda i: tuple(int(p) for p in i.split("-"))) if ids else default


def format_event(event: Event, previous_ts: float | None = None) -> str:
    """One timeline line: local time, the gap since the previous event, service, kind, details."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts)) + \
        f".{int(event.ts * 1000) % 1000:03d}"
    gap = f"+{event.ts - previous_ts:7.3f}s" if previous_ts is not None else " " * 9
    details = " ".join(f"{k}={v}" for k, v in sorted(event.fields.items()))
    who = "" if event.mac is None else f"{event.mac} "
    return f"{stamp} {gap} {event.service:<11} {event.kind:<22} {who}{details}".rstrip()
