"""Loss, reordering and a boot storm against the real service in a namespace lab (slow).

Timings are printed for docs/benchmarks.md, never asserted."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from tftp_lab import TftpService, client_command, impair, impairment_counters, sha256

pytestmark = [pytest.mark.lab, pytest.mark.slow]
SIZE = 16 << 20


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "16m.bin").write_bytes(os.urandom(SIZE))
    return root


def run_all(ns, commands, timeout: float) -> list[tuple[int | str, str]]:
    """Start every command at once in ``ns``; wait for all, killing any past ``timeout``.
    Returns (exit code or "killed", stderr) per command."""
    procs = [ns.popen(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for argv in commands]
    deadline = time.monotonic() + timeout
    results = []
    for proc in procs:
        try:
            _out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            results.append((proc.returncode, err))
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            results.append(("killed", err))
    return results


def failure_report(results, service, *extra: str) -> str:
    """What to read when a client failed: its stderr, every transfer the server did not end
    with result=ok, and ``extra`` (impairment counters)."""
    clients = [f"client {i}: exit {code}: {err.strip()[-500:]}"
               for i, (code, err) in enumerate(results) if code != 0]
    transfers = [line for line in service.log.read_text().splitlines()
                 if "event=transfer" in line and "result=ok" not in line]
    return "\n".join(clients + ["server transfers not ok:"] + transfers[-40:] + list(extra))


@pytest.mark.parametrize("kind,options,parallel", [("curl", {"blksize": 1468}, 20)])
def test_netem_loss_and_reordering_20_transfers(lab, root, tmp_path, kind, options, parallel):
    """20 transfers at once under 5% loss and reordering, all byte-identical.

    Not atftp 0.8.0's windowed client: under loss it stalls on its own (it ignores blocks it
    already has without re-ACKing them, and does not re-ACK on its timer while our
    retransmissions keep arriving), so a run hangs until our retries run out; docs/tftp.md.
    Windowed recovery under loss is covered by the session tests."""
    seg = lab.segment(clients=1, client_addresses=True)
    client = seg.clients[0]
    service = TftpService(seg, root, tmp_path)
    how = {impair(ns) for ns in (client, seg.server)}
    outs = [tmp_path / f"out{i}" for i in range(20)]
    started = time.monotonic()
    commands = [client_command(kind, seg.address(1), "16m.bin", out, options) for out in outs]
    results = []
    for i in range(0, len(commands), parallel):
        results += run_all(client, commands[i:i + parallel], timeout=600)
    elapsed = time.monotonic() - started
    assert [code for code, _err in results] == [0] * 20, failure_report(
        results, service, impairment_counters(client), impairment_counters(seg.server))
    want = sha256(root / "16m.bin")
    assert all(sha256(out) == want for out in outs)
    log = service.log.read_text()
    retransmits = sum(int(part.split("=")[1]) for line in log.splitlines()
                      if "event=transfer" in line for part in line.split()
                      if part.startswith("retransmits="))
    print(f"\n{how} 5% loss + 25% reordered, {kind} {options}: 20 x 16 MiB concurrently in "
          f"{elapsed:.1f}s, {retransmits} server retransmissions")
    assert retransmits > 0  # the loss really happened
    assert service.alive()


def test_200_concurrent_clients_16mib(lab, root, tmp_path):
    seg = lab.segment(clients=4, client_addresses=True)
    service = TftpService(seg, root, tmp_path, max_transfers=500)
    commands = {ns.name: [] for ns in seg.clients}
    outs = []
    for i in range(200):
        ns = seg.clients[i % 4]
        out = tmp_path / f"c{i}"
        outs.append(out)
        commands[ns.name].append(client_command("curl", seg.address(1), "16m.bin", out,
                                                {"blksize": 1468}))
    started = time.monotonic()
    procs = []
    for ns in seg.clients:
        for argv in commands[ns.name]:
            procs.append(ns.popen(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    deadline = started + 1200
    codes = []
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
            codes.append(proc.returncode)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes.append("killed")
    elapsed = time.monotonic() - started
    assert codes == [0] * 200, (codes, service.log.read_text()[-3000:])
    want = sha256(root / "16m.bin")
    assert all(sha256(out) == want for out in outs)
    print(f"\n200 concurrent curl clients (blksize 1468) x 16 MiB: {elapsed:.1f}s, "
          f"{200 * SIZE / elapsed / 1e6:.1f} MB/s aggregate")
    assert service.alive()
