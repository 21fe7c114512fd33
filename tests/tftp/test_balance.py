"""Workers sharing new requests (services/tftp/balance.py): two servers on one SO_REUSEPORT
port in this process, as two workers, with real sockets. A classic BPF program on the port's
group hands every datagram to the first worker: the kernel's hash at its most uneven."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import time

import pytest
from tftp_rawclient import RawClient
from tftp_serverkit import HOSTS, PROFILES, section

from services.tftp import codec
from services.tftp.balance import Balancer
from services.tftp.server import TftpServer
from shared.cache import StaticInventory

SO_ATTACH_REUSEPORT_CBPF = 51


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def steer_to_first(sock) -> None:
    """Every datagram of the port's SO_REUSEPORT group to its first socket ("ret #0")."""
    insns = (_Insn * 1)(_Insn(0x06, 0, 0, 0))  # BPF_RET | BPF_K, 0
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                    bytes(_Prog(1, ctypes.cast(insns, ctypes.POINTER(_Insn)))))


@contextlib.asynccontextmanager
async def two_workers(root, tmp_path, moves: bool = False, **settings):
    """Two workers of one port sharing requests through the supervisor's private directory,
    every datagram to the port steered to worker 0; ``moves``: each takes transfers moved to
    it (test_balance_cpu.py); ``settings``: more of the TFTP section's."""
    servers: list[TftpServer] = []
    port = 0
    shared = tmp_path / "shared"  # as the supervisor's private directory
    shared.mkdir(mode=0o700)
    try:
        for index in range(2):
            srv = TftpServer(section(root, port=port, transfer_threads=0, **settings),
                             StaticInventory(hosts=HOSTS, profiles=PROFILES), worker=index)
            srv.balancer = Balancer(index, 2, str(shared), 69,
                                    deliver=srv.on_handed, busy=srv.handling)
            if moves:
                srv.balancer.adopt = srv.on_adopt
            srv.records = []
            srv.address = await srv.start()
            port = srv.address[1]
            servers.append(srv)
        steer_to_first(servers[0].listener.transport.get_extra_info("socket"))
        yield servers
    finally:
        for srv in servers:
            await srv.close()


@pytest.fixture
async def workers(root, tmp_path):
    async with two_workers(root, tmp_path) as servers:
        yield servers


RRQ = codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet", ()))


async def first_data(client) -> tuple[codec.Data, tuple]:
    datagram, peer = await client.recv()
    message = codec.decode(datagram)
    assert isinstance(message, codec.Data), message
    return message, peer


async def ack_to_the_end(client, first: codec.Data, peer) -> bytes:
    data, message = bytearray(first.data), first
    while len(message.data) == 512:
        await client.send(codec.encode(codec.Ack(message.block)), peer)
        message, _peer = await first_data(client)
        data += message.data
    await client.send(codec.encode(codec.Ack(message.block)), peer)
    return bytes(data)


async def wait_until(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_requests_are_spread_over_workers(workers):
    """All 20 requests reach worker 0; each runs until it has its first DATA (never ACKed,
    so every transfer stays in flight), and the workers end up with 10 each."""
    clients = [RawClient() for _ in range(20)]
    try:
        for client in clients:
            await client.send(RRQ, workers[0].address)
            await first_data(client)
        assert [len(w._busy) for w in workers] == [10, 10]
        assert workers[0].balancer.forwarded == 10 and workers[1].balancer.taken == 10
    finally:
        for client in clients:
            client.close()


async def test_a_copy_of_a_handed_over_request_starts_no_second_transfer(workers, root):
    held, client = RawClient(), RawClient()
    try:
        await held.send(RRQ, workers[0].address)
        await first_data(held)  # worker 0 has one transfer: the next request goes to worker 1
        await client.send(RRQ, workers[0].address)
        first, peer = await first_data(client)
        (handling,) = workers[1]._busy.values()
        # the workers are level now (1 and 1): without the route the copy would start a
        # transfer on worker 0; with it, worker 1's session sees a copy
        await client.send(RRQ, workers[0].address)
        await wait_until(lambda: handling.transfer.session.copies == 1, "the copy on worker 1")
        assert len(workers[0]._busy) == 1 and len(workers[1]._busy) == 1
        assert await ack_to_the_end(client, first, peer) == (root / "small.bin").read_bytes()
        await wait_until(lambda: not workers[0].balancer._routes, "the route released")
        assert [r.result for r in workers[1].records] == ["ok"]
    finally:
        held.close()
        client.close()


async def test_a_worker_gone_does_not_lose_requests(workers, root):
    held, client = RawClient(), RawClient()
    try:
        await held.send(RRQ, workers[0].address)
        await first_data(held)
        await client.send(RRQ, workers[0].address)
        await first_data(client)  # handed to worker 1 ...
        assert len(workers[1]._busy) == 1
        await workers[1].close()  # ... which goes away with its transfer
        await client.send(RRQ, workers[0].address)  # the client's retransmission
        first, peer = await first_data(client)
        assert first.block == 1 and len(workers[0]._busy) == 2
        assert await ack_to_the_end(client, first, peer) == (root / "small.bin").read_bytes()
        other = RawClient()  # and a new client, while worker 1 is gone
        try:
            data, _oack, _peer = await other.fetch(workers[0].address, "small.bin")
            assert data == (root / "small.bin").read_bytes()
        finally:
            other.close()
    finally:
        held.close()
        client.close()
