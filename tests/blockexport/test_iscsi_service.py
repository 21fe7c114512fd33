"""The iSCSI target of the block export service on loopback, with real initiators: libiscsi's
iscsi-ls (discovery and login), iscsi-inq and iscsi-readcapacity16; a hand-made initiator
(iscsiclient.py) for writes read back, CHAP on and refused, sessions mapped to hosts (their
own overlay, or the read-only golden image), and bad input (garbage, oversize PDUs, logins that
never finish, connections over the cap) answered and counted while another session keeps
working."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import iscsiwire as w
import pytest
from iscsiclient import Client, LoginFailed, LoopbackService

from harness.netlab import wait_for

IQN_PLAIN = "iqn.2026-11.org.example:plain"
IQN_GOLD = "iqn.2026-11.org.example:gold"
IQN_CHAP = "iqn.2026-11.org.example:chap"
INITIATOR = "iqn.2026-11.org.example:tester"
SECRET = "chapsecret-1234"
SIZE = 8 << 20
REPO = Path(__file__).resolve().parents[2]


def make_disk(path, seed: int) -> bytes:
    data = hashlib.shake_256(str(seed).encode()).digest(SIZE)
    path.write_bytes(data)
    return data


@pytest.fixture
def service(unix_redis, tmp_path):
    started = []

    def start(**settings) -> LoopbackService:
        svc = LoopbackService(unix_redis.url, tmp_path / "be.log",
                              overlay_root=str(tmp_path / "overlays"), **settings)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        if svc.proc.poll() is None:
            svc.stop()


def events(r, kind: str) -> list[dict]:
    return [e[1] for e in r.xrange("bootyard:events") if e[1].get("kind") == kind]


def run(*argv, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


def test_libiscsi_tools_and_data(unix_redis, service, tmp_path):
    plain = tmp_path / "plain.img"
    plain_data = make_disk(plain, 1)
    r = unix_redis.client()
    r.hset("bootyard:export:plain", mapping={"kind": "iscsi", "backing": str(plain),
                                              "iqn": IQN_PLAIN})
    r.hset("bootyard:export:other", mapping={"kind": "iscsi", "backing": str(plain),
                                              "iqn": "iqn.2026-11.org.example:other",
                                              "readonly": "yes", "lun": "3"})
    svc = service()
    url = f"iscsi://127.0.0.1:{svc.port}"
    listing = run("iscsi-ls", "-s", url).stdout
    assert f"Target:{IQN_PLAIN} Portal:127.0.0.1:{svc.port},1" in listing
    assert "Lun:0    Type:DIRECT_ACCESS" in listing
    assert "Lun:3    Type:DIRECT_ACCESS" in listing  # REPORT LUNS of the other target
    inquiry = run("iscsi-inq", f"{url}/{IQN_PLAIN}/0").stdout
    assert "Peripheral Device Type:DIRECT_ACCESS" in inquiry and "Vendor:BOOTYARD" in inquiry
    pages = run("iscsi-inq", "-e", "1", f"{url}/{IQN_PLAIN}/0").stdout
    assert "Page:0x80 UNIT_SERIAL_NUMBER" in pages and "Page:0xb0 BLOCK_LIMITS" in pages
    capacity = run("iscsi-readcapacity16", f"{url}/{IQN_PLAIN}/0").stdout
    assert f"Total size:{SIZE}" in capacity, capacity
    # LUN 0 of the target whose disk is LUN 3: no logical unit there
    missing = run("iscsi-inq", f"{url}/iqn.2026-11.org.example:other/0", check=False)
    assert "Peripheral Device Type:DIRECT_ACCESS" not in missing.stdout
    # our own initiator: R2T writes, read back, durable on the backing file
    c = Client("127.0.0.1", svc.port)
    c.login(IQN_PLAIN, INITIATOR)
    assert c.read10(0, 16) == plain_data[:8192]
    blob = hashlib.shake_256(b"new").digest(300 * 512)  # 150 KiB: R2Ts of 64 KiB Data-Outs
    c.write10(100, blob)
    assert c.read10(100, 300) == blob
    assert plain.read_bytes()[100 * 512:400 * 512] == blob
    big = hashlib.shake_256(b"big").digest(2048 * 512)  # 1 MiB: several R2Ts and bursts
    c.write10(4000, big)
    assert c.read10(4000, 2048) == big
    nop = w.nop_out(itt=99, cmdsn=c.cmdsn, data=b"ping")
    c.send(nop)
    bhs, data = c.recv_op(0x20)
    assert w.fields(bhs)["itt"] == 99 and data == b"ping"
    c.logout()
    c.close()
    wait_for(lambda: [e for e in events(r, "blockexport.iscsi_logout")
                      if e["initiator"] == INITIATOR and e["reason"] == "logout"], 10,
             what="our logout event")
    login = [e for e in events(r, "blockexport.iscsi_login") if e["initiator"] == INITIATOR]
    assert login and login[-1]["export"] == "plain" and login[-1]["address"] == "127.0.0.1"
    attach = [e for e in events(r, "blockexport.attach") if e.get("transport") == "iscsi"]
    assert {e["export"] for e in attach} == {"plain", "other"}
    wait_for(lambda: svc.metric("bootyard_blockexport_transferred_bytes_total",
                                export="plain", direction="write") >= len(blob) + len(big), 10,
             what="bytes written counted")


def test_chap_required_and_refused(unix_redis, service, tmp_path):
    disk = tmp_path / "chap.img"
    make_disk(disk, 3)
    r = unix_redis.client()
    r.hset("bootyard:export:chap", mapping={"kind": "iscsi", "backing": str(disk),
                                             "iqn": IQN_CHAP, "chap_user": "web1",
                                             "chap_secret": SECRET})
    r.hset("bootyard:host:52:54:00:00:00:05", mapping={"hostname": "chap1", "ip": "127.0.0.1"})
    svc = service()
    url = f"127.0.0.1:{svc.port}/{IQN_CHAP}/0"
    ok = run("iscsi-inq", f"iscsi://web1%{SECRET}@{url}", check=False)
    assert ok.returncode == 0 and "DIRECT_ACCESS" in ok.stdout, ok.stderr
    for bad in (f"iscsi://{url}", f"iscsi://web1%wrongsecret99@{url}"):
        refused = run("iscsi-inq", bad, check=False)
        assert refused.returncode != 0
    c = Client("127.0.0.1", svc.port)
    with pytest.raises(LoginFailed) as info:
        c.login(IQN_CHAP, "iqn.2026-11.org.bootyard:chap1", user="web1", secret="wrongsecret99")
    assert info.value.status == (2, 1)
    c.close()
    # the host's own timeline says why it could not log in
    wait_for(lambda: [e for _, e in r.xrange("bootyard:events:52:54:00:00:00:05")
                      if e.get("kind") == "blockexport.iscsi_login_failed"
                      and e.get("reason") == "chap"], 10, what="chap failure on the host's timeline")
    c = Client("127.0.0.1", svc.port)
    c.login(IQN_CHAP, INITIATOR, user="web1", secret=SECRET)
    c.read10(0, 1)
    c.close()
    wait_for(lambda: svc.metric("bootyard_blockexport_iscsi_login_failures_total",
                                reason="chap") >= 2, 10, what="chap failures counted")
    wait_for(lambda: {e["reason"] for e in events(r, "blockexport.iscsi_login_failed")}
             >= {"chap", "auth_required"}, 10, what="login failure events")
    assert SECRET not in svc.log()
    env = {"BOOTYARD_REDIS_URL": unix_redis.url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    for argv in (["blockexport", "show", "chap"], ["blockexport", "show", "chap", "--json"],
                 ["blockexport", "list", "--json"], ["export"]):
        shown = subprocess.run([sys.executable, "-m", "cli", *argv], capture_output=True,
                               text=True, env=env, timeout=60, cwd=str(REPO))
        assert shown.returncode == 0, shown.stderr
        assert "********" in shown.stdout and SECRET not in shown.stdout, shown.stdout


def test_sessions_belong_to_hosts(unix_redis, service, tmp_path):
    golden = tmp_path / "golden.img"
    golden_data = make_disk(golden, 4)
    r = unix_redis.client()
    r.hset("bootyard:export:gold", mapping={"kind": "iscsi", "backing": str(golden),
                                             "iqn": IQN_GOLD, "cow": "yes"})
    r.hset("bootyard:host:52:54:00:00:00:01", mapping={"hostname": "web1", "ip": "127.0.0.1"})
    svc = service()
    host_iqn = "iqn.2026-11.org.bootyard:web1"  # the name bootyard renders for web1
    mine = Client("127.0.0.1", svc.port)
    mine.login(IQN_GOLD, host_iqn)
    mine.write10(8, b"\xab" * 4096)
    assert mine.read10(8, 8) == b"\xab" * 4096
    stranger = Client("127.0.0.1", svc.port)  # a name that is no host's: read-only golden
    stranger.login(IQN_GOLD, "iqn.2026-11.org.example:stranger")
    assert stranger.read10(8, 8) == golden_data[4096:8192]
    status, _, sense = stranger.scsi(bytes([0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0]),
                                     data=b"\xcd" * 4096)
    assert status == 2 and sense[2] & 0x0F == 0x07  # DATA PROTECT
    assert hashlib.sha256(golden.read_bytes()).digest() == hashlib.sha256(golden_data).digest()
    overlay = tmp_path / "overlays" / "gold" / "52-54-00-00-00-01" / "data"
    with overlay.open("rb") as f:
        f.seek(4096)
        assert f.read(4096) == b"\xab" * 4096
    wait_for(lambda: [e for e in events(r, "blockexport.iscsi_login")
                      if e["initiator"] == host_iqn and e.get("mac") == "52:54:00:00:00:01"],
             10, what="the login event of web1")
    assert r.xlen("bootyard:events:52:54:00:00:00:01") >= 2
    mine.close()
    stranger.close()
    # the export refuses sessions of no host
    r.hset("bootyard:export:gold", "unmatched", "refuse")
    wait_for(lambda: "change=settings" in svc.log(), 10, what="export updated")
    refused = Client("127.0.0.1", svc.port)
    with pytest.raises(LoginFailed) as info:
        refused.login(IQN_GOLD, "iqn.2026-11.org.example:stranger")
    assert info.value.status == (2, 2)
    refused.close()


def test_bad_input_answered_and_counted(unix_redis, service, tmp_path):
    disk = tmp_path / "plain.img"
    data = make_disk(disk, 5)
    r = unix_redis.client()
    r.hset("bootyard:export:plain", mapping={"kind": "iscsi", "backing": str(disk),
                                              "iqn": IQN_PLAIN})
    svc = service(iscsi_login_timeout="2", iscsi_max_connections="120")
    worker = Client("127.0.0.1", svc.port)
    worker.login(IQN_PLAIN, INITIATOR)
    assert worker.read10(0, 8) == data[:4096]
    # 100 connections that never log in: closed after the login timeout, counted
    idle = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(100)]
    assert worker.read10(8, 8) == data[4096:8192]
    # over the cap: closed at once
    extra = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(30)]
    for s in extra:
        s.settimeout(10)
    closed = sum(1 for s in extra if s.recv(1) == b"")
    assert closed >= 10
    assert svc.metric("bootyard_blockexport_iscsi_login_failures_total",
                      reason="too_many_connections") >= 10
    # garbage, an oversize data segment, a login that is not a login: closed, counted
    for raw in (b"\xff" * 48, w.pdu(bytes([0x43, 0x87]) + bytes(46), b"x" * 9000)[:48]
                + b"\0" * 100, w.nop_out(itt=1, cmdsn=1)):
        s = socket.create_connection(("127.0.0.1", svc.port))
        s.sendall(raw)
        s.settimeout(10)
        while s.recv(4096):
            pass
        s.close()
    assert worker.read10(16, 8) == data[8192:12288]
    # in the full feature phase: a bad PDU is Rejected and the session goes on
    worker.send(bytes([0x3C, 0x80]) + bytes(46))  # an opcode a target never receives
    bhs, rejected = worker.recv_op(0x3F)
    assert bhs[2] == 0x05 and rejected[0] == 0x3C
    worker.send(bytes([0x10, 0x80]) + bytes(46))  # SNACK at error recovery level 0
    bhs, _ = worker.recv_op(0x3F)
    assert bhs[2] == 0x04
    assert worker.read10(24, 8) == data[12288:16384]
    wait_for(lambda: all(s.recv(1) == b"" for s in idle[:5]), 20, what="idle logins closed")
    for s in idle + extra:
        s.close()
    wait_for(lambda: svc.metric("bootyard_blockexport_iscsi_login_failures_total",
                                reason="timeout") >= 90, 20, what="login timeouts counted")
    assert svc.metric("bootyard_blockexport_iscsi_pdu_errors_total", reason="too_long") >= 1
    assert svc.metric("bootyard_blockexport_iscsi_pdu_errors_total",
                      reason="unknown_opcode") >= 1
    assert worker.read10(0, 8) == data[:4096]
    worker.logout()
    worker.close()
    assert svc.proc.poll() is None
    t0 = time.monotonic()
    assert time.monotonic() - t0 < 60


def test_dropped_connection_leaves_no_half_write(unix_redis, service, tmp_path):
    """A write whose data never all arrived is never applied, not even the part that came."""
    disk = tmp_path / "plain.img"
    data = make_disk(disk, 6)
    r = unix_redis.client()
    r.hset("bootyard:export:plain", mapping={"kind": "iscsi", "backing": str(disk),
                                              "iqn": IQN_PLAIN})
    r.hset("bootyard:host:52:54:00:00:00:07", mapping={"hostname": "web7", "ip": "127.0.0.1"})
    svc = service()
    c = Client("127.0.0.1", svc.port)
    c.login(IQN_PLAIN, "iqn.2026-11.org.bootyard:web7", )
    blocks = 512  # 256 KiB: R2Ts of 256 KiB (our MaxBurstLength offer is the lower one)
    c.send(w.command(bytes([0x2A, 0, 0, 0, 0, 64, 0, 0, blocks >> 8 & 0xFF, blocks & 0xFF]),
                     itt=50, cmdsn=c.cmdsn, edtl=blocks * 512, write=True))
    bhs, _ = c.recv_op(0x31)
    r2t = w.fields(bhs)
    c.send(w.data_out(b"\xee" * 65536, itt=50, ttt=r2t["ttt"], offset=0, final=False))
    c.close()  # the rest never comes
    wait_for(lambda: [e for e in events(r, "blockexport.iscsi_logout")
                      if e.get("mac") == "52:54:00:00:00:07"], 10, what="the session ended")
    assert disk.read_bytes() == data
    again = Client("127.0.0.1", svc.port)
    again.login(IQN_PLAIN, INITIATOR)
    assert again.read10(64, blocks) == data[64 * 512:(64 + blocks) * 512]
    again.close()


def test_exports_follow_the_inventory_live(unix_redis, service, tmp_path):
    disk = tmp_path / "plain.img"
    data = make_disk(disk, 7)
    r = unix_redis.client()
    svc = service()
    url = f"iscsi://127.0.0.1:{svc.port}"
    # added: served within a second or so, no restart
    r.hset("bootyard:export:live", mapping={"kind": "iscsi", "backing": str(disk),
                                             "iqn": "iqn.2026-11.org.example:live"})
    wait_for(lambda: "iqn.2026-11.org.example:live" in run("iscsi-ls", url).stdout, 10,
             what="the new export listed")
    c = Client("127.0.0.1", svc.port)
    c.login("iqn.2026-11.org.example:live", INITIATOR)
    assert c.read10(0, 1) == data[:512]
    # a second export with the same iqn is not served, and says why
    r.hset("bootyard:export:twin", mapping={"kind": "iscsi", "backing": str(disk),
                                             "iqn": "iqn.2026-11.org.example:live"})
    wait_for(lambda: "is already served for export 'live'" in svc.log(), 10, what="iqn clash")
    assert svc.metric("bootyard_blockexport_export_up", export="twin") == 0
    # a backing store that cannot be opened
    r.hset("bootyard:export:broken", mapping={"kind": "iscsi", "backing": str(tmp_path / "no"),
                                               "iqn": "iqn.2026-11.org.example:broken"})
    wait_for(lambda: "key=bootyard:export:broken field=backing" in svc.log(), 10,
             what="the broken export reported")
    # a new disk for the export: its sessions are closed, the initiator logs in again
    other = tmp_path / "other.img"
    other_data = make_disk(other, 8)
    r.hset("bootyard:export:live", "backing", str(other))
    c.sock.settimeout(10)
    wait_for(lambda: c.sock.recv(65536) == b"", 10, what="the old session closed")
    c.close()
    c = Client("127.0.0.1", svc.port)
    c.login("iqn.2026-11.org.example:live", INITIATOR)
    assert c.read10(0, 1) == other_data[:512]
    # removed: its session is closed, logins are refused as an unknown target (the twin, which
    # would take the free iqn over, goes first)
    r.delete("bootyard:export:twin")
    r.delete("bootyard:export:live")
    c.sock.settimeout(10)
    wait_for(lambda: c.sock.recv(65536) == b"", 10, what="the session of a removed export closed")
    c.close()
    c = Client("127.0.0.1", svc.port)
    with pytest.raises(LoginFailed) as info:
        c.login("iqn.2026-11.org.example:live", INITIATOR)
    assert info.value.status == (2, 3)
    c.close()
