"""The one metrics module: how every bootyard metric is declared and exposed.

Rules (docs/metrics.md): names are ``bootyard_<service>_<noun>_<unit or total>``; every label has
a closed set of values declared up front and pre-initialised, so dashboards show zeros instead of
gaps; never a MAC, IP, path or transaction id as a label (those go to logs and events). Units are
base units, at the end: ``_seconds`` and ``_bytes`` (counters ``_seconds_total``,
``_bytes_total``), histograms of time ``_duration_seconds``; no label is named like a scrape
target's label (``service``, ``job``, ``instance``). The declaring functions refuse the rest.

Services declare their own metrics with :func:`counter`, :func:`gauge` and :func:`histogram`
(in ``services/<name>/metrics.py``) and expose them with :func:`start_metrics_server`, which also
answers ``/healthz`` for container health checks.
"""

from __future__ import annotations

import bisect
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from shared.schema import KINDS

if TYPE_CHECKING:  # the CLI imports this module and never serves: aiohttp only when serving
    from aiohttp import web

_NAME = re.compile(r"bootyard_[a-z][a-z0-9]*_[a-z0-9_]+")
Labels = Mapping[str, Iterable[str]]


# Labels Prometheus attaches to every series of a scrape target (prometheus.yml sets `service`):
# a metric's own label of that name would be renamed exported_<name> on ingestion.
TARGET_LABELS = frozenset({"service", "job", "instance"})
_NOT_BASE_UNIT = re.compile(
    r"_(ms|us|ns|millis|milliseconds|microseconds|nanoseconds|minutes|hours|days|kb|kib|mb|mib|"
    r"gb|gib|kilobytes|megabytes|gigabytes|percent|bits)(_|$)")


def _check_name(name: str, kind: str = "gauge") -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"metric name {name!r} must look like bootyard_<service>_<noun>_<unit>")
    if _NOT_BASE_UNIT.search(name):
        raise ValueError(f"metric name {name!r}: base units only (seconds, bytes, a plain ratio)")
    base = name.removesuffix("_total")
    words = base.split("_")
    for unit in ("seconds", "bytes"):
        if unit in words and words[-1] != unit:
            raise ValueError(f"metric name {name!r}: the unit goes at the end "
                             f"(..._{unit}, a counter ..._{unit}_total)")
        if words[-1] == unit and len(words) < 4:
            raise ValueError(f"metric name {name!r} must name what it measures: "
                             f"bootyard_<service>_<noun>_{unit}")
    if kind == "histogram" and not (base.endswith("_duration_seconds") or words[-1] == "bytes"):
        raise ValueError(f"histogram {name!r}: a histogram of time ends in _duration_seconds, "
                         f"of sizes in _bytes")


def _check_labels(name: str, labels: Labels | None) -> None:
    clash = TARGET_LABELS.intersection(labels or ())
    if clash:
        raise ValueError(f"metric {name!r}: label {sorted(clash)[0]!r} is a scrape target's "
                         f"label (name it e.g. 'component')")


def _preinit(metric, labels: Labels | None):
    if labels:
        names = list(labels)
        combos: list[tuple[str, ...]] = [()]
        for name in names:
            combos = [c + (str(v),) for c in combos for v in labels[name]]
        for combo in combos:
            metric.labels(*combo)
    return metric


def counter(name: str, doc: str, labels: Labels | None = None) -> Counter:
    """A counter; ``name`` ends in ``_total`` and ``labels`` maps each label to all its values."""
    _check_name(name)
    _check_labels(name, labels)
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in _total")
    return _preinit(Counter(name[: -len("_total")], doc, list(labels or ())), labels)


def gauge(name: str, doc: str, labels: Labels | None = None,
          across_processes: str = "livesum") -> Gauge:
    """A gauge; ``across_processes`` says how a service running several worker processes
    (prometheus-client's multiprocess mode, see :func:`multiprocess_registry`) combines the
    workers' values: ``livesum`` (sum over live workers), ``max`` or ``min``."""
    _check_name(name)
    _check_labels(name, labels)
    return _preinit(Gauge(name, doc, list(labels or ()), multiprocess_mode=across_processes),
                    labels)


def histogram(name: str, doc: str, buckets: Iterable[float],
              labels: Labels | None = None) -> Histogram:
    _check_name(name, "histogram")
    _check_labels(name, labels)
    return _preinit(Histogram(name, doc, list(labels or ()), buckets=tuple(buckets)), labels)


# Metrics every service shares (the inventory and Redis are shared code).
INVENTORY_KINDS = tuple(KINDS)  # the inventory's kinds (shared/schema.py), one label value each
INVALID_RECORDS = counter(
    "bootyard_inventory_invalid_records_total",
    "Inventory records that failed validation when read (the service kept the last good "
    "version or treated the object as unknown)",
    {"kind": INVENTORY_KINDS})
INVENTORY_RELOADS = counter(
    "bootyard_inventory_reloads_total",
    "Inventory cache updates, by cause",
    {"cause": ("full", "notification")})
INVENTORY_OBJECTS = gauge(
    "bootyard_inventory_objects",
    "Valid objects in this process's inventory cache", {"kind": INVENTORY_KINDS},
    across_processes="max")
REDIS_ERRORS = counter(
    "bootyard_redis_errors_total",
    "Redis commands that failed (connection refused, timeout, error reply)",
    {"operation": ("inventory", "events", "leases", "admin", "mirrors")})
LEASE_REPLICATION = counter(
    "bootyard_lease_replication_total",
    "Lease batches whose writes were waited for on Redis replicas (dhcp.replica_acks): acked "
    "by enough replicas in time, or short (answered anyway; the lease journal covers them)",
    {"outcome": ("acked", "short")})
REDIS_UP = gauge("bootyard_redis_up", "1 while this process reaches Redis, 0 while it does not",
                 across_processes="min")
EVENTS_EMITTED = counter(
    "bootyard_events_emitted_total",
    "Events appended to the boot timeline streams, by the component that wrote them",
    {"component": ("dhcp", "tftp", "http", "blockexport", "mirrorsync", "cli")})
BUILD_INFO = Info("bootyard_build", "bootyard version")
# Power actions (shared/powerctl.py): counted by the process that runs them, the HTTP service for
# the admin API and the console (the CLI's one-shot process serves no metrics)
POWER_ACTIONS = counter(
    "bootyard_power_actions_total",
    "Power actions on hosts, by method, action and outcome",
    {"method": ("wol", "ipmi", "redfish", "none"), "action": ("on", "off", "cycle", "status"),
     "outcome": ("ok", "already", "failed", "unsupported")})
POWER_SECONDS = histogram(
    "bootyard_power_action_duration_seconds",
    "Time one power action took (all its requests to the BMC), by method",
    (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), {"method": ("wol", "ipmi", "redfish")})

# Prometheus users expect no <name>_created series next to counters and histograms.
disable_created_metrics()


def set_build_info() -> None:
    """``bootyard_build_info{version="..."} 1``: set where metrics are served (not at import:
    reading the package metadata is start-up time the CLI does not need)."""
    from importlib import metadata
    try:
        version = metadata.version("bootyard")
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD_INFO.info({"version": version})


_registry: CollectorRegistry = REGISTRY


def add(counter: Counter, amount: float) -> None:
    """``counter.inc(amount)`` of a counter's child (its labels resolved) by a non-negative
    amount, without inc's checks (three Python calls, ~3,000 instructions): for counts added
    once per batch. Reads prometheus-client's ``_value``, as observe_all reads Histogram
    internals; a test checks it against ``inc``."""
    counter._value.inc(amount)


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, with one increment per bucket touched instead of
    two locked increments per value: for per-packet figures added once per batch. Reads
    prometheus-client's Histogram internals (``_upper_bounds``, ``_buckets``, ``_sum``); a test
    checks the result against ``observe``."""
    if not values:
        return
    bounds = histogram._upper_bounds  # ascending, the last is +Inf
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value, as observe
    histogram._sum.inc(sum(values))
    for bucket, n in zip(histogram._buckets, counts):
        if n:
            bucket.inc(n)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """Make ``/metrics`` of this (supervising) process show the metrics its worker processes
    write to ``path`` (started with ``PROMETHEUS_MULTIPROC_DIR=path``), summed, plus this
    process's ``bootyard_build`` (an Info, which multiprocess mode does not carry)."""
    global _registry
    registry = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(registry, path)
    registry.register(BUILD_INFO)
    set_build_info()
    _registry = registry
    return registry


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, and its content type."""
    return generate_latest(_registry), CONTENT_TYPE_LATEST


async def metrics_handler(_request: web.Request) -> web.Response:
    from aiohttp import web

    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


HealthCheck = Callable[[], "bool | Awaitable[bool]"]


def add_routes(app: web.Application, health: HealthCheck | None = None) -> None:
    """Add ``/metrics`` and ``/healthz`` to an aiohttp application (the HTTP service uses this)."""
    from aiohttp import web

    set_build_info()

    async def healthz(_request: web.Request) -> web.Response:
        ok = True
        if health is not None:
            result = health()
            ok = await result if inspect.isawaitable(result) else bool(result)
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "unhealthy\n")

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)


async def start_metrics_server(host: str, port: int,
                               health: HealthCheck | None = None) -> web.AppRunner:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port``; stop it with
    ``await runner.cleanup()``. A port that cannot be bound raises the OSError (wrap the call in
    ``runtime.listening``)."""
    from aiohttp import web

    set_build_info()
    app = web.Application()
    add_routes(app, health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner listens on (useful when it was started on port 0)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server and server.sockets:
            return server.sockets[0].getsockname()[1]
    raise RuntimeError("metrics server is not listening")
