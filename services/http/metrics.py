"""The HTTP service's metrics (closed label sets; never a MAC, IP or path as a label)."""

from __future__ import annotations

from shared import bootstate, metrics

FAMILIES = ("script", "grub", "install", "callback", "discovery", "images", "mirror", "api",
            "metrics", "other")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
TEMPLATES = ("ipxe", "grub", "cmdline", "kickstart", "preseed", "user-data", "meta-data",
             "vendor-data")
RENDER_RESULTS = ("ok", "cached", "error")
DENY_REASONS = ("address", "unknown_host", "bad_token", "admin_token", "admin_scope",
                "admin_host", "admin_origin", "admin_content_type")

REQUESTS = metrics.counter(
    "bootyard_http_requests_total", "HTTP requests answered, by route family and status class",
    {"family": FAMILIES, "status": STATUS_CLASSES})
SENT_BYTES = metrics.counter(
    "bootyard_http_sent_bytes_total", "Response bytes sent (headers and body), by route family",
    {"family": FAMILIES})
DURATION = metrics.histogram(
    "bootyard_http_request_duration_seconds",
    "Time from request to the end of the response, by route family",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 120),
    labels={"family": FAMILIES})
RENDERS = metrics.counter(
    "bootyard_http_renders_total", "Scripts and install files produced, by template and result "
    "(cached: served from the render cache)", {"template": TEMPLATES, "result": RENDER_RESULTS})
DENIED = metrics.counter(
    "bootyard_http_denied_total", "Requests refused by access rules, by reason (admin_host: "
    "421, a Host name the admin API is not served as; admin_origin: 403, a cross-origin "
    "request; admin_content_type: 415, a body not declared as JSON/YAML; admin_scope: 403, a "
    "write with a read-only token; the others 401/403)",
    {"reason": DENY_REASONS})
INVENTORY_ERRORS = metrics.counter(
    "bootyard_http_inventory_errors_total",
    "Requests answered 503 because the inventory or Redis was unavailable, by route family",
    {"family": FAMILIES})
RENDER_CACHE_ENTRIES = metrics.gauge(
    "bootyard_http_render_cache_entries", "Entries in this process's render cache")
EVENTS_COALESCED = metrics.counter(
    "bootyard_http_events_coalesced_total",
    "Events not written because the same event for the same host was written in the last "
    "second (boot loops, load tests)",
    {"kind": ("http.script", "http.install", "http.discovery", "http.denied",
              "http.render_error", "http.booted")})

CONNECTIONS = metrics.gauge(
    "bootyard_http_connections", "Open connections on every listener of the service")
CLOSE_REASONS = ("header_timeout", "idle_timeout", "max_connections", "body_refused")
CONNECTIONS_CLOSED = metrics.counter(
    "bootyard_http_connections_closed_total",
    "Connections the service closed on its own, by reason: header_timeout (a request head not "
    "complete in http.header_timeout), idle_timeout (no request in http.idle_timeout), "
    "max_connections (over http.max_connections: closed at once), body_refused (a GET/HEAD "
    "with a body, or a body over http.max_body)",
    {"reason": CLOSE_REASONS})
BAD_REQUEST_REASONS = ("malformed", "too_long", "not_http")
BAD_REQUESTS = metrics.counter(
    "bootyard_http_bad_requests_total",
    "Requests refused with 400 before routing because they were not valid HTTP, by reason "
    "(too_long: a request line or header over the size limits; not_http: no HTTP method)",
    {"reason": BAD_REQUEST_REASONS})

# Boot states (services/http/board.py): computed by the process serving the admin API.
BOOT_STAGES = bootstate.STAGES + ("none",)  # none: an idle host (no boot events)
BOOT_HOSTS = metrics.gauge(
    "bootyard_boot_hosts", "Inventory hosts by boot state and the stage their latest boot "
    "attempt reached (docs/console.md)", {"state": bootstate.STATES, "stage": BOOT_STAGES},
    across_processes="livemax")
BOOT_STUCK = metrics.gauge(
    "bootyard_boot_stuck_hosts", "Inventory hosts whose latest boot is stuck, by the most likely "
    "reason", {"reason": bootstate.REASONS}, across_processes="livemax")

# Label children looked up once: ``labels()`` costs microseconds on every request otherwise.
REQUESTS_BY = {(f, s): REQUESTS.labels(f, s) for f in FAMILIES for s in STATUS_CLASSES}
DURATION_BY = {f: DURATION.labels(f) for f in FAMILIES}
SENT_BY = {f: SENT_BYTES.labels(f) for f in FAMILIES}
RENDERS_BY = {(t, r): RENDERS.labels(t, r) for t in TEMPLATES for r in RENDER_RESULTS}
COALESCED_BY = {k: EVENTS_COALESCED.labels(k) for k in
                ("http.script", "http.install", "http.discovery", "http.denied",
                 "http.render_error", "http.booted")}
CLOSED_BY = {r: CONNECTIONS_CLOSED.labels(r) for r in CLOSE_REASONS}
BAD_REQUESTS_BY = {r: BAD_REQUESTS.labels(r) for r in BAD_REQUEST_REASONS}
STATUS_CLASS = {code: f"{min(max(code // 100, 2), 5)}xx" for code in range(100, 600)}

# Hardware reports of the discovery image (services/http/discovery.py, docs/discovery.md).
DISCOVERY_RESULTS = ("recorded", "host_updated", "adopted", "disabled", "rate_limited",
                     "too_large", "no_lease", "invalid", "full")
DISCOVERY_REPORTS = metrics.counter(
    "bootyard_http_discovery_reports_total",
    "Hardware reports received at POST /discovery/report, by result: recorded (a discovered "
    "record), host_updated (a known host's hw), adopted (a discovery rule made it a host), or "
    "refused: disabled (discovery.enabled off), rate_limited, too_large, no_lease (the sender "
    "holds no lease for the MAC), invalid (not the report's shape), full (discovery.max_records)",
    {"result": DISCOVERY_RESULTS})
DISCOVERY_BY = {r: DISCOVERY_REPORTS.labels(r) for r in DISCOVERY_RESULTS}
