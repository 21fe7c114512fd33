"""``python -m services.mirrorsync``: load settings, follow the inventory's mirrors, sync them on
schedule into checked snapshots, publish them atomically, until stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from services.mirrorsync import metrics as _metrics  # noqa: F401 - declares the service's metrics
from services.mirrorsync.server import MirrorSync
from services.mirrorsync.settings import MirrorsyncSettings
from shared import logs, metrics as shared_metrics, runtime
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.store import connect

log = logs.get_logger("mirrorsync")


async def serve(cfg: MirrorsyncSettings, stop: asyncio.Event) -> None:
    section = cfg.mirrorsync
    if shutil.which(section.rsync) is None:
        raise runtime.StartupError(f"mirrorsync.rsync {section.rsync!r} is not an executable "
                                   "program: install rsync (Debian package rsync)")
    try:
        os.makedirs(section.root, exist_ok=True)
    except OSError as exc:
        raise runtime.StartupError(f"mirrorsync.root {section.root!r}: {exc.strerror} (set "
                                   "BOOTYARD_MIRRORSYNC__ROOT to the mirror volume)") from None
    if not os.access(section.root, os.W_OK):
        raise runtime.StartupError(f"mirrorsync.root {section.root!r} is not writable")
    client = connect(cfg.redis.url, timeout=cfg.redis.timeout)
    inventory = InventoryCache(client, service="mirrorsync")
    events = EventLog(client, "mirrorsync", known=inventory.knows_host)
    service = MirrorSync(section, inventory, client, events)
    try:
        runner = await shared_metrics.start_metrics_server(
            section.metrics_host, section.metrics_port, health=lambda: inventory.ready)
    except OSError as exc:
        await client.aclose()
        raise runtime.StartupError(
            f"cannot listen on {section.metrics_host}:{section.metrics_port} for /metrics: "
            f"{exc.strerror} (set mirrorsync.metrics_port)") from None
    log.info("started", root=section.root, metrics_port=shared_metrics.bound_port(runner))
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(inventory.run(stop))
            group.create_task(events.run(stop))

            async def schedule() -> None:
                await inventory.wait_ready()
                log.info("following", mirrors=len(inventory.all("mirror")))
                await service.run(stop)

            scheduling = group.create_task(schedule())
            await stop.wait()
            if not inventory.ready:  # Redis never answered: nothing is running
                scheduling.cancel()
    finally:
        await runner.cleanup()
        await client.aclose()


def main(argv=None) -> int:
    return runtime.run_service("mirrorsync", MirrorsyncSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
