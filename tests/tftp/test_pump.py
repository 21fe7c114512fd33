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
from services.tftp.content import BytesSource, FileSource
from services.tftp.server import TftpServer
from services.tftp.session import Limits, ReadSession
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


# -- the session's per-block state, lent to the pump and written back ----------------------------

class FakeLoop:
    """What a Pump asks of its event loop: a reader for its epoll set and the time (set here)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.readers: dict = {}

    def time(self) -> float:
        return self.now

    def add_reader(self, fd, callback) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd) -> None:
        self.readers.pop(fd, None)


class Calls:
    """Stands for the Transfer a Slot calls back: records what it is asked."""

    def __init__(self) -> None:
        self.flushed = 0
        self.armed: list[float] = []
        self.handled: list[bytes] = []
        self.slot = None

    def _flush(self) -> None:
        self.flushed += 1

    def _arm(self, when: float) -> None:
        self.armed.append(when)
        self.slot.timer_at = when  # as Transfer._arm: the slot knows when the timer fires

    def _handle(self, data: bytes) -> None:
        self.handled.append(bytes(data))

    def _recheck(self) -> None:
        pass


def model_pump(session: ReadSession, steps: list[tuple[float, bytes]]) -> list[bytes]:
    """The pure-Python mode has no pump: the same bookkeeping, written here from the session's
    rules, through lockstep_lend/lockstep_restore (so those are tested in both modes)."""
    (sent, payload, sent_at, ahead, octets, srtt, rttvar, rto, rto_min, rto_max, blksize,
     source) = session.lockstep_lend()
    out, dirty, now, last = [], False, 0.0, False
    for now, ack in steps:
        if ack != codec.encode(codec.Ack(sent & 0xFFFF)):
            continue  # the transfer's Python path takes it (not modelled)
        out.append(codec.HEADER.pack(3, (sent + 1) & 0xFFFF) + bytes(ahead))
        if sent_at is not None:
            rtt = now - sent_at
            if srtt is None:
                srtt, rttvar = rtt, rtt / 2
            else:
                rttvar = 0.75 * rttvar + 0.25 * abs(srtt - rtt)
                srtt = 0.875 * srtt + 0.125 * rtt
            rto = min(max(srtt + 4 * rttvar, rto_min), rto_max)
        sent, payload, sent_at, dirty = sent + 1, ahead, now, True
        octets += len(payload)
        if len(payload) < blksize:
            ahead, last = None, True
            break
        ahead = source.read(blksize)
    if dirty:
        session.lockstep_restore(sent, payload, ahead, last, octets, now, srtt, rttvar, rto,
                                 now + rto)
    return out


def compiled_pump(session: ReadSession, steps: list[tuple[float, bytes]],
                  calls: Calls) -> list[bytes]:
    """The compiled pump, driven by hand: a socket pair, a loop whose time the steps set."""
    import socket
    loop = FakeLoop()
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    pump = transport._pump.Pump(loop)
    slot = transport._pump.Slot(ours.fileno(), calls, session)
    calls.slot = slot
    pump.add(slot)
    slot.lend(session.lockstep_lend())
    out = []
    try:
        for now, ack in steps:
            loop.now = now
            peer.send(ack)
            pump.service()
            while True:
                try:
                    out.append(peer.recv(65536, socket.MSG_DONTWAIT))
                except BlockingIOError:
                    break
    finally:
        slot.reclaim()  # as the transfer does before it reads its session (an error too)
        pump.remove(slot)
        ours.close()
        peer.close()
    assert not pump.open and not loop.readers  # the last slot out closed the set
    return out


STATE = ("_acked", "_sent", "_expiries", "_progress_at", "_last", "bytes_sent", "_srtt",
         "_rttvar", "_rto", "_deadline", "_sent_at", "retransmits", "finished", "result")


def state(session: ReadSession) -> dict:
    out = {name: getattr(session, name) for name in STATE}
    out["_blocks"] = {k: bytes(v) for k, v in session._blocks.items()}
    out["_ahead"] = [bytes(v) for v in session._ahead]
    out["_framed"] = list(session._framed)
    return out


def sources(kind: str, data: bytes, tmp_path, request):
    """Two sources of ``data`` (ours, the reference's): cached (bytes) or streamed (a file)."""
    if kind == "cached":
        return BytesSource(data), BytesSource(data)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    out = (FileSource(os.open(path, os.O_RDONLY)), FileSource(os.open(path, os.O_RDONLY)))
    for source in out:
        request.addfinalizer(source.close)
    return out


@pytest.mark.parametrize("kind, blocks, first", [("cached", 20, 10), ("streamed", 150, 70)])
def test_the_pump_leaves_the_session_as_lockstep_sent_would(kind, blocks, first, tmp_path,
                                                            request):
    """The pump keeps the block counter, the payloads, the RTT estimate and the octets sent in C
    between two calls into the session (docs/tftp.md "The compiled per-block path"); written
    back, the session is exactly what one ``lockstep_sent`` per block makes of it (the same
    floats: the RTT estimate computed in the same order), and the DATA sent are the file's
    blocks. A first block resent (no RTT sample from it, Karn's rule), RTTs that move the
    estimate, a duplicate ACK left to the transfer's Python path, and the last block; from a
    cached file and from a streamed one (read 64 blocks of 512 at a time: the pump takes
    blocks in place from each read, and the state goes back after a new one)."""
    data = os.urandom(512 * blocks + 100)
    rrq = codec.Request(codec.Opcode.RRQ, "f.bin", "octet")
    limits = Limits(timeout_min=1e-6)
    ours, reference = (ReadSession(("127.0.0.1", 1), source, len(data), rrq, limits, 0.0)
                       for source in sources(kind, data, tmp_path, request))
    for session in (ours, reference):
        session.datagrams_to_send(0.0)
        session.on_timer(0.6)                     # block 1 resent: no RTT sample from it
        assert session.datagrams_to_send(0.6)
        assert session.prepared_reply() is not None
    steps, now = [], 0.6
    for block in range(1, first + 1):
        now += 0.001 * (1 + block % 3)
        steps.append((now, codec.encode(codec.Ack(block))))
    steps.insert(4, (now, codec.encode(codec.Ack(3))))  # a duplicate of ACK 3
    calls = Calls()
    if transport._pump is not None:
        sent = compiled_pump(ours, steps, calls)
        assert calls.handled == [codec.encode(codec.Ack(3))] and calls.flushed == 0
        # the timer armed at each deadline earlier than the last: first ACK 1's (the timeout
        # doubled by the expiry, no sample from the resent block), then the RTT's
        assert calls.armed[0] == steps[0][0] + 1.0 and calls.armed == sorted(calls.armed)[::-1]
    else:
        sent = model_pump(ours, steps)
    for now, ack in steps:
        if ack != codec.encode(codec.Ack(reference._sent & 0xFFFF)):
            continue
        assert reference.lockstep_sent(now) is not None
    assert sent == [codec.HEADER.pack(3, b) + data[(b - 1) * 512:b * 512]
                    for b in range(2, first + 2)]
    assert state(ours) == state(reference)
    assert ours._srtt is not None and ours._rto != 0.5  # the estimate did move
    # on to the end: the last block (100 octets) ends the pump's part; its ACK is the session's
    assert ours.prepared_reply() is not None and reference.prepared_reply() is not None
    steps = [(now + 0.001 * k, codec.encode(codec.Ack(b)))
             for k, b in enumerate(range(first + 1, blocks + 1))]
    calls = Calls()
    if transport._pump is not None:
        sent = compiled_pump(ours, steps, calls)
        assert calls.flushed == 1  # after the last block: the transfer's Python path
    else:
        sent = model_pump(ours, steps)
    for now, _ack in steps:
        following = reference.lockstep_sent(now)
    assert following is None and reference.last_block_out()
    assert sent == [codec.HEADER.pack(3, b & 0xFFFF) + data[(b - 1) * 512:b * 512]
                    for b in range(first + 2, blocks + 2)]
    assert state(ours) == state(reference)
    ours.receive(codec.encode(codec.Ack(blocks + 1)), ("127.0.0.1", 1), now + 0.001)
    assert ours.finished and ours.result == "ok" and ours.bytes_sent == len(data)


class FailingOnce:
    """A source whose ``fail_at``-th read fails once (EIO from a failing disk); no ``window``,
    so the pump reads it a block at a time, as a netascii transfer's."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self._inner, self._reads, self._fail_at = BytesSource(data), 0, fail_at

    def read(self, n: int):
        self._reads += 1
        if self._reads == self._fail_at:
            raise OSError(5, "Input/output error")
        return self._inner.read(n)

    def skip(self, n: int) -> None:
        self._inner.skip(n)


def test_a_read_that_fails_leaves_the_block_to_read_again():
    """The read after block 4's send fails: the error reaches the caller, and the session is
    left with block 4 sent, nothing read ahead and not at its end; it reads block 5 again when
    asked, so the client gets every block once, in order (the pump's state written back, or
    lockstep_sent's own, in the pure-Python mode)."""
    data = os.urandom(512 * 8 + 10)
    rrq = codec.Request(codec.Opcode.RRQ, "f.bin", "octet")
    session = ReadSession(("127.0.0.1", 1), FailingOnce(data, 5), len(data), rrq, Limits(), 0.0)
    session.datagrams_to_send(0.0)               # block 1 (read 1)
    assert session.prepared_reply() is not None  # block 2 read ahead (read 2)
    steps = [(0.01 * b, codec.encode(codec.Ack(b))) for b in (1, 2, 3)]
    if transport._pump is not None:
        with pytest.raises(OSError):
            compiled_pump(session, steps, Calls())
    else:
        for now, _ack in steps[:2]:
            session.lockstep_sent(now)
        with pytest.raises(OSError):
            session.lockstep_sent(steps[2][0])
    assert (session._sent, session._acked, session._ahead, session._last) == (4, 3, [], None)
    assert bytes(session._blocks[4]) == data[3 * 512:4 * 512]
    assert not session.finished
    ack, (datagram,) = session.prepared_reply()  # block 5, read again
    assert ack == codec.encode(codec.Ack(4))
    assert datagram == codec.HEADER.pack(3, 5) + data[4 * 512:5 * 512]
