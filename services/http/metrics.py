"""The HTTP service's metrics (closed label sets; never a MAC, IP or path as a label)."""

from __future__ import annotations

from shared import metrics

FAMILIES = ("script", "grub", "install", "callback", "discovery", "images", "mirror", "api",
            "metrics", "other")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
TEMPLATES = ("ipxe", "grub", "cmdline", "kickstart", "preseed", "user-data", "meta-data",
             "vendor-data")
RENDER_RESULTS = ("ok", "cached", "error")
DENY_REASONS = ("address", "unknown_host", "bad_token", "admin_token")

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
    "bootyard_http_denied_total", "Requests refused with 401/403, by reason",
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
              "http.render_error")})
