"""tftp.workers = 2 with the kernel's SO_REUSEPORT hash at its most uneven: a classic BPF
program on the port's group gives every request to one worker (as a storm's hash can give most
of them), and that worker hands new requests to the other (services/tftp/balance.py), copies
of a handed request included, with the real service's processes."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from tftp_lab import TftpService

from harness.netlab import wait_for

pytestmark = pytest.mark.lab

# Joins the listener's SO_REUSEPORT group and attaches "ret #0": every datagram to the group's
# first socket (a worker's listener). The program stays with the group when this socket goes.
STEER = r"""
import ctypes, socket
class Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
insns = (Insn * 1)(Insn(0x06, 0, 0, 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", 69))
s.setsockopt(socket.SOL_SOCKET, 51, bytes(Prog(1, ctypes.cast(insns, ctypes.POINTER(Insn)))))
s.close()
"""

# One RRQ from each of N sockets, in turn (each waits for its first answer), sent again
# `again` times after it; never ACKs. Reports per socket the first answer's opcode and every
# source port that answered.
RAW = r"""
import json, socket, struct, sys, time
server, count, again = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rrq = b"\x00\x01big.bin\x00octet\x00"
out = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0)); s.settimeout(3)
    s.sendto(rrq, (server, 69))
    data, peer = s.recvfrom(70000)
    ports = {peer[1]}
    for _ in range(again):
        s.sendto(rrq, (server, 69))
    s.settimeout(0.3)
    end = time.monotonic() + (0.5 if again else 0)
    while time.monotonic() < end:
        try:
            ports.add(s.recvfrom(70000)[1][1])
        except socket.timeout:
            pass
    out.append({"op": struct.unpack("!H", data[:2])[0], "ports": sorted(ports)})
print(json.dumps(out))
"""


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(b"\x5a" * (4 << 20))
    return root


def start(seg, root, tmp_path, **settings) -> TftpService:
    service = TftpService(seg, root, tmp_path, workers=2, **settings)
    wait_for(lambda: service.log.read_text().count("event=inventory_loaded") == 2, 20,
             what="both workers loaded")
    seg.server.run(sys.executable, "-c", STEER, timeout=30)
    return service


def metric(seg, name: str) -> float:
    text = seg.server.run("curl", "-sS", "http://127.0.0.1:9102/metrics").stdout
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_one_worker_given_every_request_hands_some_to_the_other(lab, root, tmp_path):
    """One slot per worker and no queue: without the hand-over the worker given all 8
    requests admits 1 and refuses 7; with it both slots are used."""
    seg = lab.segment(clients=1, client_addresses=True)
    start(seg, root, tmp_path, max_transfers=2, queue_timeout=0, busy_error="true")
    result = seg.clients[0].run(sys.executable, "-c", RAW, seg.address(1), "8", "0",
                                timeout=60)
    answers = json.loads(result.stdout)
    assert sorted(a["op"] for a in answers) == [3, 3, 5, 5, 5, 5, 5, 5], answers
    assert metric(seg, 'bootyard_tftp_handovers_total{direction="sent"}') >= 1
    assert metric(seg, "bootyard_tftp_sessions_in_flight") == 2


def test_copies_of_handed_over_requests_start_no_second_transfer(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path)
    result = seg.clients[0].run(sys.executable, "-c", RAW, seg.address(1), "8", "3",
                                timeout=60)
    answers = json.loads(result.stdout)
    # each request's copies reached the worker serving it: one transfer port each
    assert all(a["op"] == 3 and len(a["ports"]) == 1 for a in answers), answers
    assert metric(seg, 'bootyard_tftp_handovers_total{direction="sent"}') == 4
    assert metric(seg, "bootyard_tftp_sessions_in_flight") == 8
    log = service.log.read_text()
    assert "event=handover_failed" not in log, log[-2000:]


def allowed_cpus(pid: int) -> str:
    with open(f"/proc/{pid}/status") as status:
        return re.search(r"^Cpus_allowed_list:\s*(\S+)$", status.read(), re.M).group(1)


def test_each_worker_runs_on_a_cpu_of_its_own(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path)
    pids = [int(p) for p in re.findall(r"event=worker_started worker=\d+ pid=(\d+)",
                                       service.log.read_text())]
    cpus = [allowed_cpus(pid) for pid in pids]
    assert len(cpus) == 2 and all(cpu.isdigit() for cpu in cpus), cpus
    assert len(set(cpus)) == min(2, len(os.sched_getaffinity(0))), cpus
    for index, cpu in enumerate(cpus):
        assert f"event=pinned worker={index} cpu={cpu}" in service.log.read_text()


def test_each_transfer_ends_on_the_worker_on_its_clients_cpu(lab, root, tmp_path):
    """Every request reaches one worker (the BPF program); an atftp client runs on each CPU
    in turn: its transfer moves at its first ACK to the worker pinned to that CPU (its
    datagrams arrive there) and is recorded there. Without the move every transfer ends on
    the worker the program gives the requests to."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        pytest.fail("this test needs two CPUs (the workers pin themselves to one each)")
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path, transfer_threads=0)
    log = service.log.read_text()
    worker_of = {int(c): int(w) for w, c in re.findall(r"event=pinned worker=(\d+) cpu=(\d+)",
                                                        log)}
    assert sorted(worker_of) == cpus, log[-2000:]
    expected = []
    for cpu in cpus + cpus:
        seg.clients[0].run("taskset", "-c", str(cpu), "atftp", "--tftp-timeout", "1",
                           "--option", "blksize 1468", "-g", "-r", "big.bin", "-l",
                           str(tmp_path / "got.bin"), seg.address(1), "69", timeout=120)
        assert (tmp_path / "got.bin").read_bytes() == (root / "big.bin").read_bytes()
        expected.append(worker_of[cpu])
        wait_for(lambda: service.log.read_text().count("event=transfer ") == len(expected),
                 20, what="the transfer's record")
    ended = [int(w) for w in re.findall(r"event=transfer .*?result=ok.*? worker=(\d+)",
                                        service.log.read_text())]
    assert ended == expected, service.log.read_text()[-3000:]
    assert metric(seg, 'bootyard_tftp_moved_total{at="first_ack",direction="sent"}') >= 2
