"""Boot attempt ids written at the source (shared/attempts.py): the DHCP service decides when a
DISCOVER begins a new attempt (in the lease step's script, or in the events flush for the events
no lease step wrote), and every later event of the host, from any service, carries the id until
the next. The DHCP service's own path (DhcpServer.handle with real packets and a real
redis-server; only the sockets are left out), then the boot state read from the streams."""

from __future__ import annotations

import ipaddress
import time

from harness.dhcpkit import SentReplies, client_packet
from services.dhcp import codec
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import Interface
from shared import bootstate, keys, leases
from shared.cache import StaticInventory
from shared.events import EventLog
from shared.records import Host, Subnet

IFACE = Interface("eth0", 2, "198.18.8.1")
SUBNET = Subnet("attempts", ipaddress.IPv4Network("198.18.8.0/24"),
                ranges=(("198.18.8.50", "198.18.8.60"),))
MAC_BYTE = 8
KNOWN = "52:54:00:08:00:02"
DISABLED = "52:54:00:08:00:03"
POOL = "52:54:00:08:00:01"
PXE = dict(o93=b"\x00\x00", o60=b"PXEClient:Arch:00000:UNDI:002001")
IPXE = dict(o93=b"\x00\x00", o77=b"iPXE", o60=b"PXEClient:Arch:00000:UNDI:002001")


class Lab:
    def __init__(self, client, events: str) -> None:
        self.client = client
        self.store = leases.LeaseStore(client)
        inventory = StaticInventory(subnets=[SUBNET], hosts=[
            Host(mac=KNOWN), Host(mac=DISABLED, enabled=False)])
        self.events = EventLog(client, "dhcp", known=inventory.knows_host)
        self.tftp = EventLog(client, "tftp", known=inventory.knows_host)
        self.replies = SentReplies(IFACE)
        self.server = DhcpServer(DhcpSection(interfaces=("eth0",), events=events), inventory,
                                 self.store, self.events, self.replies)

    async def dora(self, n: int, **options: bytes) -> codec.Message:
        self.replies.sent.clear()
        await self.server.handle([client_packet(IFACE, 1, n, MAC_BYTE, **options)])
        offer = self.replies.sent[-1]
        assert offer.message_type == codec.MessageType.OFFER
        await self.server.handle([client_packet(
            IFACE, 3, n, MAC_BYTE, o50=codec.ip_bytes(offer.yiaddr),
            o54=codec.ip_bytes(IFACE.address), **options)])
        return self.replies.sent[-1]

    async def discover(self, n: int, **options: bytes) -> None:
        await self.server.handle([client_packet(IFACE, 1, n, MAC_BYTE, **options)])

    async def host_events(self, mac: str):
        await self.events.flush()
        await self.tftp.flush()
        return await self.events.read(mac, count=1000)


async def run(redis_url, events: str) -> None:
    client = leases.connect(redis_url)
    lab = Lab(client, events)
    try:
        await lab.server.sync_pools()
        # a BIOS PXE ROM: its DISCOVER begins attempt A; the loader it gets (undionly.kpxe)
        # does its own DHCP as iPXE: still A; iPXE's script, a TFTP transfer: still A
        first = await lab.dora(2, **PXE)
        assert first.message_type == codec.MessageType.ACK
        lab.tftp.emit("tftp.transfer", KNOWN, file="undionly.kpxe", result="ok")
        await lab.tftp.flush()
        await lab.dora(2, **IPXE)
        lab.tftp.emit("tftp.transfer", KNOWN, file="vmlinuz", result="ok")
        seen = await lab.host_events(KNOWN)
        ids = {e.attempt for e in seen}
        assert len(ids) == 1 and None not in ids, [(e.kind, e.attempt) for e in seen]
        a = ids.pop()
        assert a == f"{KNOWN}@{round(seen[0].ts * 1000)}"
        assert seen[-1].kind == "tftp.transfer" and seen[-1].attempt == a
        # the OS's own DHCP (no option 93): still A
        await lab.dora(2)
        # a reboot: the PXE ROM again begins attempt B; its retries before an ACK stay in B
        await lab.discover(2, **PXE)
        await lab.discover(2, **PXE)
        await lab.dora(2, **PXE)
        seen = await lab.host_events(KNOWN)
        b = seen[-1].attempt
        assert b != a and b.startswith(f"{KNOWN}@")
        later = [e for e in seen if e.attempt == b]
        assert [e.kind for e in later if e.kind != "dhcp.discover"] == [
            "dhcp.offer", "dhcp.offer", "dhcp.offer", "dhcp.ack"]
        assert (await client.hgetall(keys.attempt(KNOWN)))["id"] == b
        # the boot state groups by the ids written: two attempts, the latest is B
        found = bootstate.attempts(KNOWN, seen, time.time())
        assert [x.id for x in found] == [a, b]
        # a disabled host: no lease step, its ignored DISCOVERs go through the events flush:
        # one attempt (no ACK: retries), carried by both
        await lab.discover(3, **PXE)
        await lab.discover(3, **PXE)
        ignored = await lab.host_events(DISABLED)
        assert {e.kind for e in ignored} <= {"dhcp.discover", "dhcp.ignored"}
        assert len({e.attempt for e in ignored}) == 1 and ignored[0].attempt
        # a MAC the inventory does not know: no attempt, no key
        await lab.dora(1, **PXE)
        pool = await lab.host_events(POOL)
        assert pool and all(e.attempt is None for e in pool)
        assert not await client.exists(keys.attempt(POOL))
    finally:
        await lab.store.aclose()
        await client.aclose()


async def test_attempt_ids_written_by_the_lease_steps(redis_url):
    await run(redis_url, "leases")


async def test_an_attempt_key_of_another_type_fails_nothing(redis_url):
    """Written by hand as a string: the host still gets its address and its events, without
    an attempt id (the lease step and the events flush go on)."""
    client = leases.connect(redis_url)
    lab = Lab(client, "leases")
    try:
        await lab.server.sync_pools()
        await client.set(keys.attempt(KNOWN), "oops")
        await client.set(keys.attempt(DISABLED), "oops")
        ack = await lab.dora(2, **PXE)
        assert ack.message_type == codec.MessageType.ACK
        lab.tftp.emit("tftp.transfer", KNOWN, file="undionly.kpxe", result="ok")
        await lab.discover(3, **PXE)
        seen = await lab.host_events(KNOWN)
        assert [e.kind for e in seen] == ["dhcp.offer", "dhcp.ack", "tftp.transfer"]
        assert all(e.attempt is None for e in seen)
        assert [e.kind for e in await lab.host_events(DISABLED)] == ["dhcp.ignored"]
        assert await client.get(keys.attempt(KNOWN)) == "oops"
    finally:
        await lab.store.aclose()
        await client.aclose()


async def test_attempt_ids_with_discover_events(redis_url):
    await run(redis_url, "all")


async def test_a_host_stream_of_another_type_loses_only_that_copy(redis_url):
    """The events flush writes the rest of its batch, and the global copy, when one host's
    stream key was made by hand with another type."""
    client = leases.connect(redis_url)
    try:
        log = EventLog(client, "tftp")
        await client.set(keys.host_events(KNOWN), "oops")
        log.emit("tftp.transfer", KNOWN, file="a", result="ok")
        log.emit("tftp.transfer", POOL, file="b", result="ok")
        await log.flush()
        everything = [d for _i, d in await client.xrange(keys.EVENTS_STREAM)]
        assert [(d["mac"], d["file"]) for d in everything] == [(KNOWN, "a"), (POOL, "b")]
        assert await client.get(keys.host_events(KNOWN)) == "oops"
    finally:
        await client.aclose()
