"""``python -m services.tftp``: load settings, connect to Redis, serve until stopped."""

from __future__ import annotations

import asyncio
import os
import sys

from shared import logs, metrics as shared_metrics, runtime
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.store import connect

from services.tftp import metrics as _metrics  # noqa: F401 - declares the service's metrics
from services.tftp.server import TftpServer, lease_mac
from services.tftp.settings import TftpSettings

log = logs.get_logger("tftp")


async def serve(cfg: TftpSettings, stop: asyncio.Event) -> None:
    section = cfg.tftp
    if not os.path.isdir(section.root):
        raise runtime.StartupError(
            f"tftp.root {section.root!r} is not a directory: create it (make tftp-root "
            f"TFTP_ROOT={section.root}) or set BOOTYARD_TFTP__ROOT")
    client = connect(cfg.redis.url, timeout=cfg.redis.timeout)
    inventory = InventoryCache(client, service="tftp")
    events = EventLog(client, "tftp")
    server = TftpServer(section, inventory, leases=lambda ip: lease_mac(client, ip),
                        events=events)
    try:
        await server.start()
    except OSError as exc:
        raise runtime.StartupError(
            f"cannot bind UDP {section.bind}:{section.port}: {exc.strerror} (set tftp.port / "
            f"tftp.bind; port 69 needs root or CAP_NET_BIND_SERVICE)") from None
    runner = await shared_metrics.start_metrics_server(
        section.metrics_host, section.metrics_port, health=lambda: inventory.ready)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(inventory.run(stop))
            group.create_task(events.run(stop))
            await stop.wait()
            await server.close()
    finally:
        await runner.cleanup()
        await client.aclose()


def main(argv=None) -> int:
    runtime.use_uvloop()  # lock-step TFTP: the per-datagram event-loop cost is most of ours
    return runtime.run_service("tftp", TftpSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
