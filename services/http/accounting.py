"""One record per HTTP request: the metrics and the summary log line come from it.

Every request the service answers (the aiohttp path, the fast path, the admin API) ends with
:meth:`Accounting.record`. Records are gathered and written out together once per event-loop
turn (:meth:`flush`, scheduled with ``call_soon``): the counters and histograms get one update
per label value instead of several locked updates per request, and the ``event=request`` lines
are formatted and written in one go (``EventLogger.info_each``), as DHCP does per batch. A turn
is short (the flush runs before the loop waits for I/O again), so metrics and logs lag a request
by microseconds, never by a scrape interval.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, NamedTuple

from services.http import metrics as m
from shared import logs, metrics as shared_metrics

log = logs.get_logger("http")


class Record(NamedTuple):
    family: str  # route family (metrics label)
    status: int
    sent: int  # response body bytes
    seconds: float  # from the request head to the end of the response
    method: str
    path: str  # without the query string (it may hold a token)
    ip: str | None
    mac: str | None = None
    via: str | None = None  # "fast": answered by the fast path
    auth: str | None = None  # install files, the done callback: token, reserved or lease


class Accounting:
    """Metrics and the per-request log line, from one record per request."""

    def __init__(self) -> None:
        self._pending: list[Record] = []
        self._tallies: collections.Counter = collections.Counter()
        self._scheduled = False

    def record(self, rec: Record) -> None:
        self._pending.append(rec)
        if not self._scheduled:
            self._schedule()

    def tally(self, child: Any) -> None:
        """Add one to a labelled counter child (e.g. ``m.RENDERS_BY[kind, "cached"]``) with the
        next flush."""
        self._tallies[child] += 1
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (a unit test calling in directly): write at once
            self.flush()
            return
        self._scheduled = True

    def flush(self) -> None:
        self._scheduled = False
        records, self._pending = self._pending, []
        tallies, self._tallies = self._tallies, collections.Counter()
        for child, count in tallies.items():
            child.inc(count)
        if not records:
            return
        counts: collections.Counter = collections.Counter()
        sent: collections.Counter = collections.Counter()
        durations: dict[str, list[float]] = collections.defaultdict(list)
        status_class = m.STATUS_CLASS
        for rec in records:
            counts[rec.family, status_class.get(rec.status, "5xx")] += 1
            if rec.sent:
                sent[rec.family] += rec.sent
            durations[rec.family].append(rec.seconds)
        for key, count in counts.items():
            m.REQUESTS_BY[key].inc(count)
        for family, total in sent.items():
            m.SENT_BY[family].inc(total)
        for family, values in durations.items():
            shared_metrics.observe_all(m.DURATION_BY[family], values)
        if log.isEnabledFor(20):  # INFO
            log.info_each("request", (_fields(rec) for rec in records))


def _fields(rec: Record) -> dict[str, Any]:
    fields = {"method": rec.method, "path": rec.path, "status": rec.status, "bytes": rec.sent,
              "ms": f"{rec.seconds * 1000:.2f}", "family": rec.family, "ip": rec.ip}
    if rec.mac:
        fields["mac"] = rec.mac
    if rec.via:
        fields["via"] = rec.via
    if rec.auth:
        fields["auth"] = rec.auth
    return fields
