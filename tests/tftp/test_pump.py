"""The compiled lock-step pump (services/tftp/pump.py, Cython): lock-step transfers on the event
loop go through it when the package runs compiled, and through the loop's own reader callback
otherwise; either way the RFC 1350 rules hold (a duplicate ACK releases nothing, a lost DATA is
sent again, the transfer ends ok). test_native_tftp.py runs this module in the other mode."""

from __future__ import annotations

import asyncio
import os

import pytest
from tftp_rawclient import RawClient

import services.tftp as package
from harness.waiting import wait_until
from services.tftp import codec, transport
from services.tftp.server import TftpServer
from services.tftp.settings import TftpSection
from shared.cache import StaticInventory

SIZE = 512 * 20 + 100  # 21 blocks of the default blksize


@pytest.fixture
async def server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(SIZE))
    srv = TftpServer(TftpSection(root=str(root), bind="127.0.0.1", port=0, max_transfers=50,
                                 transfer_threads=0), StaticInventory(hosts=[], profiles=[]))
    srv.records = []
    srv.address = await srv.start()
    srv.root = root
    yield srv
    await srv.close()


def pump_blocks() -> int | None:
    pump = transport._pumps.get(asyncio.get_running_loop())
    return None if pump is None else pump.blocks


async def expect_data(client, peer, block: int) -> bytes:
    datagram, source = await client.recv(timeout=10)
    assert source == peer
    message = codec.decode(datagram)
    assert isinstance(message, codec.Data) and message.block == block, message
    return message.data


async def test_the_pump_is_used_exactly_when_the_package_runs_compiled(server, client):
    assert (transport._pump is not None) == package.NATIVE, package.NATIVE_REASON
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "f.bin", "octet"))
    await client.send(request, server.address)
    datagram, peer = await client.recv()
    received = codec.decode(datagram).data
    for block in range(1, 6):
        await client.send(codec.encode(codec.Ack(block)), peer)
        received += await expect_data(client, peer, block + 1)
    if package.NATIVE:
        assert pump_blocks() == 5  # ACK 1..5 each released the next DATA from the pump
    else:
        assert pump_blocks() is None
    block = 6
    while len(received) < SIZE:
        await client.send(codec.encode(codec.Ack(block)), peer)
        block += 1
        received += await expect_data(client, peer, block)
    await client.send(codec.encode(codec.Ack(block)), peer)
    assert received == (server.root / "f.bin").read_bytes()
    await wait_until(lambda: not server._tasks, timeout=30, what="the transfer over")
    assert [r.result for r in server.records] == ["ok"]
    assert pump_blocks() is None  # the last transfer out closed the pump's epoll set


async def test_duplicate_ack_and_lost_data_through_the_pump(server, client):
    """A duplicate ACK releases nothing (the Sorcerer's Apprentice rule, RFC 1123 4.2.3.1),
    an unanswered DATA is sent again after the timeout, and the transfer ends ok."""
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "f.bin", "octet"))
    await client.send(request, server.address)
    datagram, peer = await client.recv()
    received = codec.decode(datagram).data
    await client.send(codec.encode(codec.Ack(1)), peer)
    received += await expect_data(client, peer, 2)
    await client.send(codec.encode(codec.Ack(1)), peer)    # a duplicate of ACK 1
    await client.send(codec.encode(codec.Ack(2)), peer)
    received += await expect_data(client, peer, 3)         # not a second DATA 2 first
    again = await expect_data(client, peer, 3)             # no ACK 3: DATA 3 again
    assert received.endswith(again)
    block = 3
    while len(received) < SIZE:
        await client.send(codec.encode(codec.Ack(block)), peer)
        block += 1
        received += await expect_data(client, peer, block)
    await client.send(codec.encode(codec.Ack(block)), peer)
    assert received == (server.root / "f.bin").read_bytes()
    await wait_until(lambda: not server._tasks, timeout=30, what="the transfer over")
    assert [r.result for r in server.records] == ["ok"]


async def test_many_lockstep_transfers_at_once(server):
    """Ten clients in parallel (one pump for all, on the compiled path): every file whole."""
    clients = [RawClient() for _ in range(10)]
    try:
        results = await asyncio.gather(*(c.fetch(server.address, "f.bin", {"blksize": 1468})
                                         for c in clients))
    finally:
        for c in clients:
            c.close()
    want = (server.root / "f.bin").read_bytes()
    assert all(data == want for data, _oack, _peer in results)
    await wait_until(lambda: len(server.records) == 10, timeout=30, what="ten records")
    assert {r.result for r in server.records} == {"ok"}
    assert pump_blocks() is None
