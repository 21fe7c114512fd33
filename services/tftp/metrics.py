"""The TFTP service's metrics (docs/tftp.md lists them); label values are closed sets."""

from __future__ import annotations

from shared import metrics

RESULTS = ("ok", "unconfirmed", "tsize_probe", "not_found", "timeout", "abandoned",
           "client_error", "options_refused", "illegal", "render_error", "io_error", "aborted")
REFUSALS = ("write", "path", "busy", "mode", "inventory")
RENDER_KINDS = ("pxelinux", "grub", "ipxe")

TRANSFERS = metrics.counter("bootyard_tftp_transfers_total",
                            "Read requests answered, by result", {"result": RESULTS})
REFUSED = metrics.counter("bootyard_tftp_refused_total",
                          "Requests refused with an ERROR, by reason", {"reason": REFUSALS})
REFUSED_UNLOGGED = metrics.counter(
    "bootyard_tftp_refused_unlogged_total",
    "Refused requests past a source's log budget: no line or event of their own, counted in "
    "the periodic refused_summary line", {"reason": REFUSALS})
BYTES = metrics.counter("bootyard_tftp_sent_bytes_total", "File octets sent (first sends only)")
RETRANSMITS = metrics.counter("bootyard_tftp_retransmits_total",
                              "DATA/OACK datagrams sent again after a timeout or a gap")
DURATION = metrics.histogram("bootyard_tftp_transfer_duration_seconds",
                             "Duration of transfers that sent data, from request to end",
                             (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
IN_FLIGHT = metrics.gauge("bootyard_tftp_sessions_in_flight", "Transfers running now")
QUEUED = metrics.gauge("bootyard_tftp_requests_queued",
                       "Requests waiting for a transfer slot now")
MALFORMED = metrics.counter("bootyard_tftp_malformed_total",
                            "Datagrams that were not valid TFTP, dropped, by socket",
                            {"socket": ("listener", "transfer")})
FOREIGN = metrics.counter("bootyard_tftp_foreign_tid_total",
                          "Datagrams from a port that is not the transfer's peer (ERROR 5 sent)")
RENDERED = metrics.counter("bootyard_tftp_rendered_total",
                           "Per-host configs rendered, by kind", {"kind": RENDER_KINDS})
CACHE = metrics.counter("bootyard_tftp_cache_total",
                        "Static file opens by cache outcome",
                        {"outcome": ("hit", "miss", "streamed")})
HANDOVERS = metrics.counter("bootyard_tftp_handovers_total",
                            "New requests handed between worker processes (tftp.workers > 1), "
                            "by direction", {"direction": ("sent", "taken", "failed")})
MOVED = metrics.counter("bootyard_tftp_moved_total",
                        "Started transfers moved to the worker on the CPU their client's "
                        "datagrams arrive on (tftp.workers > 1, pinned), by direction and when: "
                        "at the client's first ACK, or between two lock-step blocks",
                        {"direction": ("sent", "taken"), "at": ("first_ack", "between_blocks")})
