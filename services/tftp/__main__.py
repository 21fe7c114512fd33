"""``python -m services.tftp``: load settings, connect to Redis, serve until stopped.

With ``tftp.workers`` above 1 (or 0, the default, on a host with several CPUs: one worker per
CPU) this process is a supervisor (:func:`shared.runtime.supervise`): it
starts that many worker processes (this same command), each binding the listener port with
SO_REUSEPORT and serving transfers, and serves their summed /metrics itself (docs/tftp.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sys

from services.tftp import metrics as _metrics  # noqa: F401 - declares the service's metrics
from services.tftp.balance import Balancer
from services.tftp.server import TftpServer
from services.tftp.settings import TftpSettings
from shared import logs, metrics as shared_metrics, runtime
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.store import InventoryStore, connect

log = logs.get_logger("tftp")


AUTO_WORKERS_MAX = 8  # each worker has its own file cache (cache_total) and Redis connection


def worker_count(workers: int, max_transfers: int) -> int:
    """``tftp.workers``, with 0 (the default) meaning one per CPU this process may run on, at
    most ``AUTO_WORKERS_MAX`` and ``max_transfers`` (each worker needs a slot): one process is
    bound by one core, and a deploy host shares its cores with Redis, DHCP and HTTP
    (docs/benchmarks.md)."""
    return workers or max(1, min(len(os.sched_getaffinity(0)), AUTO_WORKERS_MAX,
                                 max_transfers))


def _probe_port(section) -> None:
    """Bind the listener port once (and let it go) before starting workers: a port another
    process holds is then one clear error from the supervisor, not one per worker."""
    with runtime.listening("tftp.port", section.bind, section.port, "udp"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((section.bind, section.port))
        finally:
            sock.close()


async def serve(cfg: TftpSettings, stop: asyncio.Event) -> None:
    section = cfg.tftp
    workers = worker_count(section.workers, section.max_transfers)
    if workers > 1 and runtime.worker() is None:
        if section.max_transfers < workers:
            raise runtime.StartupError(
                f"tftp.max_transfers ({section.max_transfers}) is less than tftp.workers "
                f"({section.workers}): each worker needs at least one transfer slot")
        _probe_port(section)
        await runtime.supervise("tftp", workers, stop,
                                metrics_host=section.metrics_host,
                                metrics_port=section.metrics_port,
                                metrics_setting="tftp.metrics_port")
    else:
        await serve_transfers(cfg, stop)


def pin(index: int) -> int | None:
    """Run this worker only on the ``index``-th CPU it may run on (modulo their number): with a
    CPU of its own a worker keeps its clients' wake-ups, and their data, on that CPU's caches
    (docs/benchmarks.md). A CPU set that cannot be changed leaves the worker where it was.
    Returns the CPU (None: not pinned)."""
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[index % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("pin_failed", worker=index, cpu=cpu, reason=exc.strerror,
                    effect="this worker runs on any of its CPUs (tftp.pin_workers)")
        return None
    log.info("pinned", worker=index, cpu=cpu)
    return cpu


async def serve_transfers(cfg: TftpSettings, stop: asyncio.Event) -> None:
    section = cfg.tftp
    worker = runtime.worker()
    cpu = None
    if worker is not None and worker.count > 1 and section.pin_workers:
        cpu = pin(worker.index)
    if worker is not None:
        section = dataclasses.replace(section,
                                      max_transfers=section.max_transfers // worker.count,
                                      queue_max=section.queue_max // worker.count)
    if not os.path.isdir(section.root):
        raise runtime.StartupError(
            f"tftp.root {section.root!r} is not a directory: create it (make tftp-root "
            f"TFTP_ROOT={section.root}) or set BOOTYARD_TFTP__ROOT")
    client = connect(cfg.redis.url, timeout=cfg.redis.timeout)
    inventory = InventoryCache(client, service="tftp")
    events = EventLog(client, "tftp", known=inventory.knows_host)
    server = TftpServer(section, inventory, leases=Leases(client).holder,
                        events=events, worker=worker.index if worker else None,
                        store=InventoryStore(client, cfg.redis.url))
    shared_dir = os.environ.get(runtime.MULTIPROC_ENV)  # the supervisor's private directory
    if worker is not None and worker.count > 1 and shared_dir:
        # new requests go to the least loaded worker, not where the kernel's hash put them
        try:
            server.balancer = Balancer(worker.index, worker.count, shared_dir, section.port,
                                       deliver=server.on_handed, busy=server.handling)
            # a transfer moves to the worker on its client's CPU (pinned workers only)
            server.balancer.adopt = server.on_adopt
            server.balancer.publish_cpu(cpu)
        except OSError as exc:
            log.warning("handover_unavailable", worker=worker.index, directory=shared_dir,
                        reason=exc.strerror or repr(exc),
                        effect="this worker serves only the requests the kernel gives it")
    runner = None
    try:
        with runtime.listening("tftp.port", section.bind, section.port, "udp"):
            await server.start()
        if worker is None:  # workers' metrics are served, summed, by their supervisor
            with runtime.listening("tftp.metrics_port", section.metrics_host,
                                   section.metrics_port):
                runner = await shared_metrics.start_metrics_server(
                    section.metrics_host, section.metrics_port, health=lambda: inventory.ready)
        async with asyncio.TaskGroup() as group:
            group.create_task(inventory.run(stop))
            group.create_task(events.run(stop))
            await stop.wait()
            await server.close()
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.aclose()


def main(argv=None) -> int:
    runtime.use_uvloop()  # lock-step TFTP: the per-datagram event-loop cost is most of ours
    return runtime.run_service("tftp", TftpSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
