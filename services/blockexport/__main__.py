"""``python -m services.blockexport``: load settings, open the raw socket (AoE, when
``blockexport.interface`` names one) and the iSCSI listener (TCP ``blockexport.iscsi_port``,
unless 0), serve until SIGTERM. With neither, the service refuses to start."""

from __future__ import annotations

import asyncio
import sys

from services.blockexport.iscsi_server import IscsiServer
from services.blockexport.server import BlockexportServer
from services.blockexport.settings import BlockexportSettings
from services.blockexport.transport import Transport
from shared import logs, metrics, runtime
from shared.attachments import Attachments, TargetStates
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.runtime import StartupError
from shared.store import connect

log = logs.get_logger("blockexport")


async def serve(cfg: BlockexportSettings, stop: asyncio.Event) -> None:
    section = cfg.blockexport
    if not section.interface and not section.iscsi_port:
        raise StartupError("blockexport.interface is empty and blockexport.iscsi_port is 0: "
                           "nothing to serve. Name the interface to serve AoE on (e.g. "
                           "BOOTYARD_BLOCKEXPORT__INTERFACE=eth1) and/or give iSCSI a port; the "
                           "service never serves AoE on every interface by default")
    transport = interface = None
    if section.interface:
        transport = Transport(section.interface, section.mtu)
        interface = transport.open()
    client = connect(cfg.redis.url, cfg.redis.timeout)
    cache = InventoryCache(client, service="blockexport")
    events = EventLog(client, "blockexport", known=cache.knows_host)
    aoe = None
    if transport is not None:
        aoe = BlockexportServer(section, cache, events, transport, Attachments(client),
                                TargetStates(client))
    iscsi = None
    if section.iscsi_port:
        iscsi = IscsiServer(section, cache, events, Leases(client), Attachments(client))
        try:
            await iscsi.start()
        except OSError as exc:
            if transport is not None:
                transport.close()
            raise StartupError(f"cannot listen for iSCSI on {section.iscsi_host or '*'}:"
                               f"{section.iscsi_port} (blockexport.iscsi_port): "
                               f"{exc.strerror}") from None
    runner = await metrics.start_metrics_server(
        section.metrics_host, section.metrics_port, health=lambda: cache.ready)
    log.info("listening", aoe_interface=interface.name if interface else "off",
             mac=":".join(f"{b:02x}" for b in interface.mac) if interface else "",
             mtu=interface.mtu if interface else 0,
             iscsi_port=iscsi.port if iscsi else "off", metrics_port=metrics.bound_port(runner))
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(cache.run(stop))
            tasks.create_task(events.run(stop))

            async def start_serving() -> None:
                await cache.wait_ready()
                for server in filter(None, (aoe, iscsi)):
                    await server.reconcile()
                log.info("serving", exports=sum(len(s.served) for s in filter(None, (aoe, iscsi))))
                async with asyncio.TaskGroup() as inner:
                    for server in filter(None, (aoe, iscsi)):
                        inner.create_task(server.follow_inventory(stop))
                        inner.create_task(server.housekeeping(stop))

            serving = tasks.create_task(start_serving())
            await stop.wait()
            serving.cancel()
    finally:
        for server in filter(None, (iscsi, aoe)):
            await server.close()
        if transport is not None:
            transport.close()
        await runner.cleanup()
        await client.aclose()


def main(argv=None) -> int:
    runtime.use_uvloop()  # the loop's own cost is in every request's latency
    return runtime.run_service("blockexport", BlockexportSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
