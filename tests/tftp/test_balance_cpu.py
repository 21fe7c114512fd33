"""CPU-local transfers (services/tftp/balance.py, ``Balancer.move``): at the client's first ACK a
transfer whose client's datagrams arrive on another worker's CPU moves there with its socket.
Two servers on one SO_REUSEPORT port in this process, as two workers, real sockets; a classic
BPF program gives every request to worker 0. This process runs on one CPU during each test, so
the client's datagrams arrive on that CPU (loopback delivers on the sender's CPU), and the
workers publish which CPU they are "pinned" to: worker 1 that one, worker 0 another."""

from __future__ import annotations

import os

import pytest
from prometheus_client import REGISTRY
from test_balance import RRQ, ack_to_the_end, first_data, two_workers, wait_until
from tftp_rawclient import RawClient

from services.tftp import codec
from services.tftp.balance import move_slack, socket_path


@pytest.fixture
def cpu():
    """This process on one CPU for the test (the client's datagrams arrive there)."""
    before = os.sched_getaffinity(0)
    here = min(before)
    os.sched_setaffinity(0, {here})
    try:
        yield here
    finally:
        os.sched_setaffinity(0, before)


@pytest.fixture
async def workers(root, tmp_path, cpu):
    async with two_workers(root, tmp_path, moves=True) as servers:
        servers[0].balancer.publish_cpu(cpu + 1)  # another CPU than the client's
        servers[1].balancer.publish_cpu(cpu)      # the client's
        yield servers


async def fetch_one_port(client: RawClient, workers, options=()) -> tuple[bytes, set]:
    """A lock-step download that records every port the server answered from."""
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet", options))
    await client.send(request, workers[0].address)
    datagram, peer = await client.recv()
    ports = {peer[1]}
    message = codec.decode(datagram)
    if isinstance(message, codec.OAck):
        await client.send(codec.encode(codec.Ack(0)), peer)
        message, peer = await first_data(client)
        ports.add(peer[1])
    data = bytearray(message.data)
    while len(message.data) == 512:
        await client.send(codec.encode(codec.Ack(message.block)), peer)
        message, peer = await first_data(client)
        ports.add(peer[1])
        data += message.data
    await client.send(codec.encode(codec.Ack(message.block)), peer)
    return bytes(data), ports


async def fetched_where_it_started(workers, root) -> None:
    """A lock-step download through worker 0 that is not moved: one port, recorded on worker
    0 only."""
    client = RawClient()
    try:
        data, ports = await fetch_one_port(client, workers)
        assert data == (root / "small.bin").read_bytes() and len(ports) == 1, ports
        await wait_until(lambda: workers[0].records, "the record on worker 0")
        assert [r.result for r in workers[0].records] == ["ok"] and not workers[1].records
        assert workers[0].balancer.moved == 0
    finally:
        client.close()


@pytest.mark.parametrize("options", [(), (("blksize", "512"), ("tsize", "0"))],
                         ids=["first-ack-of-data", "first-ack-of-oack"])
async def test_a_transfer_moves_to_the_worker_on_the_clients_cpu(workers, root, options):
    client = RawClient()
    try:
        data, ports = await fetch_one_port(client, workers, options)
        assert data == (root / "small.bin").read_bytes()
        assert len(ports) == 1, ports  # one transfer ID throughout
        await wait_until(lambda: workers[1].records, "the record on worker 1")
        assert [r.result for r in workers[1].records] == ["ok"]
        assert workers[1].records[0].bytes == len(data)
        assert workers[0].records == []  # the moved transfer is recorded where it ended
        assert workers[0].balancer.moved == 1 and workers[1].balancer.adopted == 1
        await wait_until(lambda: not workers[0].balancer._routes, "the route released")
    finally:
        client.close()


async def test_copies_of_the_request_after_the_move_are_copies(workers, root):
    client = RawClient()
    try:
        await client.send(RRQ, workers[0].address)
        first, peer = await first_data(client)
        await client.send(codec.encode(codec.Ack(1)), peer)  # the first ACK: the move
        second, _peer = await first_data(client)
        assert second.block == 2 and workers[0].balancer.moved == 1
        (handling,) = workers[1]._busy.values()
        await client.send(RRQ, workers[0].address)  # a late copy, to worker 0's listener
        await wait_until(lambda: handling.transfer.session.copies == 1, "the copy on worker 1")
        assert not workers[0]._busy and len(workers[1]._busy) == 1
        rest = await ack_to_the_end(client, second, peer)
        assert first.data + rest == (root / "small.bin").read_bytes()
        await wait_until(lambda: workers[1].records, "the record on worker 1")
        assert [r.result for r in workers[1].records] == ["ok"] and not workers[0].records
    finally:
        client.close()


async def test_no_move_to_a_worker_busier_than_the_slack(workers, root):
    """Worker 1 publishes more requests than worker 0 would have plus the slack: the
    transfer stays where it started."""
    workers[1].balancer.publish(move_slack(1) + 1)
    await fetched_where_it_started(workers, root)


async def test_no_move_when_the_client_is_on_this_workers_cpu(workers, root, cpu):
    workers[0].balancer.publish_cpu(cpu)
    workers[1].balancer.publish_cpu(cpu + 1)
    await fetched_where_it_started(workers, root)


def test_the_slack_grows_with_the_load():
    assert [move_slack(n) for n in (0, 1, 8, 9, 12, 40)] == [4, 4, 4, 4, 6, 20]


@pytest.mark.parametrize("cached", [True, False], ids=["cached-file", "streamed-file"])
async def test_a_transfer_follows_its_client_to_another_cpu(root, tmp_path, cpu, cached):
    """The client's datagrams arrive on worker 0's CPU at its first ACK (no move), then on
    worker 1's (as if the scheduler had moved the client): within RECHECK_BLOCKS blocks the
    lock-step transfer moves to worker 1 between two blocks, with its socket, and goes on
    from the block in flight there (from the cache, or read from the file's offset)."""
    body = os.urandom(300 * 512 + 100)
    (root / "mid.bin").write_bytes(body)
    client = RawClient()
    try:
        async with two_workers(root, tmp_path, moves=True,
                               cache_file_max=(1 << 20) if cached else 1024) as servers:
            await _follow(client, servers, cpu, body)
    finally:
        client.close()


def moved(direction: str, at: str) -> float:
    return REGISTRY.get_sample_value("bootyard_tftp_moved_total",
                                     {"direction": direction, "at": at}) or 0.0


async def _follow(client: RawClient, servers, cpu: int, body: bytes) -> None:
    """test_a_transfer_follows_its_client_to_another_cpu's download of mid.bin."""
    before = [moved(d, a) for d in ("sent", "taken") for a in ("first_ack", "between_blocks")]
    servers[0].balancer.publish_cpu(cpu)
    servers[1].balancer.publish_cpu(cpu + 1)
    request = codec.encode(codec.Request(codec.Opcode.RRQ, "mid.bin", "octet", ()))
    await client.send(request, servers[0].address)
    message, peer = await first_data(client)
    data, ports = bytearray(message.data), {peer[1]}
    while len(message.data) == 512:
        if message.block == 5:  # the client is elsewhere now
            servers[0].balancer.publish_cpu(cpu + 1)
            servers[1].balancer.publish_cpu(cpu)
        await client.send(codec.encode(codec.Ack(message.block)), peer)
        message, answered = await first_data(client)
        ports.add(answered[1])
        data += message.data
    await client.send(codec.encode(codec.Ack(message.block)), peer)
    assert bytes(data) == body and len(ports) == 1, ports
    await wait_until(lambda: servers[1].records, "the record on worker 1")
    assert [(r.result, r.bytes) for r in servers[1].records] == [("ok", len(body))]
    assert not servers[0].records and servers[0].balancer.moved == 1
    assert not servers[1].records[0].retransmits
    after = [moved(d, a) for d in ("sent", "taken") for a in ("first_ack", "between_blocks")]
    assert [b - a for a, b in zip(before, after)] == [0, 1, 0, 1]  # counted as between blocks


async def test_a_move_not_taken_leaves_the_transfer_here(workers, root, tmp_path):
    """Worker 1's hand-over socket is gone (as with a worker that died): the move fails and
    the transfer goes on where it is, from the same port, to the end."""
    os.unlink(socket_path(str(tmp_path / "shared"), 69, 1))
    await fetched_where_it_started(workers, root)
