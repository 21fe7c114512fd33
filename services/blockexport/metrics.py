"""The block export service's metrics (names ``bootyard_blockexport_*``); docs/metrics.md lists
them. The ``export`` label is an inventory export's name (a few per site, like ``subnet``);
never a MAC (attachments are in the logs and the boot timeline)."""

from __future__ import annotations

import bisect

from services.blockexport.iscsi_login import LOGIN_FAILURE_REASONS
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
    "Time from receiving an I/O request to sending its reply (writes: as the "
    "export's write cache says)",
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
    "1 while an export of the inventory is served (AoE or iSCSI), 0 when its backing store "
    "cannot be opened (missing, unreadable) or its shelf.slot or iqn is taken", {"export": ()},
    across_processes="max")
QUEUE = metrics.gauge("bootyard_blockexport_queue_requests",
                      "I/O requests waiting for the exports' I/O threads (at the last housekeeping)")

# iSCSI (docs/blockexport.md "The iSCSI target")
PDU_ERROR_REASONS = ("malformed", "too_long", "bad_ahs", "bad_text", "unknown_opcode", "cmdsn",
                     "snack", "sequence", "protocol")
ISCSI_SESSIONS = metrics.gauge(
    "bootyard_blockexport_iscsi_sessions", "iSCSI sessions logged in, per export (target)",
    {"export": ()}, across_processes="max")
ISCSI_CONNECTIONS = metrics.gauge(
    "bootyard_blockexport_iscsi_connections",
    "iSCSI connections by phase: logging in, in a normal session, in a discovery session",
    {"phase": ("login", "normal", "discovery")}, across_processes="max")
ISCSI_LOGIN_FAILURES = metrics.counter(
    "bootyard_blockexport_iscsi_login_failures_total",
    "iSCSI logins refused or abandoned, by reason (connections over the cap count as "
    "too_many_connections)", {"reason": LOGIN_FAILURE_REASONS})
ISCSI_PDU_ERRORS = metrics.counter(
    "bootyard_blockexport_iscsi_pdu_errors_total",
    "iSCSI PDUs rejected, ignored or that closed their connection, by reason",
    {"reason": PDU_ERROR_REASONS})
ISCSI_DIGEST_ERRORS = metrics.counter(
    "bootyard_blockexport_iscsi_digest_errors_total",
    "iSCSI PDUs whose header or data digest (CRC32C) did not match", {"which": ("header",
                                                                                "data")})
ISCSI_COMMANDS = metrics.counter(
    "bootyard_blockexport_iscsi_commands_total",
    "SCSI commands answered over iSCSI, per export and status",
    {"export": (), "status": ("good", "check_condition", "other")})

_PDU_REASON = {"command_in_discovery": "protocol", "bad_itt": "protocol",
               "immediate_data": "protocol", "unsolicited_data": "protocol",
               "data_out_unknown_task": "sequence", "data_out_unsolicited": "sequence",
               "data_out_sequence": "sequence", "login_in_session": "protocol",
               "text_too_long": "protocol", "header_digest": "malformed",
               "data_digest": "malformed"}


def pdu_error_reason(label: str) -> str:
    """The metric label of a session's or codec's error label."""
    if label in PDU_ERROR_REASONS:
        return label
    return _PDU_REASON.get(label, "protocol")


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
    for status in ("good", "check_condition", "other"):
        ISCSI_COMMANDS.labels(name, status)


class LatencyTally:
    """Request durations counted into the histogram's buckets locally and added to
    :data:`LATENCY` in one go (:meth:`flush`): a bisect per request instead of
    ``Histogram.observe`` with its locks (3-5% of the iSCSI loop's time at 4 KiB reads)."""

    def __init__(self) -> None:
        self.bounds = {op: list(child._upper_bounds) for op, child in LATENCY_BY.items()}
        self.counts = {op: [0] * len(bounds) for op, bounds in self.bounds.items()}
        self.sums = dict.fromkeys(LATENCY_BY, 0.0)

    def add(self, op: str, seconds: float, count: int = 1) -> None:
        self.counts[op][bisect.bisect_left(self.bounds[op], seconds)] += count
        self.sums[op] += seconds * count

    def flush(self) -> None:
        for op, counts in self.counts.items():
            if not any(counts):
                continue
            child = LATENCY_BY[op]
            child._sum.inc(self.sums[op])
            for index, count in enumerate(counts):
                if count:
                    child._buckets[index].inc(count)
                    counts[index] = 0
            self.sums[op] = 0.0
