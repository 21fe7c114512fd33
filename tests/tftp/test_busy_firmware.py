"""A TFTP request that finds every transfer slot taken, as a boot storm makes it (issue 19).

Firmware gives the boot up on a TFTP ERROR (OVMF's MTFTP, PXE ROMs' PXE-E3x) but sends an
unanswered RRQ again every few seconds. So by default a waiting request gets no answer: it keeps
its place in the line while its client keeps asking, and is forgotten ``queue_timeout`` after the
client last asked (``tftp.busy_error`` brings the ERROR back)."""

from __future__ import annotations

import asyncio
import os

import pytest
from tftp_rawclient import RawClient

from harness.waiting import wait_until
from services.tftp import codec, metrics
from services.tftp.server import TftpServer
from services.tftp.settings import TftpSection
from shared.cache import StaticInventory

RRQ = codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet"))


@pytest.fixture
def root(tmp_path):
    (tmp_path / "small.bin").write_bytes(os.urandom(3000))
    return tmp_path


async def start(root, **overrides) -> tuple[TftpServer, tuple]:
    cfg = dict(root=str(root), bind="127.0.0.1", port=0, max_transfers=1, queue_timeout=0.3,
               retries=20, timeout_initial=0.2)
    cfg.update(overrides)
    srv = TftpServer(TftpSection(**cfg), StaticInventory())
    srv.records = []
    return srv, await srv.start()


async def download(client: RawClient) -> bytes:
    """Lock-step from the first DATA on (the RRQ already sent); an ERROR fails the test."""
    data = bytearray()
    while True:
        datagram, peer = await client.recv(timeout=3)
        message = codec.decode(datagram)
        assert isinstance(message, codec.Data), f"expected DATA, got {message}"
        data += message.data
        await client.send(codec.encode(codec.Ack(message.block)), peer)
        if len(message.data) < 512:
            return bytes(data)


def value(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()


async def test_a_retransmitting_client_keeps_its_place_and_is_served(root):
    srv, address = await start(root)
    hog, waiter = RawClient(), RawClient()
    try:
        await hog.send(RRQ, address)
        _, hog_peer = await hog.recv()  # holds the only slot (never ACKs)
        await waiter.send(RRQ, address)
        await wait_until(lambda: srv._queued == 1, what="the request queued")
        # the firmware sends its RRQ again and again, for three times queue_timeout
        for _ in range(9):  # (its retransmission interval here: 0.1 s)
            await asyncio.sleep(0.1)
            await waiter.send(RRQ, address)
        assert srv._queued == 1, "the retransmitting client lost its place"
        await hog.send(codec.encode(codec.Error(0, "bye")), hog_peer)
        assert await download(waiter) == (root / "small.bin").read_bytes()
    finally:
        hog.close()
        waiter.close()
        await srv.close()


async def test_a_client_that_stops_asking_is_forgotten_without_an_error(root):
    srv, address = await start(root)
    hog, late = RawClient(), RawClient()
    try:
        await hog.send(RRQ, address)
        await hog.recv()
        before = value(metrics.REFUSED, "busy")
        await late.send(RRQ, address)  # once, then silence: the client gave up
        await wait_until(lambda: value(metrics.REFUSED, "busy") == before + 1, timeout=5,
                         what="the waiting request given up")
        assert srv._queued == 0
        with pytest.raises(BlockingIOError):  # no ERROR: a firmware would end the boot on it
            late.sock.recv(2048)
    finally:
        hog.close()
        late.close()
        await srv.close()


async def test_busy_error_answers_with_the_error(root):
    srv, address = await start(root, busy_error=True)
    hog, late = RawClient(), RawClient()
    try:
        await hog.send(RRQ, address)
        await hog.recv()
        await late.send(RRQ, address)
        reply, _ = await late.recv(timeout=3)
        error = codec.decode(reply)
        assert isinstance(error, codec.Error) and "busy" in error.message
    finally:
        hog.close()
        late.close()
        await srv.close()
