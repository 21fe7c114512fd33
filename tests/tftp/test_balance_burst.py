"""A boot storm's burst of hand-overs (services/tftp/balance.py): the kernel queues at most
``net.unix.max_dgram_qlen`` (10 by default) datagrams at a unix datagram receiver, so 60
hand-overs at once wait in the sender's queue for the target and all arrive, none counted or
logged as failed, and sharing goes on; a worker that is gone is still detected. Real unix and
UDP sockets; two balancers (or two servers) in this process as two workers."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from test_balance import RRQ, first_data, steer_to_first, wait_until, workers  # noqa: F401
from tftp_rawclient import RawClient
from tftp_serverkit import value

from services.tftp import metrics
from services.tftp.balance import Balancer, incoming_cpu

BURST = 60


def qlen() -> int:
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        return int(f.read())


@pytest.fixture
async def pair(tmp_path):
    """Worker 0 and worker 1's balancers; worker 1 records what it is handed."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    handed: list[tuple[bytes, tuple]] = []
    adopted: list[tuple[bytes, bytes, tuple, socket.socket, int]] = []
    one = Balancer(0, 2, str(shared), 69, deliver=lambda d, a: None, busy=lambda a: True)
    two = Balancer(1, 2, str(shared), 69, deliver=lambda d, a: handed.append((d, a)),
                   busy=lambda a: True)
    two.adopt = lambda request, ack, addr, sock, resume: adopted.append(
        (request, ack, addr, sock, resume))
    try:
        yield one, two, handed, adopted
    finally:
        one.close()
        two.close()
        for *_rest, sock, _resume in adopted:
            sock.close()


async def test_a_burst_of_new_requests_all_reach_the_other_worker(pair, caplog):
    """60 requests handed over in one go, before worker 1's loop runs once: more than the
    kernel queues for it. Every one is handed over and taken; none failed, nothing logged, and
    worker 1 is still shared with."""
    one, two, handed, _adopted = pair
    assert qlen() < BURST  # the burst outruns the kernel's queue
    loop = asyncio.get_running_loop()
    one.start(loop)
    two.start(loop)
    failed = value(metrics.HANDOVERS, "failed")
    with caplog.at_level("WARNING", logger="bootyard.tftp"):
        results = [one.forward(RRQ + bytes([k]), ("10.0.0.1", 2000 + k), BURST * 2)
                   for k in range(BURST)]
        assert results == [True] * BURST and one.forwarded == BURST
        await wait_until(lambda: len(handed) == BURST, f"{len(handed)} of {BURST} taken")
    assert [d for d, _a in handed] == [RRQ + bytes([k]) for k in range(BURST)]  # in order
    assert [a for _d, a in handed] == [("10.0.0.1", 2000 + k) for k in range(BURST)]
    assert two.taken == BURST and one.load_of(1) == 0  # published 0, sent == taken
    assert value(metrics.HANDOVERS, "failed") == failed
    assert not [r for r in caplog.records if r.getMessage() == "handover_failed"]
    assert one._down[1] == 0.0 and not one._pending[1]


async def test_moves_under_a_burst_all_arrive_with_their_sockets(pair):
    """60 transfers moved at once, each with its UDP socket (SCM_RIGHTS): all adopted by
    worker 1, each with its own socket (the same port), after worker 0 closed its copy."""
    one, two, _handed, adopted = pair
    loop = asyncio.get_running_loop()
    before = os.sched_getaffinity(0)
    here = min(before)
    os.sched_setaffinity(0, {here})  # the client's datagrams arrive on this CPU
    socks, clients = [], []
    try:
        two.publish_cpu(here)
        one.publish_cpu(here + 1)
        one.start(loop)
        two.start(loop)
        for _k in range(BURST):
            server, client = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                              for _ in range(2))
            socks.append(server)
            clients.append(client)
            server.bind(("127.0.0.1", 0))
            client.bind(("127.0.0.1", 0))
            server.connect(client.getsockname())
            client.sendto(b"\x00\x04\x00\x01", server.getsockname())
            assert server.recv(100) == b"\x00\x04\x00\x01" and incoming_cpu(server) == here
        ports = []
        for k, server in enumerate(socks):
            ports.append(server.getsockname()[1])
            assert one.move(RRQ, b"\x00\x04\x00\x01", client_addr(clients[k]), server,
                            BURST * 2)
            server.close()  # as the server does once a move went
        await wait_until(lambda: len(adopted) == BURST, f"{len(adopted)} of {BURST} adopted")
        assert one.moved == BURST and two.adopted == BURST
        assert [a[3].getsockname()[1] for a in adopted] == ports
        assert [a[2] for a in adopted] == [client_addr(c) for c in clients]
        assert all(a[0] == RRQ and a[1] == b"\x00\x04\x00\x01" for a in adopted)
        assert one.load_of(1) == 0 and not one._pending[1]
    finally:
        os.sched_setaffinity(0, before)
        for s in socks + clients:
            s.close()


def client_addr(client: socket.socket) -> tuple[str, int]:
    return client.getsockname()


async def test_a_worker_gone_with_hand_overs_waiting_is_detected(pair, caplog):
    """Worker 1 never reads (it is stuck), then goes: what waited for it is dropped, it is
    left alone for a while, its load is what it published, and the next request is served
    here."""
    one, two, handed, _adopted = pair
    loop = asyncio.get_running_loop()
    one.start(loop)  # worker 1 never reads
    assert all(one.forward(RRQ, ("10.0.0.2", 3000 + k), BURST * 2) for k in range(BURST))
    waiting = len(one._pending[1])  # the rest is in the kernel's queue for worker 1
    assert waiting >= BURST - qlen() - 1 and one.load_of(1) == BURST
    failed = value(metrics.HANDOVERS, "failed")
    with caplog.at_level("WARNING", logger="bootyard.tftp"):
        two.close()
        await wait_until(lambda: one._down[1] > 0.0, "worker 1 seen gone")
    assert not one._pending[1] and one.load_of(1) == BURST - waiting
    assert value(metrics.HANDOVERS, "failed") == failed + 1
    assert [r for r in caplog.records if r.getMessage() == "handover_failed"]
    assert not one.forward(RRQ, ("10.0.0.2", 4000), BURST * 2)  # served here
    assert not handed


async def test_a_burst_of_clients_is_shared_evenly(workers, root):  # noqa: F811
    """60 clients ask at once, every request reaching worker 0: half are served by worker 1,
    with no hand-over failed."""
    failed = value(metrics.HANDOVERS, "failed")
    clients = [RawClient() for _ in range(BURST)]
    try:
        for client in clients:  # all sent before the workers' loop runs again
            client.sock.sendto(RRQ, workers[0].address)
        for client in clients:
            await first_data(client)
        assert [len(w._busy) for w in workers] == [BURST // 2, BURST // 2]
        assert value(metrics.HANDOVERS, "failed") == failed
    finally:
        for client in clients:
            client.close()
