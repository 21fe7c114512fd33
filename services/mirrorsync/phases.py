"""Where a sync's time goes: one :class:`PhaseClock` per sync, its phases in the log line, the
``mirror.published`` event, the status hash and ``bootyard_mirrorsync_phase_duration_seconds``.

Phases up to the publish (the sync's ``duration``: from its start to the new snapshot
published): ``prepare`` (status, leftovers, free space, the base directory), ``rsync`` (the copy;
rsync's output read as it comes), ``metadata`` (the second pass over repository metadata),
``check``, ``publish`` (trace file, fencing, the rename). After the publish, off that path but
still under the mirror's lock: ``prune`` (old snapshots removed) and ``clone`` (the next sync's
base made, :meth:`~services.mirrorsync.snapshots.Snapshots.prepare_next`).
"""

from __future__ import annotations

import contextlib
import time

BEFORE_PUBLISH = ("prepare", "rsync", "metadata", "check", "publish")
AFTER_PUBLISH = ("prune", "clone")
PHASES = BEFORE_PUBLISH + AFTER_PUBLISH


class PhaseClock:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        assert name in PHASES, name
        start = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.monotonic() - start

    def text(self) -> str:
        """``prepare=0.01 rsync=0.25 ...`` (seconds, in phase order)."""
        return " ".join(f"{p}={self.times[p]:.3f}" for p in PHASES if p in self.times)
