"""A budget for log lines and events that any client can cause (refused requests, mostly).

One line per refusal lets a fuzzer or a misconfigured client fill the disk (issue 13 F13: 116,569
TFTP lines in 199 s). A :class:`LogBudget` lets the first ``burst`` lines of each source through
in each ``interval`` and holds back the rest; the caller still counts every one in its metrics
and logs what was held back as one summary line per interval (:meth:`LogBudget.summary`), in
the same key=value format. Pure: the caller hands it ``now``::

    budget = LogBudget(burst=10, interval=60.0)
    if budget.allow(peer_ip, reason, now):
        log.warning("refused", ...)         # and the event
    ...
    fields = budget.summary(now)             # at budget.summary_due, when set
    if fields:
        log.warning("refused_summary", **fields)
"""

from __future__ import annotations

import collections

OTHER_SOURCES = "other"  # held lines of sources past ``max_sources``, summed


class LogBudget:
    def __init__(self, burst: int = 10, interval: float = 60.0,
                 max_sources: int = 4096) -> None:
        self.burst = burst
        self.interval = interval
        self.max_sources = max_sources      # bounds the memory whatever the sources
        self.summary_due: float | None = None  # when something is held back: summary time
        self._window_end = float("-inf")
        self._passed: dict[str, int] = {}   # source -> lines let through in this window
        self._held_reasons: collections.Counter[str] = collections.Counter()
        self._held_sources: collections.Counter[str] = collections.Counter()

    def allow(self, source: str, reason: str, now: float) -> bool:
        """Whether this line (from ``source``, for ``reason``) is to be written; if not it is
        counted for the summary."""
        if now >= self._window_end:
            self._passed.clear()
            self._window_end = now + self.interval
        passed = self._passed.get(source)
        if passed is None and len(self._passed) < self.max_sources:
            passed = 0
        if passed is not None and passed < self.burst:
            self._passed[source] = passed + 1
            return True
        self._held_reasons[reason] += 1
        if source in self._held_sources or len(self._held_sources) < self.max_sources:
            self._held_sources[source] += 1
        else:
            self._held_sources[OTHER_SOURCES] += 1
        if self.summary_due is None:
            self.summary_due = self._window_end
        return False

    def summary(self, now: float) -> dict[str, object] | None:
        """Fields for one summary line of what was held back, once ``summary_due`` has come
        (None before, or when nothing was held); the count starts again."""
        if self.summary_due is None or now < self.summary_due:
            return None
        held = sum(self._held_reasons.values())
        top, top_held = self._held_sources.most_common(1)[0]
        fields: dict[str, object] = {
            "held": held, "sources": len(self._held_sources),
            "reasons": ",".join(f"{reason}:{count}"
                                for reason, count in sorted(self._held_reasons.items())),
            "top_source": top, "top_source_held": top_held,
            "burst": self.burst, "interval_s": self.interval}
        self._held_reasons.clear()
        self._held_sources.clear()
        self.summary_due = None
        return fields
