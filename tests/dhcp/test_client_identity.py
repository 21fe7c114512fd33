"""Issue 13 F3 and F12: whose lease is it.

F3: the client identity is option 61 when the client sends it, else htype/hlen/chaddr (RFC 2131
§4.2): IPoIB clients (RFC 4390: htype 32, hlen 0, empty chaddr) told apart only by option 61
get one address each, and the lease records the identity used.
F12: a client cannot DECLINE an address it already RELEASEd (nor one whose lease ran out).

The service's own path (DhcpServer.handle with real DHCP packets and a real redis-server); only
the sockets are left out."""

from __future__ import annotations

import ipaddress
import time

import pytest

from harness.dhcpkit import SentReplies
from services.dhcp import codec
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import Datagram, Interface
from shared import keys, leases
from shared.cache import StaticInventory
from shared.events import EventLog
from shared.records import Subnet

IFACE = Interface("eth0", 2, "198.18.7.1")
SUBNET = Subnet("ident", ipaddress.IPv4Network("198.18.7.0/24"),
                ranges=(("198.18.7.50", "198.18.7.59"),), lease_time=600)
IPOIB = 32  # ARP hardware type of InfiniBand (RFC 4390 §2.1)




def ipoib_client_id(n: int) -> bytes:
    """Option 61 of an IPoIB client (RFC 4390 §2.1: type 255, IAID, DUID)."""
    return bytes((0xff, 0, 0, 0, n, 0, 2, 0, 0, 0x15, 0x21)) + bytes((0xbe, 0xef, n))


def packet(mtype: int, *, htype: int = 1, chaddr: bytes = bytes(16), client_id: bytes | None,
           ciaddr: str = codec.ZERO_IP, **options: bytes) -> Datagram:
    opts = {53: bytes((mtype,)), **{int(k[1:]): v for k, v in options.items()}}
    if client_id is not None:
        opts[61] = client_id
    data = codec.encode(codec.Message(
        htype=htype, hlen=0 if htype == IPOIB else 6, xid=len(client_id or b"x"), ciaddr=ciaddr,
        chaddr=chaddr, flags=codec.FLAG_BROADCAST, options=opts))
    return Datagram(data, IFACE, ("0.0.0.0", 68), time.perf_counter())


@pytest.fixture
async def service(redis_url):
    client = leases.connect(redis_url)
    store = leases.LeaseStore(client)
    inventory = StaticInventory(subnets=[SUBNET])
    replies = SentReplies(IFACE)
    server = DhcpServer(DhcpSection(interfaces=("eth0",)), inventory, store,
                        EventLog(client, "dhcp", known=inventory.knows_host), replies)
    await server.sync_pools()
    yield server, replies, client
    await store.aclose()
    await client.aclose()


async def dora(server, replies, **who) -> codec.Message:
    replies.sent.clear()
    await server.handle([packet(codec.MessageType.DISCOVER, **who)])
    offer = replies.sent[-1]
    assert offer.message_type == codec.MessageType.OFFER
    await server.handle([packet(codec.MessageType.REQUEST, o50=codec.ip_bytes(offer.yiaddr),
                                o54=codec.ip_bytes(IFACE.address), **who)])
    ack = replies.sent[-1]
    assert ack.message_type == codec.MessageType.ACK and ack.yiaddr == offer.yiaddr
    return ack


async def test_f3_ipoib_clients_told_apart_only_by_option_61_get_two_addresses(service):
    server, replies, client = service
    first = await dora(server, replies, htype=IPOIB, client_id=ipoib_client_id(1))
    second = await dora(server, replies, htype=IPOIB, client_id=ipoib_client_id(2))
    assert first.yiaddr != second.yiaddr
    for ack, n in ((first, 1), (second, 2)):
        record = await client.hgetall(keys.lease(ack.yiaddr))
        assert record["client"] == "id:" + ipoib_client_id(n).hex()
        assert record["state"] == "bound"
        assert record["mac"] == "00:00:00:00:00:00"  # what chaddr holds: nothing
    # the first client renews: it keeps its own address, not the other's
    again = await dora(server, replies, htype=IPOIB, client_id=ipoib_client_id(1))
    assert again.yiaddr == first.yiaddr


async def test_f3_identity_is_option_61_else_htype_and_chaddr(service):
    server, replies, client = service
    mac = bytes.fromhex("525400070001") + bytes(10)
    plain = await dora(server, replies, chaddr=mac, client_id=None)
    # option 61 holding its own Ethernet address (what udhcpc and iPXE send): the same client
    same = await dora(server, replies, chaddr=mac, client_id=b"\x01" + mac[:6])
    assert same.yiaddr == plain.yiaddr
    assert (await client.hgetall(keys.lease(plain.yiaddr)))["client"] == "52:54:00:07:00:01"
    # another option 61 on the same network card is another client (RFC 2131 §4.2)
    other = await dora(server, replies, chaddr=mac, client_id=b"\xff\x00\x00\x00\x01host-b")
    assert other.yiaddr != plain.yiaddr
    record = await client.hgetall(keys.lease(other.yiaddr))
    assert record["client"] == "id:ff00000001686f73742d62"
    assert record["mac"] == "52:54:00:07:00:01"
    # both are leased to that MAC for TFTP and HTTP
    reader = leases.Leases(client)
    assert await reader.holder(plain.yiaddr) == await reader.holder(other.yiaddr) == \
        "52:54:00:07:00:01"


def test_f3_client_identity_rules():
    mac = bytes.fromhex("525400070001")
    chaddr = mac + bytes(10)
    assert codec.client_identity(1, 6, chaddr, None) == "52:54:00:07:00:01"
    assert codec.client_identity(1, 6, chaddr, b"\x01" + mac) == "52:54:00:07:00:01"
    assert codec.client_identity(1, 6, chaddr, b"\x01" + bytes(6)) == "id:01000000000000"
    assert codec.client_identity(1, 6, chaddr, b"\x00abc") == "id:00616263"
    assert codec.client_identity(IPOIB, 0, bytes(16), None) == "hw:32:"
    assert codec.client_identity(6, 6, chaddr, None) == "hw:6:525400070001"
    # the MAC given by the caller (chaddr_mac) is the Ethernet identity, not made again
    mac_text = codec.chaddr_mac(chaddr)
    for htype, hlen, client_id in ((1, 6, None), (1, 6, b"\x01" + mac),
                                   (1, 6, b"\x00abc"), (IPOIB, 0, None), (6, 6, None)):
        assert (codec.client_identity(htype, hlen, chaddr, client_id, mac_text)
                == codec.client_identity(htype, hlen, chaddr, client_id))


async def test_f12_a_client_cannot_decline_an_address_it_released(service):
    server, replies, client = service
    mac = bytes.fromhex("525400070002") + bytes(10)
    ack = await dora(server, replies, chaddr=mac, client_id=None)
    await server.handle([packet(codec.MessageType.RELEASE, chaddr=mac, client_id=None,
                                ciaddr=ack.yiaddr, o54=codec.ip_bytes(IFACE.address))])
    record = await client.hgetall(keys.lease(ack.yiaddr))
    assert record["state"] == "released"
    await server.handle([packet(codec.MessageType.DECLINE, chaddr=mac, client_id=None,
                                o50=codec.ip_bytes(ack.yiaddr),
                                o54=codec.ip_bytes(IFACE.address))])
    record = await client.hgetall(keys.lease(ack.yiaddr))
    assert record["state"] == "released", "a DECLINE after RELEASE quarantined the address"
    # not quarantined: it is free for the next client at once
    score = await client.zscore(keys.pool(SUBNET.name), ack.yiaddr)
    assert score <= time.time()


async def test_f12_decline_of_a_released_or_expired_lease_is_ignored(redis_url):
    client = leases.connect(redis_url)
    store = leases.LeaseStore(client, quarantine=600)
    try:
        await store.sync_pool("f12", (("198.18.8.10", "198.18.8.11"),))
        now = int(time.time())
        mac = "52:54:00:08:00:01"
        offer = await store.step(store.offer_step("f12", mac, reserved=None, requested=None,
                                                  hostname="", now=now))
        ack = await store.step(store.request_step("f12", mac, offer.ip, reserved=None,
                                                  hostname="", lease_time=60, now=now))
        assert (await store.step(store.release_step("f12", mac, ack.ip, now=now))).kind == "ok"
        out = await store.step(store.decline_step("f12", mac, ack.ip, now=now + 1))
        assert out.kind == "ignored" and out.reason == "lease is released"
        # a lease that ran out is not the client's to decline either
        ack = await store.step(store.request_step("f12", mac, ack.ip, reserved=None,
                                                  hostname="", lease_time=60, now=now + 2))
        assert ack.kind == "ok"
        out = await store.step(store.decline_step("f12", mac, ack.ip, now=now + 62))
        assert out.kind == "ignored" and out.reason == "lease expired"
        # a held lease is declined (and quarantined) as before
        ack = await store.step(store.request_step("f12", mac, ack.ip, reserved=None,
                                                  hostname="", lease_time=60, now=now + 63))
        out = await store.step(store.decline_step("f12", mac, ack.ip, now=now + 64))
        assert out.kind == "ok" and out.state == "declined" and out.expires == now + 664
    finally:
        await store.aclose()
        await client.aclose()
