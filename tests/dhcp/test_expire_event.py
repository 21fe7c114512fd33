"""A lease that runs out returns to the pool and the service records a ``dhcp.expire`` event.

The service's own path (DhcpServer.handle with real DHCP packets, real redis-server,
DhcpServer.housekeeping as the service runs it); only the sockets are left out."""

from __future__ import annotations

import asyncio
import ipaddress
import time

from harness.dhcpkit import SentReplies, client_packet
from services.dhcp import codec
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import Datagram, Interface
from shared import leases
from shared.cache import StaticInventory
from shared.events import EventLog, host_stream
from shared.records import Subnet

IFACE = Interface("eth0", 2, "198.18.9.1")
SUBNET = Subnet("expiry", ipaddress.IPv4Network("198.18.9.0/24"),
                ranges=(("198.18.9.50", "198.18.9.50"),), lease_time=2)  # one address




def packet(mtype: int, n: int, **options: bytes) -> Datagram:
    return client_packet(IFACE, mtype, n, 9, **options)


async def dora(server: DhcpServer, replies: SentReplies, n: int) -> codec.Message | None:
    replies.sent.clear()
    await server.handle([packet(1, n)])
    if not replies.sent:
        return None
    offer = replies.sent[-1]
    await server.handle([packet(3, n, o50=codec.ip_bytes(offer.yiaddr),
                                o54=codec.ip_bytes(IFACE.address))])
    return replies.sent[-1]


async def test_expired_lease_returns_to_pool_with_expire_event(redis_url):
    client = leases.connect(redis_url)
    store = leases.LeaseStore(client)
    inventory = StaticInventory(subnets=[SUBNET])
    events = EventLog(client, "dhcp", known=inventory.knows_host)
    replies = SentReplies(IFACE)
    server = DhcpServer(DhcpSection(interfaces=("eth0",), housekeeping_interval=0.2),
                        inventory, store, events, replies)
    stop = asyncio.Event()
    housekeeping = asyncio.create_task(server.housekeeping(stop))
    try:
        await server.sync_pools()
        first = await dora(server, replies, 1)
        assert first is not None and first.message_type == codec.MessageType.ACK
        assert first.yiaddr == "198.18.9.50"
        mac_a, mac_b = "52:54:00:09:00:01", "52:54:00:09:00:02"
        record = await leases.Leases(client).lease(first.yiaddr)
        assert record.mac == mac_a and record.state == "bound" and record.current()
        assert await dora(server, replies, 2) is None  # the only address is leased
        await events.flush()
        assert (await events.read(mac_b))[-1].fields["reason"] == "pool_exhausted"
        # pool clients are not in the inventory: their events are in the global stream only
        assert not await client.exists(host_stream(mac_a), host_stream(mac_b))

        async def expire_events():
            await events.flush()
            return [dict(e.fields, service=e.service) for e in await events.read(mac_a)
                    if e.kind == "dhcp.expire"]
        deadline = time.monotonic() + 15
        while not await expire_events():
            assert time.monotonic() < deadline, "no dhcp.expire event after the lease ended"
            await asyncio.sleep(0.2)
        (event,) = await expire_events()
        assert event["ip"] == "198.18.9.50" and event["subnet"] == "expiry"
        assert event["service"] == "dhcp"
        assert not (await leases.Leases(client).lease(first.yiaddr)).current()
        # back in the pool: the other client gets it now
        second = await dora(server, replies, 2)
        assert second is not None and second.message_type == codec.MessageType.ACK
        assert second.yiaddr == "198.18.9.50"
        assert (await leases.Leases(client).lease(second.yiaddr)).mac == mac_b
        # the expiry is reported once, not on every housekeeping round
        await asyncio.sleep(0.5)
        assert len(await expire_events()) == 1
    finally:
        stop.set()
        await housekeeping
        await store.aclose()
        await client.aclose()

