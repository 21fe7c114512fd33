"""``python -m services.tftp``: load settings, connect to Redis, serve until stopped.

With ``tftp.workers`` above 1 this process is a supervisor: it starts that many worker processes
(this same command, told apart by ``_BOOTYARD_TFTP_WORKER``), each binding the listener port with
SO_REUSEPORT and serving transfers, and serves their summed /metrics itself (docs/tftp.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import shutil
import signal
import sys
import tempfile

from services.tftp import metrics as _metrics  # noqa: F401 - declares the service's metrics
from services.tftp.server import TftpServer
from services.tftp.settings import TftpSettings
from shared import logs, metrics as shared_metrics, runtime
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.store import connect

log = logs.get_logger("tftp")


WORKER_ENV = "_BOOTYARD_TFTP_WORKER"  # "<index>:<supervisor pid>", set for workers only
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


async def serve(cfg: TftpSettings, stop: asyncio.Event) -> None:
    if cfg.tftp.workers > 1 and WORKER_ENV not in os.environ:
        await supervise(cfg, stop)
    else:
        await serve_transfers(cfg, stop)


def _die_with_supervisor(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM when its supervisor ends (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)   # PR_SET_PDEATHSIG
    if os.getppid() != supervisor:                # it ended before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def serve_transfers(cfg: TftpSettings, stop: asyncio.Event) -> None:
    section = cfg.tftp
    worker = None
    if WORKER_ENV in os.environ:
        index, _, supervisor = os.environ[WORKER_ENV].partition(":")
        worker = int(index)
        _die_with_supervisor(int(supervisor))
        section = dataclasses.replace(section,
                                      max_transfers=section.max_transfers // section.workers,
                                      queue_max=section.queue_max // section.workers)
    if not os.path.isdir(section.root):
        raise runtime.StartupError(
            f"tftp.root {section.root!r} is not a directory: create it (make tftp-root "
            f"TFTP_ROOT={section.root}) or set BOOTYARD_TFTP__ROOT")
    client = connect(cfg.redis.url, timeout=cfg.redis.timeout)
    inventory = InventoryCache(client, service="tftp")
    events = EventLog(client, "tftp", known=inventory.knows_host)
    server = TftpServer(section, inventory, leases=Leases(client).holder,
                        events=events, worker=worker)
    try:
        await server.start()
    except OSError as exc:
        raise runtime.StartupError(
            f"cannot bind UDP {section.bind}:{section.port}: {exc.strerror} (set tftp.port / "
            f"tftp.bind; port 69 needs root or CAP_NET_BIND_SERVICE)") from None
    runner = None
    if worker is None:  # workers' metrics are served, summed, by their supervisor
        runner = await shared_metrics.start_metrics_server(
            section.metrics_host, section.metrics_port, health=lambda: inventory.ready)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(inventory.run(stop))
            group.create_task(events.run(stop))
            await stop.wait()
            await server.close()
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.aclose()


async def supervise(cfg: TftpSettings, stop: asyncio.Event, grace: float = 4.0) -> None:
    """Run ``tftp.workers`` worker processes until ``stop``; a worker that ends on its own ends
    the service with status 1 (after stopping the others), so that its supervisor (systemd,
    Docker) restarts the whole service."""
    section = cfg.tftp
    if section.max_transfers < section.workers:
        raise runtime.StartupError(
            f"tftp.max_transfers ({section.max_transfers}) is less than tftp.workers "
            f"({section.workers}): each worker needs at least one transfer slot")
    metrics_dir = tempfile.mkdtemp(prefix="bootyard-tftp-metrics-")
    shared_metrics.multiprocess_registry(metrics_dir)
    workers: list[asyncio.subprocess.Process] = []
    runner = None
    try:
        for index in range(section.workers):
            env = dict(os.environ, **{WORKER_ENV: f"{index}:{os.getpid()}",
                                       MULTIPROC_ENV: metrics_dir})
            workers.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.tftp", *sys.argv[1:], env=env))
            log.info("worker_started", worker=index, pid=workers[-1].pid)
        runner = await shared_metrics.start_metrics_server(
            section.metrics_host, section.metrics_port,
            health=lambda: all(w.returncode is None for w in workers))
        waits = {asyncio.ensure_future(w.wait()): i for i, w in enumerate(workers)}
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for wait in waits:
            wait.cancel()
        if stopper not in done:
            index = min(waits[w] for w in done)
            dead = workers[index]
            log.error("worker_exited", worker=index, pid=dead.pid, status=dead.returncode,
                      fix="see the worker's log lines above; the service exits so that its "
                          "supervisor restarts it")
            raise runtime.ServiceFailed(
                f"tftp worker {index} (pid {dead.pid}) exited with status {dead.returncode}")
    finally:
        await _stop_workers(workers, grace)
        if runner is not None:
            await runner.cleanup()
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _stop_workers(workers: list, grace: float) -> None:
    for proc in workers:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    cancelled = False
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in workers)), grace)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        cancelled = True
    for proc in workers:
        if proc.returncode is None:
            log.warning("worker_killed", pid=proc.pid, grace_s=grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    if cancelled:
        raise asyncio.CancelledError


def main(argv=None) -> int:
    runtime.use_uvloop()  # lock-step TFTP: the per-datagram event-loop cost is most of ours
    return runtime.run_service("tftp", TftpSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
