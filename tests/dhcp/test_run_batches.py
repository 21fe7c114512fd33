"""DhcpServer.run takes what the queue holds, at most dhcp.batch_size packets a batch, in
arrival order (a queue no longer than a batch is taken whole: one copy, not a popleft a
packet), and answers every packet."""

from __future__ import annotations

import asyncio
import collections
import ipaddress

from services.dhcp import codec
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import Datagram, Interface
from shared import leases
from shared.cache import StaticInventory
from shared.lease_script import RS, SEP
from shared.records import Subnet

IFACE = Interface("eth0", 2, "198.19.0.1")
RELAY = "198.19.0.5"
SUBNET = Subnet("runs", ipaddress.IPv4Network("198.19.0.0/16"),
                ranges=(("198.19.1.0", "198.19.1.255"),), relays=(RELAY,), lease_time=600)


class Queue:
    """The transport's side DhcpServer.run uses: a queue, a ready event; replies kept."""

    def __init__(self) -> None:
        self.interfaces = [IFACE]
        self.queue: collections.deque[Datagram] = collections.deque()
        self.ready = asyncio.Event()
        self.sent: list[bytes] = []

    def send(self, iface, data, ip, port, local_port=None) -> bool:
        self.sent.append(data)
        return True


class NoEvents:
    def emit(self, *args, **fields) -> None:
        pass


def discover(n: int) -> bytes:
    return codec.encode(codec.Message(xid=n, hops=1, giaddr=RELAY,
                                      chaddr=bytes((2, 0, 0, 0, 0, n)) + bytes(10),
                                      options={53: b"\x01"}))


async def test_batches_of_at_most_batch_size_in_arrival_order(monkeypatch):
    from services.dhcp import metrics as m

    gauge: list[float] = []  # the queue gauge, set only when the queue's length changed
    monkeypatch.setattr(m.QUEUE, "set", gauge.append, raising=False)
    batches: list[list[str]] = []
    store = leases.LeaseStore(None)
    store._loaded = True

    async def script(packed: str) -> str:  # the lease function's answer, in the process
        steps = [text.split(SEP) for text in packed.split(RS)[1:-1]]  # (after the batch's time)
        batches.append([fields[2] for fields in steps])
        return "".join(SEP.join(("ok", f"198.19.1.{int(f[2][-2:], 16)}", "offered",
                                 str(int(f[4]) + 30), "")) + RS for f in steps)

    store._script = script  # type: ignore[method-assign]
    transport = Queue()
    server = DhcpServer(DhcpSection(interfaces=("eth0",), batch_size=4, events="none"),
                        StaticInventory(subnets=[SUBNET]), store, NoEvents(), transport)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    for group in ((1, 2, 3, 4, 5, 6, 7, 8, 9, 10), (11, 12, 13)):  # 10: over a batch
        transport.queue.extend(Datagram(discover(n), IFACE, (RELAY, 67), 0.0) for n in group)
        transport.ready.set()
        for _ in range(200):
            if not transport.queue and len(transport.sent) == group[-1]:
                break
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    macs = [f"02:00:00:00:00:{n:02x}" for n in range(1, 14)]
    assert [mac for batch in batches for mac in batch] == macs  # every packet, in order
    assert all(len(batch) <= 4 for batch in batches) and len(batches[0]) == 4
    assert [codec.decode(p).xid for p in transport.sent] == list(range(1, 14))
    # 10 packets in batches of 4: 6, then 2, then 0 left; the next 3 leave 0 again: not set
    assert gauge == [6, 2, 0]
