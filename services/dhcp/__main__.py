"""``python -m services.dhcp``: load settings, open the sockets, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

import services.dhcp as package
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSettings
from services.dhcp.transport import Transport, resolve_interfaces
from shared import leases, logs, metrics, runtime
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.store import connect, is_sentinel_url

log = logs.get_logger("dhcp")


def replica_acks(section, url: str) -> int:
    """``dhcp.replica_acks`` as a number: ``auto`` waits for one replica behind Sentinel (a
    failover promotes a replica: it must have the leases) and for none otherwise."""
    if section.replica_acks == "auto":
        return 1 if is_sentinel_url(url) else 0
    return int(section.replica_acks)


async def serve(cfg: DhcpSettings, stop: asyncio.Event) -> None:
    section = cfg.dhcp
    interfaces = resolve_interfaces(section.interfaces)  # refuses to start without any
    transport = Transport(interfaces, section.server_port, section.queue_size,
                          extra_ports=(section.boot_server_port,) if section.proxy else (),
                          port_settings={section.server_port: "dhcp.server_port",
                                         section.boot_server_port: "dhcp.boot_server_port"})
    transport.open()
    client = connect(cfg.redis.url, cfg.redis.timeout)
    lease_client = leases.connect(cfg.redis.url, cfg.redis.timeout)
    cache = InventoryCache(client, service="dhcp")
    events = EventLog(client, "dhcp", known=cache.knows_host)
    store = leases.LeaseStore(lease_client, offer_hold=section.offer_hold,
                              quarantine=section.decline_quarantine,
                              wait_replicas=replica_acks(section, cfg.redis.url),
                              wait_timeout=section.replica_timeout)
    server = DhcpServer(section, cache, store, events, transport)
    try:
        with runtime.listening("dhcp.metrics_port", section.metrics_host, section.metrics_port):
            runner = await metrics.start_metrics_server(
                section.metrics_host, section.metrics_port, health=lambda: cache.ready)
    except runtime.PortUnavailable:
        transport.close()
        raise
    log.info("listening", interfaces=",".join(f"{i.name}={i.address}" for i in interfaces),
             port=section.server_port, metrics_port=metrics.bound_port(runner),
             # the packet path: compiled or why not (services/dhcp/__init__.py)
             compiled="yes" if package.NATIVE else f"no ({package.NATIVE_REASON})")
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(cache.run(stop))
            tasks.create_task(events.run(stop))

            async def start_serving() -> None:
                await cache.wait_ready()
                try:
                    await server.sync_pools()
                except Exception as exc:  # noqa: BLE001 - housekeeping retries it
                    log.warning("pool_sync_failed", reason=str(exc))
                log.info("serving", subnets=len(cache.subnets()), hosts=len(cache.hosts()))
                async with asyncio.TaskGroup() as inner:
                    for _ in range(section.batches_in_flight):
                        inner.create_task(server.run(stop))
                    inner.create_task(server.housekeeping(stop))

            serving = tasks.create_task(start_serving())
            await stop.wait()
            serving.cancel()
    finally:
        transport.close()
        await runner.cleanup()
        await client.aclose()
        await store.aclose()
        await lease_client.aclose()


def main(argv=None) -> int:
    runtime.use_uvloop()  # the event loop and the Redis round trip are per-batch costs
    return runtime.run_service("dhcp", DhcpSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
