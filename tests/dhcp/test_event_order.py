"""Events are ordered as they happened: a DISCOVER's ``dhcp.discover`` comes before the
``dhcp.offer`` that answered it, by time (``ts``) and in the streams (what ``follow`` and the
admin API's live stream read), for a pool client, an inventory host and a DISCOVER the server
ignores. The DHCP service's own path (DhcpServer.handle with real packets and a real
redis-server); only the sockets are left out."""

from __future__ import annotations

import ipaddress

from harness.dhcpkit import SentReplies, client_packet
from services.dhcp import codec
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import Interface
from shared import keys, leases
from shared.cache import StaticInventory
from shared.events import EventLog
from shared.records import Host, Subnet

IFACE = Interface("eth0", 2, "198.18.9.1")

SUBNET = Subnet("order", ipaddress.IPv4Network("198.18.9.0/24"),
                ranges=(("198.18.9.50", "198.18.9.60"),))
KNOWN = "52:54:00:09:00:02"
DISABLED = "52:54:00:09:00:03"


def packet(mtype: int, n: int, **options: bytes):
    return client_packet(IFACE, mtype, n, 9, o93=b"\x00\x07", **options)


async def test_discover_is_recorded_before_the_offer_that_answers_it(redis_url):
    client = leases.connect(redis_url)
    store = leases.LeaseStore(client)
    inventory = StaticInventory(subnets=[SUBNET], hosts=[
        Host(mac=KNOWN), Host(mac=DISABLED, enabled=False)])
    events = EventLog(client, "dhcp", known=inventory.knows_host)
    replies = SentReplies(IFACE)
    server = DhcpServer(DhcpSection(interfaces=("eth0",), events="all"), inventory, store,
                        events, replies)
    try:
        await server.sync_pools()
        for n in (1, 2):  # a pool client, an inventory host (which has a stream of its own)
            replies.sent.clear()
            await server.handle([packet(1, n)])
            offer = replies.sent[-1]
            assert offer.message_type == codec.MessageType.OFFER
            await server.handle([packet(3, n, o50=codec.ip_bytes(offer.yiaddr),
                                        o54=codec.ip_bytes(IFACE.address))])
        await server.handle([packet(1, 3)])  # disabled: ignored, no lease step
        await events.flush()
        stream = [d for _i, d in await client.xrange(keys.EVENTS_STREAM)]
        for mac in ("52:54:00:09:00:01", KNOWN):
            in_stream = [d["kind"] for d in stream if d.get("mac") == mac]
            assert in_stream == ["dhcp.discover", "dhcp.offer", "dhcp.ack"], mac
            read = await events.read(mac)
            assert [e.kind for e in read] == in_stream
            assert read[0].fields == {"arch": "7"}
            assert read[0].ts <= read[1].ts <= read[2].ts
        own = [d["kind"] for _i, d in await client.xrange(keys.host_events(KNOWN))]
        assert own == ["dhcp.discover", "dhcp.offer", "dhcp.ack"]
        assert [d["kind"] for d in stream if d.get("mac") == DISABLED] == [
            "dhcp.discover", "dhcp.ignored"]
    finally:
        await store.aclose()
        await client.aclose()
