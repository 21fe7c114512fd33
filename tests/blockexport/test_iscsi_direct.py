"""iSCSI reads answered as their commands are framed (services/blockexport/iscsi_direct.py):
the same bytes as the full way (Task, LogicalUnit.execute, Session.complete), everything
unusual left to the full way with the session untouched, counted once per socket read, and,
through the running service, never ahead of a write that came first."""

from __future__ import annotations

import hashlib
import os
import struct
import types

import iscsiwire as w
import pytest
from iscsiclient import Client, LoopbackService
from test_aoe_direct import uncache
from test_iscsi_fastpath import fields
from test_iscsi_session import session

from harness.netlab import wait_for
from services.blockexport import iscsi_pdu as p, metrics as m, scsi
from services.blockexport.iscsi_direct import DirectReads
from services.blockexport.storage import PlainDisk

NEXUS = "iqn.2026-11.org.example:tester,i,0x00023d000001"
IQN = "iqn.2026-11.org.example:direct"
BLOCKS = 2048


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def read16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x88, 0, lba, blocks, 0, 0)


@pytest.fixture
def unit(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(BLOCKS * 512))
    disk = PlainDisk(str(path))
    lu = scsi.LogicalUnit(name="d", serial="1", size_bytes=disk.size, readonly=False,
                          unmapped=None, write_cache=True)
    lu.execute(scsi.Request(bytes(6), 0, NEXUS, b"", 0, False, False), disk)  # the nexus is known
    disk.read(0, disk.size)  # in the page cache
    yield types.SimpleNamespace(path=path, disk=disk, lu=lu)
    disk.close()


def connection(unit, s, lun: int = 0):
    served = types.SimpleNamespace(busy=0, record=types.SimpleNamespace(lun=lun),
                                   tally={("op", "read"): 0, ("bytes", "read"): 0,
                                          ("status", "good"): 0},
                                   latency=m.LatencyTally())
    conn = types.SimpleNamespace(export=served, lu=unit.lu, disk=unit.disk, nexus=NEXUS,
                                 session=s, read_once=True)
    return conn, DirectReads(conn)


def full_way(unit, s, raw: bytes) -> bytes:
    s.receive(p.decode(raw))
    (task,) = s.drain().execute
    r = unit.lu.execute(scsi.Request(task.cdb, task.lun, NEXUS, b"", task.edtl, True, False),
                        unit.disk)
    s.complete(task, r.status, r.data_in, r.sense, r.overflow, r.underflow)
    return b"".join(bytes(x) for x in s.drain().send)


@pytest.mark.parametrize("cdb,edtl", [(read10(5, 8), 4096), (read10(100, 1), 8192),
                                      (read16(2040, 8), 4096), (read10(0, 16), 8192)])
def test_a_direct_read_answers_the_bytes_of_the_full_way(unit, cdb, edtl):
    general, short = session(), session()
    raws = [w.command(cdb, itt=7 + i, cmdsn=1 + i, edtl=edtl, read=True) for i in range(2)]
    _, direct = connection(unit, short)
    for raw in raws:
        expected = full_way(unit, general, raw)
        assert direct.serve(*fields(raw))
        got = b"".join(bytes(x) for x in short.drain().send)
        assert got == expected
        assert len(got) == 48 + min(edtl, int.from_bytes(cdb[7:9] if cdb[0] == 0x28
                                                         else cdb[10:14], "big") * 512)
    assert general.expcmdsn == short.expcmdsn == 3 and general.statsn == short.statsn
    assert not short.tasks


def test_the_unusual_takes_the_full_way_and_leaves_the_session_untouched(unit):
    s = session()
    conn, direct = connection(unit, s)
    raw = w.command(read10(0, 8), itt=7, cmdsn=1, edtl=4096, read=True)

    def refused(raw_pdu: bytes) -> bool:
        before = (s.expcmdsn, s.statsn)
        done = direct.serve(*fields(raw_pdu))
        assert (s.expcmdsn, s.statsn) == before and not s.out.send
        return not done

    conn.export.busy = 1  # the I/O thread has something: a read never overtakes it
    assert refused(raw)
    conn.export.busy = 0
    s.out.execute.append(object())  # this socket read brought a command still to hand over
    assert refused(raw)
    s.out.execute.clear()
    conn.read_once = False  # the first read goes the full way (its event)
    assert refused(raw)
    conn.read_once = True
    assert refused(w.command(read10(0, 8), itt=7, cmdsn=1, edtl=4096, read=True, lun=1))
    assert refused(w.command(read10(0, 8), itt=7, cmdsn=2, edtl=4096, read=True))  # a gap
    assert refused(w.command(read10(0, 8), itt=7, cmdsn=1, edtl=4096, read=True,
                             immediate=True))
    assert refused(w.command(read10(0, 8), itt=7, cmdsn=1, edtl=2048, read=True))  # overflow
    assert refused(w.command(read10(0, 128), itt=7, cmdsn=1, edtl=65536, read=True))  # 2 PDUs
    s.receive(p.decode(w.text_request([("MaxRecvDataSegmentLength", "4096")], itt=3,
                                      cmdsn=1, immediate=True)))  # the initiator takes less
    s.drain()
    assert refused(w.command(read10(0, 16), itt=7, cmdsn=1, edtl=8192, read=True))
    assert refused(w.command(read10(BLOCKS - 4, 8), itt=7, cmdsn=1, edtl=4096, read=True))
    assert refused(w.command(bytes([0x28, 0x20]) + read10(0, 8)[2:], itt=7, cmdsn=1,
                             edtl=4096, read=True))  # RDPROTECT: the full way says no
    assert refused(w.command(bytes([0x12, 0, 0, 0, 36, 0]), itt=7, cmdsn=1, edtl=36,
                             read=True))  # INQUIRY
    unit.lu.reset("lun", NEXUS)  # a unit attention is pending for the nexus
    assert refused(raw)
    for _ in range(5):  # TEST UNIT READY until the unit attentions are reported
        if unit.lu.execute(scsi.Request(bytes(6), 0, NEXUS, b"", 0, False, False),
                           unit.disk).status == 0:
            break
    assert direct.serve(*fields(raw))
    s.drain()
    raw = w.command(read10(0, 8), itt=8, cmdsn=2, edtl=4096, read=True)
    uncache(unit.path)  # not in the page cache: the I/O thread waits for the disk, not the loop
    assert refused(raw)
    unit.disk.read(0, 4096)
    assert direct.serve(*fields(raw))


def test_direct_reads_are_counted_once_per_socket_read(unit):
    s = session()
    conn, direct = connection(unit, s)
    for i in range(3):
        assert direct.serve(*fields(w.command(read10(8 * i, 8), itt=7 + i, cmdsn=1 + i,
                                              edtl=4096, read=True)))
    served = conn.export
    direct.account(0.0)
    assert served.tally == {("op", "read"): 3, ("bytes", "read"): 3 * 4096,
                            ("status", "good"): 3}
    assert sum(served.latency.counts["read"]) == 3
    direct.account(0.0)  # nothing since: nothing added
    assert served.tally[("op", "read")] == 3


def test_a_read_never_overtakes_the_write_before_it(unix_redis, tmp_path):
    """The Data-Out that completes a write and a READ of the same blocks in one socket read:
    the read answers the written data (the write is handed to the I/O thread first)."""
    path = tmp_path / "disk.img"
    path.write_bytes(hashlib.shake_256(b"old").digest(4 << 20))
    unix_redis.client().hset("bootyard:export:direct", mapping={
        "kind": "iscsi", "backing": str(path), "iqn": IQN})
    svc = LoopbackService(unix_redis.url, tmp_path / "be.log",
                          overlay_root=str(tmp_path / "overlays"))
    c = Client("127.0.0.1", svc.port)
    try:
        c.login(IQN, "iqn.2026-11.org.example:tester")
        c.read10(0, 8)  # the first read, the full way
        for round_ in range(20):
            lba = 64 + 8 * round_
            assert c.read10(lba, 8) == path.read_bytes()[lba * 512:(lba + 8) * 512]  # cached
            new = hashlib.shake_256(b"new%d" % round_).digest(4096)
            c.itt += 1
            itt, cmdsn = c.itt, c.cmdsn
            c.send(w.command(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, 8, 0), itt=itt,
                             cmdsn=cmdsn, edtl=4096, write=True))
            r2t = w.fields(c.recv_op(0x31)[0])
            c.itt += 1
            c.cmdsn += 2
            c.send(w.data_out(new, itt=itt, ttt=r2t["ttt"], final=True)
                   + w.command(read10(lba, 8), itt=c.itt, cmdsn=cmdsn + 1, edtl=4096,
                               read=True))
            answers = {}
            while len(answers) < 2:
                bhs, data = c.recv_pdu()
                f = w.fields(bhs)
                if bhs[0] & 0x3F == 0x20:
                    continue
                answers[f["itt"]] = (bhs[0] & 0x3F, f["b3"], data)
            assert answers[itt][:2] == (0x21, 0)
            assert answers[c.itt] == (0x25, 0, new), f"round {round_}"
        wait_for(lambda: svc.metric("bootyard_blockexport_operations_total", export="direct",
                                    op="read") >= 41, 10, what="the reads counted")
    finally:
        c.close()
        svc.stop()


def test_a_small_read_of_the_full_way_is_read_on_the_loop_when_cached(unit):
    """iscsi_worker.read_now (a read that takes the full way: a header digest, the first one):
    the engine's answer when the page cache holds it, else None (the I/O thread)."""
    from services.blockexport.iscsi_worker import read_now
    request = scsi.Request(read10(40, 16) + bytes(6), 0, NEXUS, b"", 12288, True, False)
    expected = unit.lu.execute(request, unit.disk)
    got = read_now(unit.lu, request, unit.disk, None, True)
    assert (got.status, bytes(got.data_in), got.overflow, got.underflow) == \
        (expected.status, expected.data_in, expected.overflow, expected.underflow)
    uncache(unit.path)
    assert read_now(unit.lu, request, unit.disk, None, True) is None


def test_only_commands_other_than_reads_hold_reads_off_the_loop():
    """A READ queued for the I/O thread does not keep other reads off the loop (with several
    sessions reading, the thread's queue would otherwise never run dry and every read would
    take the thread); a write, a SYNCHRONIZE CACHE or anything else does."""
    from services.blockexport.iscsi_worker import holds_reads
    assert not any(holds_reads(cdb) for cdb in (read10(0, 8), read16(0, 8),
                                                bytes([0x08, 0, 0, 0, 8, 0])))
    assert all(holds_reads(cdb) for cdb in (bytes([0x2A]) + read10(0, 8)[1:], bytes(10),
                                            bytes([0x35]) + bytes(9), bytes([0x5F, 1]), b""))
