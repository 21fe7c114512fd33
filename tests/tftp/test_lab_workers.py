"""tftp.workers = 2 in a namespace lab: the supervisor and its two SO_REUSEPORT workers against
real clients (curl, atftp) and a raw UDP client; spread, total admission cap, one /metrics,
retransmitted requests staying on one worker, and no worker left behind."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from tftp_lab import TftpService, client_command, sha256

from harness.netlab import stop_process, wait_for

pytestmark = pytest.mark.lab

# Sends one RRQ from each of N sockets (each its own source port, so its own 4-tuple), sends it
# again `again` times after the first answer, never ACKs, and reports per socket the opcode of
# the first answer, its message if an ERROR, and every source port that answered.
RAW = r"""
import json, socket, struct, sys, time
server, count, again = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rrq = b"\x00\x01big.bin\x00octet\x00"
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0)); s.settimeout(3)
    s.sendto(rrq, (server, 69)); socks.append(s)
out = []
for s in socks:
    data, peer = s.recvfrom(70000)
    op = struct.unpack("!H", data[:2])[0]
    ports = {peer[1]}
    for _ in range(again):
        s.sendto(rrq, (server, 69))
        time.sleep(0.05)
    s.settimeout(0.3)
    end = time.monotonic() + (0.5 if again else 0)
    while time.monotonic() < end:
        try:
            _, p = s.recvfrom(70000)
            ports.add(p[1])
        except socket.timeout:
            pass
    out.append({"op": op, "msg": data[4:-1].decode() if op == 5 else "", "ports": sorted(ports)})
print(json.dumps(out))
"""


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(os.urandom(1_000_000))
    (root / "big.bin").write_bytes(os.urandom(20 << 20))
    return root


def start(seg, root, tmp_path, **settings) -> TftpService:
    service = TftpService(seg, root, tmp_path, workers=2, **settings)
    wait_for(lambda: service.log.read_text().count("event=inventory_loaded") == 2, 20,
             what="both workers loaded")
    return service


def worker_pids(service) -> list[int]:
    return [int(p) for p in re.findall(r"event=worker_started worker=\d+ pid=(\d+)",
                                       service.log.read_text())]


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def metric(seg, name: str) -> float:
    text = seg.server.run("curl", "-sS", "http://127.0.0.1:9102/metrics").stdout
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, (name, text[-2000:])
    return float(match.group(1))


def test_two_workers_real_clients_spread_metrics_and_stop(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path)
    pids = worker_pids(service)
    assert len(pids) == 2 and all(running(p) for p in pids) and service.proc.pid not in pids
    client, server = seg.clients[0], seg.address(1)
    for i in range(16):  # each fetch is a new source port: the kernel hashes it to a worker
        kind = ("curl", "atftp")[i % 2]
        local = tmp_path / f"got{i}"
        result = client.run(*client_command(kind, server, "boot.bin", local), check=False,
                            timeout=60)
        assert result.returncode == 0, (kind, result.stderr, service.log.read_text()[-2000:])
        assert sha256(local) == sha256(root / "boot.bin")
    def served() -> list[str]:  # a transfer is logged when its last ACK arrives
        return re.findall(r"event=transfer .*result=ok .*worker=(\d)", service.log.read_text())

    wait_for(lambda: len(served()) == 16, 10, what="16 transfers logged")
    workers = served()
    assert len(workers) == 16 and set(workers) == {"0", "1"}, workers
    # one scrape endpoint, the supervisor's, counts both workers' transfers
    assert metric(seg, 'bootyard_tftp_transfers_total{result="ok"}') == 16
    assert metric(seg, "bootyard_tftp_sent_bytes_total") == 16 * 1_000_000
    assert metric(seg, "bootyard_tftp_sessions_in_flight") == 0
    assert seg.server.run("curl", "-sS", "http://127.0.0.1:9102/healthz").stdout == "ok\n"
    stop_process(service.proc)
    assert service.proc.returncode == 0
    wait_for(lambda: not any(running(p) for p in pids), 10, what="workers gone")


def test_two_workers_admission_cap_in_total(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path, max_transfers=2, queue_timeout=0, busy_error="true")
    result = seg.clients[0].run(sys.executable, "-c", RAW, seg.address(1), "8", "0",
                                timeout=60)
    answers = json.loads(result.stdout)
    admitted = [a for a in answers if a["op"] == 3]
    busy = [a for a in answers if a["op"] == 5 and "busy" in a["msg"]]
    # one slot per worker: 2 in all (a full worker hands a request to the other, wherever
    # the kernel's hash put the 8: test_lab_balance.py)
    assert len(admitted) == 2 and len(admitted) + len(busy) == 8, answers
    assert metric(seg, "bootyard_tftp_sessions_in_flight") == len(admitted)
    assert metric(seg, 'bootyard_tftp_refused_total{reason="busy"}') == len(busy)
    assert "max_transfers=1 worker=0" in service.log.read_text()


@pytest.mark.slow
def test_two_workers_retransmitted_requests_stay_on_one_worker(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path)  # transfers wait ~20 s for ACKs: longer than the run
    result = seg.clients[0].run(sys.executable, "-c", RAW, seg.address(1), "8", "3",
                                timeout=60)
    answers = json.loads(result.stdout)
    # a worker that got a copy of a request it was not serving would start a second transfer
    # from another port; the one that serves it ignores the copies
    assert all(a["op"] == 3 and len(a["ports"]) == 1 for a in answers), answers
    wait_for(lambda: service.log.read_text().count("event=transfer ") == 8, 60,
             what="8 transfers ended (timed out, never ACKed)")
    ended = re.findall(r"event=transfer .* port=(\d+) .*worker=(\d)", service.log.read_text())
    assert len({port for port, _ in ended}) == 8 and len(set(ended)) == 8, ended


def test_worker_death_ends_the_service_non_zero(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path)
    pids = worker_pids(service)
    os.kill(pids[0], 9)
    wait_for(lambda: service.proc.poll() is not None, 15, what="service exit")
    assert service.proc.returncode == 1
    log = service.log.read_text()
    assert "event=worker_exited worker=0" in log and "status=-9" in log
    wait_for(lambda: not running(pids[1]), 10, what="other worker gone")


def test_supervisor_killed_takes_its_workers(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    service = start(seg, root, tmp_path)
    pids = worker_pids(service)
    service.proc.kill()  # no chance to stop them itself: the kernel's parent-death signal does
    service.proc.wait()
    wait_for(lambda: not any(running(p) for p in pids), 10, what="workers gone")
