"""``bootyard doctor``'s block export probes (cli/doctor_block.py): an iSCSI discovery session
against a real target (tgtd on loopback), and an AoE Query Config broadcast answered by real
targets (vblade) in a namespace lab."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.doctor_block import block_checks, iscsi_discovery
from cli.doctor_report import DoctorSettings, Report
from harness.netlab import stop_process, wait_for
from shared import boottarget

REPO = Path(__file__).resolve().parents[2]
IQN = "iqn.2026-11.org.example:state18-doctor"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tgtd(tmp_path):
    port, control = free_port(), 18000 + os.getpid() % 1000
    proc = subprocess.Popen(["tgtd", "-f", "-C", str(control), "--iscsi",
                             f"portal=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def adm(*args: str) -> None:
            subprocess.run(["tgtadm", "-C", str(control), "--lld", "iscsi", *args], check=True,
                           capture_output=True, timeout=10)
        wait_for(lambda: subprocess.run(["tgtadm", "-C", str(control), "--lld", "iscsi",
                                         "--op", "show", "--mode", "target"],
                                        capture_output=True).returncode == 0, 10,
                 what="tgtd answering")
        disk = tmp_path / "disk.img"
        disk.write_bytes(b"\0" * (1 << 20))
        adm("--op", "new", "--mode", "target", "--tid", "1", "-T", IQN)
        adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", str(disk))
        adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        yield port
    finally:
        stop_process(proc)


async def test_iscsi_discovery_lists_the_target(tgtd):
    ok, detail, names = iscsi_discovery("127.0.0.1", tgtd)
    assert ok is True and names == [IQN], detail
    report = Report(io.StringIO())
    found = boottarget.Target("web1-root", "iscsi", portal="127.0.0.1", iqn=IQN, lun=1)
    await block_checks(report, found, DoctorSettings(), None, iscsi_port=tgtd)
    other = boottarget.Target("web2-root", "iscsi", portal="127.0.0.1", iqn=IQN + "-other", lun=1)
    await block_checks(report, other, DoctorSettings(), None, iscsi_port=tgtd)
    closed = free_port()
    await block_checks(report, found, DoctorSettings(), None, iscsi_port=closed)
    lines = report.out.getvalue().splitlines()
    assert lines[0].startswith("PASS  block     iscsi target web1-root: 127.0.0.1:") and \
        lines[0].endswith(f"answers iSCSI; lists {IQN}")
    assert lines[1].startswith("FAIL") and f"does not list {IQN}-other (it lists: {IQN})" \
        in lines[1]
    assert lines[2].startswith("FAIL") and f"no TCP connection to 127.0.0.1:{closed}" in lines[2]
    assert "-> fix: is the iSCSI target running" in lines[2]


AOE_PROBE = ("import sys; from cli.doctor_block import aoe_query; "
             "print(' '.join(aoe_query('eth0', int(sys.argv[1]), int(sys.argv[2]))))")


def aoe_answers(seg, shelf: int, slot: int) -> list[str]:
    run = seg.server.run(sys.executable, "-c", AOE_PROBE, str(shelf), str(slot), cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    return run.stdout.split()


@pytest.mark.lab
def test_aoe_query_config_finds_a_target_and_a_conflict(lab, tmp_path):
    seg = lab.segment(clients=2)
    disk = tmp_path / "aoe.img"
    disk.write_bytes(b"\0" * (1 << 20))
    macs = [c.run("cat", "/sys/class/net/eth0/address").stdout.strip() for c in seg.clients]
    assert aoe_answers(seg, 7, 3) == []  # nobody serves e7.3
    seg.clients[0].popen("vblade", "7", "3", "eth0", str(disk))
    wait_for(lambda: aoe_answers(seg, 7, 3) == [macs[0]], 30, what="vblade answering e7.3")
    assert aoe_answers(seg, 7, 4) == []  # another slot: nobody
    seg.clients[1].popen("vblade", "7", "3", "eth0", str(disk))
    wait_for(lambda: sorted(aoe_answers(seg, 7, 3)) == sorted(macs), 30,
             what="two targets answering e7.3")
