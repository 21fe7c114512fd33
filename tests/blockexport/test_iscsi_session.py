"""The full feature phase (services/blockexport/iscsi_session.py), pumped in memory with PDUs
built by hand: Data-In splitting and phase collapse, immediate and unsolicited data then R2Ts
within MaxBurstLength and MaxOutstandingR2T, Data-Out checks, the CmdSN window, NOP, ABORT TASK
waiting for an executing task, logout after the tasks before it, SendTargets continued over
several Text Responses, pings never answered."""

from __future__ import annotations

import iscsiwire as w

from services.blockexport import iscsi_pdu as p
from services.blockexport.iscsi_login import Params, TargetConfig
from services.blockexport.iscsi_session import Session

READ10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0])  # 64 blocks: 32 KiB
WRITE10 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 1, 0, 0])  # 256 blocks: 128 KiB
TARGET = TargetConfig("iqn.2026-11.org.example:t", "t")


def session(**params) -> Session:
    defaults = dict(max_send_dsl=8192, max_burst=16384, first_burst=8192, initial_r2t=False,
                    immediate_data=True, max_outstanding_r2t=2)
    return Session(Params(**{**defaults, **params}), statsn=100, expcmdsn=1, window=8,
                   discovery=False, target=TARGET, visible=lambda: [TARGET],
                   portal="192.0.2.1:3260", portal_group=1,
                   wanted=lambda cdb: int.from_bytes(cdb[7:9], "big") * 512)


def feed(s: Session, raw: bytes):
    s.receive(p.decode(raw))
    return s.drain()


def sent(out) -> list[tuple[dict, bytes]]:
    stream = b"".join(bytes(part) for part in out.send)
    return [(w.fields(bhs), data) for bhs, data in w.split(stream)]


def test_read_split_with_status_in_the_last_data_in():
    s = session()
    out = feed(s, w.command(READ10, itt=7, cmdsn=1, edtl=32768, read=True))
    (task,) = out.execute
    s.complete(task, 0, bytes(range(256)) * 128)
    pdus = sent(s.drain())
    assert [f["op"] for f, _ in pdus] == [0x25] * 4
    assert [f["f40"] for f, _ in pdus] == [0, 8192, 16384, 24576]  # buffer offsets
    assert [f["f36"] for f, _ in pdus] == [0, 1, 2, 3]  # DataSN
    assert [f["flags"] & 0x80 for f, _ in pdus] == [0, 0x80, 0, 0x80]  # F per 16 KiB burst
    last = pdus[-1][0]
    assert last["flags"] & 0x01 and last["statsn"] == 100 and last["expcmdsn"] == 2


def test_read_with_sense_ends_with_a_scsi_response():
    s = session()
    (task,) = feed(s, w.command(READ10, itt=7, cmdsn=1, edtl=32768, read=True)).execute
    s.complete(task, 2, b"", sense=b"\x70" + bytes(17), underflow=32768)
    ((f, data),) = sent(s.drain())
    assert f["op"] == 0x21 and f["b3"] == 2 and f["flags"] & 0x02 and f["f44"] == 32768
    assert data[:2] == b"\x00\x12"


def test_write_immediate_unsolicited_then_r2ts():
    s = session()
    out = feed(s, w.command(WRITE10, itt=9, cmdsn=1, edtl=131072, write=True, final=False,
                            data=b"a" * 4096))
    assert not out.send and not out.execute  # unsolicited data is still coming
    out = feed(s, w.data_out(b"b" * 4096, itt=9, offset=4096, final=True))
    r2ts = [f for f, _ in sent(out)]
    assert [(f["op"], f["f40"], f["f44"], f["f36"]) for f in r2ts] == [
        (0x31, 8192, 16384, 0), (0x31, 24576, 16384, 1)]  # MaxOutstandingR2T 2, MaxBurst 16 KiB
    ttt = r2ts[0]["ttt"]
    out = feed(s, w.data_out(b"c" * 8192, itt=9, ttt=ttt, offset=8192, final=False))
    assert not out.send
    out = feed(s, w.data_out(b"c" * 8192, itt=9, ttt=ttt, datasn=1, offset=16384, final=True))
    assert [f["f40"] for f, _ in sent(out)] == [40960]  # the next R2T once one is done
    # a Data-Out with the wrong offset is rejected and changes nothing
    out = feed(s, w.data_out(b"x" * 512, itt=9, ttt=r2ts[1]["ttt"], offset=0, final=False))
    assert sent(out)[0][0]["op"] == 0x3F and out.errors == ["data_out_sequence"]
    task = s.tasks[9]
    assert not task.executing and task.buffer[:8192] == b"a" * 4096 + b"b" * 4096


def test_write_with_initial_r2t_and_no_immediate_data():
    s = session(initial_r2t=True, immediate_data=False, max_outstanding_r2t=1,
                max_burst=262144)
    out = feed(s, w.command(WRITE10, itt=3, cmdsn=1, edtl=131072, write=True))
    ((f, _),) = sent(out)
    assert (f["op"], f["f40"], f["f44"]) == (0x31, 0, 131072)
    pos = 0
    while pos < 131072:
        out = feed(s, w.data_out(b"z" * 8192, itt=3, ttt=f["ttt"], datasn=pos // 8192,
                                 offset=pos, final=pos + 8192 == 131072))
        pos += 8192
    (task,) = out.execute
    assert task.data_out == b"z" * 131072
    # immediate data where ImmediateData=No: a protocol error
    out = feed(s, w.command(WRITE10, itt=4, cmdsn=2, edtl=131072, write=True, data=b"q" * 512))
    assert sent(out)[0][0]["op"] == 0x3F and out.errors == ["immediate_data"]


def test_cmdsn_window():
    s = session()
    out = feed(s, w.command(READ10, itt=2, cmdsn=2, edtl=512, read=True))  # ahead: waits
    assert not out.execute
    out = feed(s, w.command(READ10, itt=1, cmdsn=1, edtl=512, read=True))
    assert [t.itt for t in out.execute] == [1, 2]
    out = feed(s, w.command(READ10, itt=3, cmdsn=1, edtl=512, read=True))  # too low
    assert not out.execute and out.errors == ["cmdsn"]
    out = feed(s, w.command(READ10, itt=4, cmdsn=3 + 8, edtl=512, read=True))  # above MaxCmdSN
    assert not out.execute and out.errors == ["cmdsn"]


def test_nop_and_ping():
    s = session()
    ((f, data),) = sent(feed(s, w.nop_out(itt=5, cmdsn=1, data=b"hello")))
    assert (f["op"], f["itt"], f["ttt"], data) == (0x20, 5, 0xFFFFFFFF, b"hello")
    s.ping()
    ((f, _),) = sent(s.drain())
    assert f["itt"] == 0xFFFFFFFF and f["ttt"] != 0xFFFFFFFF
    for _ in range(3):  # never answered: nothing happens, the session stays
        s.ping()
        assert not s.drain().close
    assert not sent(feed(s, w.nop_out(itt=0xFFFFFFFF, ttt=f["ttt"], cmdsn=1)))


def test_abort_task_waits_for_the_executing_task():
    s = session()
    (task,) = feed(s, w.command(READ10, itt=7, cmdsn=1, edtl=512, read=True)).execute
    out = feed(s, w.task_mgmt(1, itt=8, cmdsn=2, ref_itt=7, ref_cmdsn=1))
    assert not out.send  # the response waits until the task is no longer executing
    s.complete(task, 0, b"x" * 512)
    ((f, _),) = sent(s.drain())  # the aborted task's data never goes out
    assert (f["op"], f["itt"], f["b2"]) == (0x22, 8, 0)
    ((f, _),) = sent(feed(s, w.task_mgmt(1, itt=9, cmdsn=2, ref_itt=77, ref_cmdsn=0)))
    assert f["b2"] == 1  # no such task
    ((f, _),) = sent(feed(s, w.task_mgmt(7, itt=10, cmdsn=2)))
    assert f["b2"] == 5  # target cold reset: not supported
    out = feed(s, w.task_mgmt(5, itt=11, cmdsn=2))
    assert out.resets == [("lun", 0)] and sent(out)[0][0]["b2"] == 0


def test_logout_after_the_tasks_before_it():
    s = session()
    (task,) = feed(s, w.command(READ10, itt=7, cmdsn=1, edtl=512, read=True)).execute
    out = feed(s, w.logout(itt=8, cmdsn=2, immediate=False))
    assert not out.send and not out.close
    s.complete(task, 0, b"x" * 512)
    out = s.drain()
    assert [f["op"] for f, _ in sent(out)] == [0x26] and out.close == "logout"


def test_send_targets_continued():
    many = [TargetConfig(f"iqn.2026-11.org.example:disk{i:03}", f"d{i}") for i in range(300)]
    s = Session(Params(max_send_dsl=4096), statsn=1, expcmdsn=1, window=8, discovery=True,
                target=None, visible=lambda: many, portal="192.0.2.1:3260", portal_group=1,
                wanted=lambda cdb: None)
    text = b""
    out = feed(s, w.text_request([("SendTargets", "All")], itt=2, cmdsn=1))
    while True:
        ((f, data),) = sent(out)
        text += data
        if f["flags"] & 0x80:
            break
        assert f["flags"] & 0x40 and len(data) == 4096  # C: more to come
        out = feed(s, w.text_request([], itt=2, ttt=f["ttt"], cmdsn=1))
    pairs = w.parse_text_list(text)
    assert pairs[0] == ("TargetName", "iqn.2026-11.org.example:disk000")
    assert pairs[1] == ("TargetAddress", "192.0.2.1:3260,1")
    assert len(pairs) == 600
    # SCSI commands have no place in a discovery session
    out = feed(s, w.command(READ10, itt=3, cmdsn=1, edtl=512, read=True))
    assert sent(out)[0][0]["op"] == 0x3F
