"""A client that asks again from the same port while, or right after, its transfer runs: a
copy of its request never starts a second transfer, its next request is served at once
(docs/tftp.md). On loopback, with transfers in threads and on the event loop."""

from __future__ import annotations

import os
import time

import pytest
from tftp_serverkit import HOSTS, PROFILES, listener_caught_up, section, wait_records

from harness.waiting import wait_until
from services.tftp import codec
from services.tftp.server import TftpServer
from services.tftp.threaded import ThreadTransfer
from shared.cache import StaticInventory


async def _ack_to_the_end(client, first: bytes, peer, size: int) -> bytes:
    """Lock-step: ACK ``first`` (DATA 1) and each block after it; the file's bytes."""
    received = codec.decode(first).data
    block = 1
    while True:
        await client.send(codec.encode(codec.Ack(block)), peer)
        if len(received) == size:
            return received
        datagram, source = await client.recv()
        assert source == peer
        block += 1
        received += codec.decode(datagram).data


async def _one_transfer_only(server, client) -> None:
    """Every task is over, one transfer was recorded (ok) and nothing else reached the client."""
    # a transfer's thread ends after its last ACK; on a loaded machine (the compiled copy of
    # these tests runs beside the suite) that took longer than the usual 5 s
    await wait_until(lambda: not server._tasks, timeout=30, what="every transfer over")
    assert [r.result for r in server.records] == ["ok"]
    with pytest.raises(BlockingIOError):
        client.sock.recv(70000)                   # no DATA 1 from a second transfer


async def test_duplicate_rrq_does_not_start_a_second_transfer(server, client, root):
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet"))
    await client.send(request, server.address)
    await client.send(request, server.address)
    first, peer = await client.recv()
    others = await listener_caught_up(client, server.address)  # the copy was handled
    assert all(source == peer for _datagram, source in others)  # no DATA from another port
    assert len(server._tasks) == 1                              # and no second transfer
    assert codec.decode(first).block == 1
    await _ack_to_the_end(client, first, peer, 3000)
    await _one_transfer_only(server, client)


async def test_next_request_right_after_the_final_ack_is_served(server, client, root):
    """PXE ROMs ask for the next file from the same port the moment they ACK the last block:
    the request must not be taken for a retransmission of the previous one (a transfer's
    thread may not have read that ACK yet)."""
    (root / "one.bin").write_bytes(b"x" * 100)   # one block: DATA 1 is the last one
    (root / "two.bin").write_bytes(b"y" * 100)
    for i in range(20):
        name = ("one.bin", "two.bin")[i % 2]
        data, _, _ = await client.fetch(server.address, name, timeout=0.5)
        assert data == (root / name).read_bytes()
    await wait_records(server, 20)
    assert {r.result for r in server.records} == {"ok"}


@pytest.mark.parametrize("size", [100, 600], ids=["one-block", "two-blocks"])
async def test_a_retransmitted_request_is_served_once(root, client, size):
    """The client's second copy of its request crosses our first DATA: one transfer, ended
    ok, and nothing from a second port (a copy is not a next request). On the event loop,
    which can read the transfer's socket when the copy comes; a transfer in its own thread
    serves a copy if it ends ok (docs/tftp.md), and ends a different request at once."""
    await _copy_crosses_the_first_data(root, client, size, transfer_threads=0)


async def _copy_crosses_the_first_data(root, client, size: int, transfer_threads: int):
    """A server of its own (transfers in threads or not): the copy crosses DATA 1."""
    (root / "f.bin").write_bytes(os.urandom(size))
    server = TftpServer(section(root, transfer_threads=transfer_threads),
                        StaticInventory(hosts=HOSTS, profiles=PROFILES))
    server.records = []
    server.address = await server.start()
    try:
        await _copy_crossing(server, client, size)
    finally:
        await server.close()


async def _copy_crossing(server, client, size: int):
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "f.bin", "octet"))
    await client.send(request, server.address)
    first, peer = await client.recv()
    await client.send(request, server.address)   # the copy, sent before the client saw DATA 1
    await listener_caught_up(client, server.address)  # ... and handled before its ACK 1
    session = server._busy[client.sock.getsockname()].transfer.session
    if not server.cfg.transfer_threads:
        assert session.copies == 1 and not session.finished
    await _ack_to_the_end(client, first, peer, size)
    await _one_transfer_only(server, client)
    assert session.copies == 1


async def test_a_retransmitted_request_is_served_once_by_a_thread(root, client):
    """The same, with the transfer in its own thread: the thread takes the copy when ACK 1
    wakes it, finds its transfer still running, and ignores it (a file of more than one
    block; for one block see docs/tftp.md)."""
    await _copy_crosses_the_first_data(root, client, 600, transfer_threads=1)


async def test_a_copy_a_thread_takes_after_the_final_ack_is_still_a_copy(root, client,
                                                                         monkeypatch):
    """The thread takes the waiting copy late, after the client's final ACK has reached its
    socket (a loaded machine: the thread is not scheduled between sending the last block and
    taking its requests; here it is held there). The copy came before the last block was
    sent, so the client cannot have re-fetched: it is a copy, and no second transfer starts
    (one did, found by CI)."""
    take = ThreadTransfer._take_requests
    held = []

    def late(self, now, last=False):
        if self._requests and not last:
            time.sleep(0.3)  # the client ACKs the last block meanwhile
            held.append(self._requests[0])
        take(self, now, last)

    monkeypatch.setattr(ThreadTransfer, "_take_requests", late)
    await _copy_crosses_the_first_data(root, client, 600, transfer_threads=1)
    assert held and held[0][1]  # taken late, and known to have come before the last block


async def test_a_new_request_after_a_lost_final_ack_is_served_at_once(server, client, root):
    """The client's final ACK is lost and it asks for its next file from the same port (PXE
    ROMs do): that request is proof it is done, so it must not wait for our give-up (24 s by
    default) and the finished transfer is recorded as unconfirmed, not as a timeout."""
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet"))
    await client.send(request, server.address)
    for block in (1, 2, 3, 4, 5, 6):  # 3000 bytes: 5 full blocks and a short last one
        datagram, peer = await client.recv()
        assert codec.decode(datagram).block == block
        if block < 6:
            await client.send(codec.encode(codec.Ack(block)), peer)
    # no ACK 6 (lost): the next request from the same port
    started = time.monotonic()
    data, _, _ = await client.fetch(server.address, "exact.bin")
    assert data == (root / "exact.bin").read_bytes()
    assert time.monotonic() - started < 10  # served before any give-up (24 s)
    await wait_records(server, 2)
    first = next(r for r in server.records if r.file == "small.bin")
    assert first.result == "unconfirmed" and "new request from the same port" in first.detail
    assert {r.result for r in server.records if r.file == "exact.bin"} == {"ok"}
