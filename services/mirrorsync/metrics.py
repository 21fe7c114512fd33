"""The mirror sync service's metrics (docs/metrics.md lists them). ``mirror`` is the one open
label (an inventory name); ``reason`` is :data:`services.mirrorsync.policy.FAILURE_REASONS`."""

from __future__ import annotations

from services.mirrorsync.phases import PHASES
from services.mirrorsync.policy import FAILURE_REASONS
from shared import metrics

RESULTS = ("published", "failed", "skipped")

LAST_SUCCESS = metrics.gauge(
    "bootyard_mirrorsync_last_success_timestamp_seconds",
    "When the mirror was last published (Unix seconds)", {"mirror": ()}, across_processes="max")
LAST_ATTEMPT = metrics.gauge(
    "bootyard_mirrorsync_last_attempt_timestamp_seconds",
    "When a sync of the mirror last started (Unix seconds)", {"mirror": ()},
    across_processes="max")
INTERVAL = metrics.gauge(
    "bootyard_mirrorsync_interval_seconds", "The mirror's sync interval (for the stale alert)",
    {"mirror": ()}, across_processes="max")
DURATION = metrics.histogram(
    "bootyard_mirrorsync_sync_duration_seconds",
    "Time of a sync from its start to publish or failure",
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600), labels={"mirror": ()})
PHASE_DURATION = metrics.histogram(
    "bootyard_mirrorsync_phase_duration_seconds",
    "Time of one phase of a sync (services/mirrorsync/phases.py)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600),
    labels={"phase": PHASES})
SYNCS = metrics.counter("bootyard_mirrorsync_syncs_total", "Syncs ended, by result",
                        {"result": RESULTS})
FAILURES = metrics.counter("bootyard_mirrorsync_failures_total",
                           "Syncs that did not publish, by mirror and reason",
                           {"mirror": (), "reason": FAILURE_REASONS})
CONSECUTIVE_FAILURES = metrics.gauge(
    "bootyard_mirrorsync_consecutive_failures",
    "Syncs of the mirror that failed since its last publish", {"mirror": ()},
    across_processes="max")
BYTES = metrics.counter("bootyard_mirrorsync_transferred_bytes_total",
                        "Bytes of files rsync copied (not hard-linked)", {"mirror": ()})
FILES = metrics.counter("bootyard_mirrorsync_transferred_files_total",
                        "Files rsync copied (not hard-linked)", {"mirror": ()})
PUBLISHED_BYTES = metrics.gauge("bootyard_mirrorsync_published_bytes",
                                "Size of the published snapshot's files", {"mirror": ()},
                                across_processes="max")
PUBLISHED_FILES = metrics.gauge("bootyard_mirrorsync_published_files",
                                "Files in the published snapshot", {"mirror": ()},
                                across_processes="max")
IN_PROGRESS = metrics.gauge("bootyard_mirrorsync_in_progress",
                            "1 while this replica syncs the mirror", {"mirror": ()})
LOCK_HELD = metrics.gauge("bootyard_mirrorsync_lock_held",
                          "1 while this replica holds the mirror's lock", {"mirror": ()})
VOLUME_FREE = metrics.gauge("bootyard_mirrorsync_volume_free_bytes",
                            "Free bytes on the mirror volume", across_processes="min")
VOLUME_SIZE = metrics.gauge("bootyard_mirrorsync_volume_size_bytes",
                            "Size of the mirror volume", across_processes="max")

PER_MIRROR = (LAST_SUCCESS, LAST_ATTEMPT, INTERVAL, CONSECUTIVE_FAILURES, BYTES, FILES,
              PUBLISHED_BYTES, PUBLISHED_FILES, IN_PROGRESS, LOCK_HELD, DURATION)


def forget(name: str) -> None:
    """Drop a removed mirror's series."""
    for metric in PER_MIRROR:
        try:
            metric.remove(name)
        except KeyError:
            pass
    for reason in FAILURE_REASONS:
        try:
            FAILURES.remove(name, reason)
        except KeyError:
            pass
