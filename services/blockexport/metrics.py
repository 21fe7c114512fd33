"""The block export service's metrics (names ``bootyard_blockexport_*``); docs/metrics.md lists
them. The ``export`` label is an inventory export's name (a few per site, like ``subnet``);
never a MAC (attachments are in the logs and the boot timeline)."""

from __future__ import annotations

from services.blockexport.policy import DROP_REASONS
from shared import metrics

OPS = ("read", "write", "flush", "identify", "config", "other")
ERROR_REASONS = ("malformed", "bad_argument", "past_end", "unsupported", "read_only",
                 "reserved", "version", "unknown_command", "config_present", "mask",
                 "read_failed", "write_failed", "flush_failed")
BYTES = metrics.counter(
    "bootyard_blockexport_transferred_bytes_total", "Bytes read and written by initiators, per export",
    {"export": (), "direction": ("read", "write")})
OPERATIONS = metrics.counter(
    "bootyard_blockexport_operations_total", "Requests answered, per export and operation",
    {"export": (), "op": OPS})
SYNCS = metrics.counter(
    "bootyard_blockexport_syncs_total",
    "fdatasync batches run for writes and flushes, per export (writes / syncs = batching)",
    {"export": ()})
ERRORS = metrics.counter(
    "bootyard_blockexport_errors_total",
    "Requests answered with an error or dropped as malformed, by reason",
    {"reason": ERROR_REASONS})
DROPPED = metrics.counter(
    "bootyard_blockexport_dropped_total", "Frames not answered, by reason",
    {"reason": DROP_REASONS + ("queue_full", "send_failed", "no_export")})
LATENCY = metrics.histogram(
    "bootyard_blockexport_request_duration_seconds",
    "Time from receiving an I/O request to sending its reply (writes: durable)",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0),
    labels={"op": ("read", "write", "flush")})
OVERLAY_BYTES = metrics.gauge(
    "bootyard_blockexport_overlay_bytes",
    "Bytes the copy-on-write overlays of an export take on disk", {"export": ()},
    across_processes="max")
FREE_BYTES = metrics.gauge(
    "bootyard_blockexport_free_bytes",
    "Free bytes on the file system of an export's overlays (cow) or backing file",
    {"export": ()}, across_processes="max")
INITIATORS = metrics.gauge(
    "bootyard_blockexport_initiators", "Initiators attached to an export (a frame within "
    "blockexport.attach_timeout)", {"export": ()}, across_processes="max")
EXPORT_UP = metrics.gauge(
    "bootyard_blockexport_export_up",
    "1 while an AoE export of the inventory is served, 0 when its backing store cannot be "
    "opened (missing, unreadable) or its shelf.slot is taken", {"export": ()},
    across_processes="max")
QUEUE = metrics.gauge("bootyard_blockexport_queue_requests",
                      "I/O requests waiting for the exports' I/O threads (at the last housekeeping)")

ERRORS_BY = {r: ERRORS.labels(r) for r in ERROR_REASONS}
DROPPED_BY = {r: DROPPED.labels(r)
              for r in DROP_REASONS + ("queue_full", "send_failed", "no_export")}
LATENCY_BY = {op: LATENCY.labels(op) for op in ("read", "write", "flush")}


def preinit_export(name: str) -> None:
    """Every series of one export at 0, so a dashboard shows zeros instead of gaps."""
    for op in OPS:
        OPERATIONS.labels(name, op)
    for direction in ("read", "write"):
        BYTES.labels(name, direction)
    SYNCS.labels(name)
    for gauge in (OVERLAY_BYTES, FREE_BYTES, INITIATORS):
        gauge.labels(name)
