"""``python -m services.blockexport``: load settings, open the raw socket, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from services.blockexport.server import BlockexportServer
from services.blockexport.settings import BlockexportSettings
from services.blockexport.transport import Transport
from shared import logs, metrics, runtime
from shared.attachments import Attachments, TargetStates
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.store import connect

log = logs.get_logger("blockexport")


async def serve(cfg: BlockexportSettings, stop: asyncio.Event) -> None:
    section = cfg.blockexport
    transport = Transport(section.interface, section.mtu)
    interface = transport.open()  # refuses to start without an interface
    client = connect(cfg.redis.url, cfg.redis.timeout)
    cache = InventoryCache(client, service="blockexport")
    events = EventLog(client, "blockexport", known=cache.knows_host)
    server = BlockexportServer(section, cache, events, transport, Attachments(client),
                               TargetStates(client))
    runner = await metrics.start_metrics_server(
        section.metrics_host, section.metrics_port, health=lambda: cache.ready)
    log.info("listening", interface=interface.name, mac=":".join(f"{b:02x}" for b in
                                                                interface.mac),
             mtu=interface.mtu, metrics_port=metrics.bound_port(runner))
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(cache.run(stop))
            tasks.create_task(events.run(stop))

            async def start_serving() -> None:
                await cache.wait_ready()
                await server.reconcile()
                log.info("serving", exports=len(server.served))
                async with asyncio.TaskGroup() as inner:
                    inner.create_task(server.follow_inventory(stop))
                    inner.create_task(server.housekeeping(stop))

            serving = tasks.create_task(start_serving())
            await stop.wait()
            serving.cancel()
    finally:
        await server.close()
        transport.close()
        await runner.cleanup()
        await client.aclose()


def main(argv=None) -> int:
    runtime.use_uvloop()  # the loop's own cost is in every request's latency
    return runtime.run_service("blockexport", BlockexportSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
