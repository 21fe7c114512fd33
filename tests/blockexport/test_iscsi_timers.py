"""The connection's timers after a login (found by the iSCSI service fuzzer: make fuzz). The
login's timer was never cancelled: the idle timer armed by the new session replaced it and was
the one cancelled when the login answer went out. So a session never got its NOP-In pings, and
every connection, even closed, stayed in memory with its buffers until its login timeout ran
out (a million mutated PDUs grew the target's RSS by 200 MB)."""

from __future__ import annotations

from iscsiclient import Client, LoopbackService

from harness.netlab import wait_for

IQN = "iqn.2026-12.org.example:timers"


def test_a_session_is_pinged_after_its_login(unix_redis, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    unix_redis.client().hset("bootyard:export:t", mapping={
        "kind": "iscsi", "backing": str(disk), "iqn": IQN})
    svc = LoopbackService(unix_redis.url, tmp_path / "be.log", iscsi_nop_interval="1",
                          iscsi_login_timeout="600")
    try:
        wait_for(lambda: "event=export_served" in svc.log(), 20, what="the export")
        c = Client("127.0.0.1", svc.port, timeout=15)
        c.login(IQN, "iqn.2026-12.org.example:tester")
        bhs, _ = c.recv_pdu()  # the target's NOP-In ping, after a quiet second
        assert bhs[0] & 0x3F == 0x20
        c.close()
    finally:
        svc.stop()

