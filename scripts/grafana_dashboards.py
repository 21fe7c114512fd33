"""Writes deploy/grafana/dashboards/*.json from the panel lists below (run it after editing them).

    .venv/bin/python scripts/grafana_dashboards.py          # rewrite the JSON
    .venv/bin/python scripts/grafana_dashboards.py --check  # exit 1 if the JSON is out of date

One row per service; every query uses metric names the services declare (services/*/metrics.py,
shared/metrics.py) and Grafana's ``$__rate_interval``. tests/deploy/test_dashboards.py checks the
structure and that the committed JSON is what this script writes; ``make compose-test`` evaluates
every query against a Prometheus scraping the running stack.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "bootyard-prometheus"}
R = "$__rate_interval"

# (row title, [(panel title, type, unit, [(legend, expr), ...], description), ...])
BOOT_PIPELINE = [
    ("Boots", [
        ("Services up", "stat", "none",
         [("{{job}}", 'up{job=~"bootyard-.*"}')],
         "1 while Prometheus scrapes the service (alert BootyardServiceDown after 2 minutes at 0)"),
        ("Boots started (DHCP acks, 15 min)", "stat", "none",
         [("acks", 'sum(increase(bootyard_dhcp_packets_total{direction="out",type="ack"}[15m]))')],
         "Addresses acknowledged: each is a machine starting (or renewing) a network boot"),
        ("Boots completed (install callbacks, 15 min)", "stat", "none",
         [("done", 'sum(increase(bootyard_http_requests_total{family="callback",status="2xx"}[15m]))')],
         "Install-done callbacks answered by the HTTP service"),
        ("Boots in progress", "stat", "none",
         [("in progress", 'clamp_min(sum(increase(bootyard_dhcp_packets_total{direction="out",type="ack"}[1h])) '
                          '- sum(increase(bootyard_http_requests_total{family="callback",status="2xx"}[1h])), 0)')],
         "Acks in the last hour not yet followed by an install-done callback"),
        ("Hosts by boot stage", "timeseries", "none",
         [("{{state}} {{stage}}", 'sum by (state, stage) (bootyard_boot_hosts{state!="idle"})')],
         "Inventory hosts by the state and the stage of their latest boot attempt "
         "(docs/console.md; `bootyard host list` shows each)"),
        ("Stuck hosts by reason", "timeseries", "none",
         [("{{reason}}", "sum by (reason) (bootyard_boot_stuck_hosts)")],
         "Hosts whose boot stopped past a stage's expected time, by the most likely reason "
         "(alert BootyardHostsStuck; `bootyard host list --state stuck` names them)"),
        ("Boot timeline events by component", "timeseries", "ops",
         [("{{component}}", f"sum by (component) (rate(bootyard_events_emitted_total[{R}]))")],
         "Events appended to the boot timeline (bootyard events --host MAC shows them)"),
    ]),
    ("DHCP", [
        ("DHCP exchanges by type", "timeseries", "pps",
         [("{{direction}} {{type}}", f"sum by (direction, type) (rate(bootyard_dhcp_packets_total[{R}]))")],
         "Packets received (discover, request, ...) and sent (offer, ack, nak)"),
        ("DHCP ignored by reason", "timeseries", "pps",
         [("{{reason}}", f"sum by (reason) (rate(bootyard_dhcp_ignored_total[{R}]))")],
         "Requests not answered, by the policy's reason"),
        ("Pool use per subnet", "timeseries", "percentunit",
         [("{{subnet}}", "bootyard_dhcp_pool_used_addresses / bootyard_dhcp_pool_addresses")],
         "Share of each subnet's dynamic pool offered, leased or quarantined "
         "(alert BootyardPoolNearlyExhausted above 90%)"),
        ("DHCP reply latency (p99) and drops", "timeseries", "s",
         [("p99", f"histogram_quantile(0.99, sum by (le) (rate(bootyard_dhcp_response_duration_seconds_bucket[{R}])))"),
          ("dropped {{cause}}", f"sum by (cause) (rate(bootyard_dhcp_dropped_total[{R}]))")],
         "Time from request to reply; packets dropped before handling or sending"),
    ]),
    ("TFTP", [
        ("TFTP transfers by result", "timeseries", "ops",
         [("{{result}}", f"sum by (result) (rate(bootyard_tftp_transfers_total[{R}]))")],
         "Read requests answered (alert BootyardTftpErrors when most fail)"),
        ("TFTP throughput", "timeseries", "Bps",
         [("sent", f"sum(rate(bootyard_tftp_sent_bytes_total[{R}]))")],
         "File octets sent (first sends only)"),
        ("TFTP retransmits and refusals", "timeseries", "pps",
         [("retransmits", f"sum(rate(bootyard_tftp_retransmits_total[{R}]))"),
          ("refused {{reason}}", f"sum by (reason) (rate(bootyard_tftp_refused_total[{R}]))")],
         "Datagrams sent again after a timeout or gap; requests refused with an ERROR"),
        ("TFTP sessions in flight", "timeseries", "none",
         [("in flight", "sum(bootyard_tftp_sessions_in_flight)"),
          ("queued", "sum(bootyard_tftp_requests_queued)")],
         "Transfers running now, and requests waiting for a transfer slot"),
    ]),
    ("HTTP", [
        ("HTTP requests by route family", "timeseries", "reqps",
         [("{{family}} {{status}}", f"sum by (family, status) (rate(bootyard_http_requests_total[{R}]))")],
         "Boot scripts, GRUB configs, install files, images, mirror, API"),
        ("HTTP bytes by route family", "timeseries", "Bps",
         [("{{family}}", f"sum by (family) (rate(bootyard_http_sent_bytes_total[{R}]))")],
         "Response bytes sent"),
        ("Render errors", "timeseries", "ops",
         [("http {{template}}", f'sum by (template) (rate(bootyard_http_renders_total{{result="error"}}[{R}]))'),
          ("tftp", f'sum(rate(bootyard_tftp_transfers_total{{result="render_error"}}[{R}]))')],
         "Scripts, configs and install files whose template failed (the client got an error, "
         "never half a script); `bootyard events --host MAC` names the template and the fault"),
        ("HTTP denied by reason", "timeseries", "reqps",
         [("{{reason}}", f"sum by (reason) (rate(bootyard_http_denied_total[{R}]))")],
         "Requests refused with 401/403"),
    ]),
    ("Block export", [
        ("AoE throughput per export", "timeseries", "Bps",
         [("{{export}} {{direction}}", "sum by (export, direction) "
           f"(rate(bootyard_blockexport_transferred_bytes_total[{R}]))")],
         "Bytes initiators read and wrote (writes counted once durable)"),
        ("AoE latency (p99) and writes per sync", "timeseries", "s",
         [("p99 {{op}}", "histogram_quantile(0.99, sum by (le, op) "
                         f"(rate(bootyard_blockexport_request_duration_seconds_bucket[{R}])))"),
          ("writes per sync", f'sum(rate(bootyard_blockexport_operations_total{{op="write"}}[{R}])) '
                              f"/ sum(rate(bootyard_blockexport_syncs_total[{R}]))")],
         "Time from request to reply (writes: after the sync); how many writes each fdatasync covers"),
        ("AoE errors and drops", "timeseries", "ops",
         [("error {{reason}}", f"sum by (reason) (rate(bootyard_blockexport_errors_total[{R}]))"),
          ("dropped {{reason}}", f"sum by (reason) (rate(bootyard_blockexport_dropped_total[{R}]))")],
         "Requests answered with an error (storage failures: *_failed) and frames not answered"),
        ("Exports: up, initiators, overlays", "timeseries", "none",
         [("up {{export}}", "bootyard_blockexport_export_up"),
          ("initiators {{export}}", "bootyard_blockexport_initiators"),
          ("overlay GiB {{export}}", "bootyard_blockexport_overlay_bytes / 2^30")],
         "Exports served (alert BootyardExportDown at 0), attached initiators, copy-on-write bytes"),
        ("iSCSI sessions and connections", "timeseries", "none",
         [("sessions {{export}}", "bootyard_blockexport_iscsi_sessions"),
          ("connections {{phase}}", "bootyard_blockexport_iscsi_connections")],
         "iSCSI sessions logged in per export (target); TCP connections logging in, in normal and "
         "in discovery sessions"),
        ("iSCSI login failures and PDU errors", "timeseries", "ops",
         [("login failed {{reason}}",
           f"sum by (reason) (rate(bootyard_blockexport_iscsi_login_failures_total[{R}]))"),
          ("PDU error {{reason}}",
           f"sum by (reason) (rate(bootyard_blockexport_iscsi_pdu_errors_total[{R}]))"),
          ("digest error {{which}}",
           f"sum by (which) (rate(bootyard_blockexport_iscsi_digest_errors_total[{R}]))")],
         "Logins refused (chap, not_allowed, no_host, unknown_target, timeout ...) and PDUs "
         "rejected or that closed their connection; `bootyard events --host MAC` says whose"),
    ]),
    ("Mirror sync", [
        ("Mirror freshness (age of the published tree)", "timeseries", "s",
         [("{{mirror}}", "max by (mirror) (time() - bootyard_mirrorsync_last_success_timestamp_seconds)"),
          ("{{mirror}} stale above", "max by (mirror) (2 * bootyard_mirrorsync_interval_seconds)")],
         "Time since each mirror was last published; alert BootyardMirrorStale above twice its "
         "interval. `bootyard mirror status` shows the last error"),
        ("Mirror syncs by result (1 h)", "timeseries", "none",
         [("{{result}}", "sum by (result) (increase(bootyard_mirrorsync_syncs_total[1h]))"),
          ("failing in a row {{mirror}}", "max by (mirror) (bootyard_mirrorsync_consecutive_failures)")],
         "Published, failed, skipped (another replica held the lock); failures since each mirror's "
         "last publish (alert BootyardMirrorFailing at 3); `bootyard events --mirror NAME` has the reasons"),
        ("Mirror bytes copied (1 h) and syncs running", "timeseries", "bytes",
         [("{{mirror}}", "sum by (mirror) (increase(bootyard_mirrorsync_transferred_bytes_total[1h]))"),
          ("running {{mirror}}", "max by (mirror) (bootyard_mirrorsync_in_progress)")],
         "Bytes rsync copied (unchanged files are hard links), and syncs in progress"),
        ("Mirror volume free", "timeseries", "percentunit",
         [("free", "min(bootyard_mirrorsync_volume_free_bytes / bootyard_mirrorsync_volume_size_bytes)")],
         "Share of the mirror volume free (alert BootyardMirrorVolumeFull below 10%)"),
    ]),
    ("Redis and inventory", [
        ("Redis reachable", "timeseries", "none",
         [("{{job}}", "bootyard_redis_up")],
         "1 while the service reaches Redis (alert BootyardRedisUnreachable after a minute at 0)"),
        ("Redis errors", "timeseries", "ops",
         [("{{job}} {{operation}}", f"sum by (job, operation) (rate(bootyard_redis_errors_total[{R}]))"),
          ("http 503 {{family}}", f"sum by (family) (rate(bootyard_http_inventory_errors_total[{R}]))")],
         "Failed Redis commands, and HTTP requests answered 503 because of them"),
        ("Invalid inventory records (1 h)", "timeseries", "none",
         [("{{job}} {{kind}}", "sum by (job, kind) (increase(bootyard_inventory_invalid_records_total[1h]))")],
         "Records that failed validation; `bootyard validate` names key, field and reason"),
        ("Inventory objects", "timeseries", "none",
         [("{{kind}}", "max by (kind) (bootyard_inventory_objects)")],
         "Valid objects in the services' inventory caches"),
    ]),
]


def panel(pid: int, title: str, kind: str, unit: str, exprs, description: str, x: int, y: int, w: int) -> dict:
    targets = [{"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr,
                "legendFormat": legend, "range": True}
               for n, (legend, expr) in enumerate(exprs)]
    body = {"id": pid, "type": kind, "title": title, "description": description,
            "datasource": DATASOURCE, "gridPos": {"x": x, "y": y, "w": w, "h": 4 if kind == "stat" else 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "targets": targets}
    if kind == "timeseries":
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                           "tooltip": {"mode": "multi"}}
    else:
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    return body


def dashboard(uid: str, title: str, rows) -> dict:
    panels, pid, y = [], 1, 0
    for row_title, row_panels in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid, y = pid + 1, y + 1
        width = 24 // min(len(row_panels), 4)
        x = 0
        height = 0
        for n, (panel_title, kind, unit, exprs, description) in enumerate(row_panels):
            w = 4 if kind == "stat" else width
            if x + w > 24:
                x, y = 0, y + height
            if n == len(row_panels) - 1:
                w = 24 - x  # the last panel of a row takes what is left of it
            item = panel(pid, panel_title, kind, unit, exprs, description, x, y, w)
            panels.append(item)
            height = max(height, item["gridPos"]["h"])
            x += item["gridPos"]["w"]
            pid += 1
        y += height
    return {
        "uid": uid, "title": title, "editable": False, "schemaVersion": 39, "version": 1,
        "tags": ["bootyard"], "timezone": "", "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []}, "annotations": {"list": []},
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    dash = dashboard("bootyard-boot-pipeline", "bootyard: boot pipeline", BOOT_PIPELINE)
    return {"bootyard-boot-pipeline.json": json.dumps(dash, indent=2) + "\n"}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in rendered().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/grafana_dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
