"""The short ways through the iSCSI target: a SCSI Command taken straight from its BHS
(``Session.read_command``, what ``Connection._frames`` calls for F/R commands without data)
does what the general decode does, and leaves everything unusual to it."""

from __future__ import annotations

import struct

import iscsiwire as w
from test_iscsi_session import READ10, feed, session

from services.blockexport import iscsi_pdu as p

BHS = struct.Struct(">BB2xB3sQIIII16s")


def fields(raw: bytes):
    op, _, _, _, lun, itt, edtl, cmdsn, _, cdb = BHS.unpack_from(raw)
    return op & 0x40, lun, itt, edtl, cmdsn, cdb


def test_read_command_does_what_receive_does():
    general, short = session(), session()
    raws = [w.command(READ10, itt=7 + i, cmdsn=1 + i, edtl=32768, read=True, lun=0)
            for i in range(3)]
    for raw in raws:
        general.receive(p.decode(raw))
        assert short.read_command(*fields(raw))
    a, b = general.drain(), short.drain()
    assert [(t.itt, t.lun, t.cdb, t.read, t.write, t.edtl, t.cmdsn, t.executing)
            for t in a.execute] == [(t.itt, t.lun, t.cdb, t.read, t.write, t.edtl, t.cmdsn,
                                     t.executing) for t in b.execute]
    assert general.expcmdsn == short.expcmdsn == 4
    for s, out in ((general, a), (short, b)):
        s.complete(out.execute[0], 0, bytes(32768))
    assert [bytes(x) for x in general.drain().send] == [bytes(x) for x in short.drain().send]


def test_read_command_leaves_the_unusual_to_receive():
    s = session()
    ahead = w.command(READ10, itt=9, cmdsn=2, edtl=512, read=True)
    assert not s.read_command(*fields(ahead))  # out of order: waits for the gap
    feed(s, w.command(READ10, itt=8, cmdsn=5, edtl=512, read=True))  # ahead, held
    assert not s.read_command(*fields(w.command(READ10, itt=7, cmdsn=1, edtl=512,
                                                read=True)))  # a PDU waits for a gap
    s2 = session()
    immediate = w.command(READ10, itt=7, cmdsn=1, edtl=512, read=True, immediate=True)
    assert not s2.read_command(*fields(immediate))
    feed(s2, w.command(READ10, itt=7, cmdsn=1, edtl=512, read=True))
    assert not s2.read_command(*fields(w.command(READ10, itt=7, cmdsn=2, edtl=512,
                                                 read=True)))  # ITT in use: Rejected there
    assert s2.expcmdsn == 2
