"""Inputs the iSCSI fuzzer (make fuzz, scripts/fuzz/targets.py iscsi) found, kept as
regression tests: each once made the target raise instead of answering."""

from __future__ import annotations

import iscsiwire as w
from scsikit import cdb16
from test_iscsi_session import feed, sent, session

from services.blockexport import scsi
from services.blockexport.iscsi_pdu import Numbers, data_in, scsi_response
from services.blockexport.storage import PlainDisk


def test_an_overflow_beyond_32_bits_is_reported_as_the_largest_residual(tmp_path):
    """WRITE (16) of 0xFFFFFFFF blocks with an expected length of one block: the command would
    move 2 TiB more than expected, which no 32-bit Residual Count holds. The SCSI Response
    goes out with the overflow bit and the largest residual (it used to raise struct.error
    and leave the command unanswered)."""
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(1 << 20))
    disk = PlainDisk(str(path))
    lu = scsi.LogicalUnit(name="f", serial="f", size_bytes=disk.size, readonly=False)
    s = session()
    out = feed(s, w.command(cdb16(0x8A, 0, 0xFFFFFFFF), itt=7, cmdsn=1, edtl=512, write=True,
                            data=bytes(512)))
    (task,) = out.execute
    response = lu.execute(scsi.Request(task.cdb, 0, "iqn.x,i,0x1", task.data_out, task.edtl,
                                       task.read, task.write), disk)
    assert response.overflow > 0xFFFFFFFF
    s.complete(task, response.status, response.data_in, response.sense, response.overflow,
               response.underflow)
    ((fields, _),) = sent(s.drain())
    assert fields["op"] == 0x21 and fields["flags"] & 0x04  # SCSI Response, overflow
    assert fields["f44"] == 0xFFFFFFFF
    disk.close()


def test_the_encoders_clamp_a_residual_to_32_bits():
    n = Numbers(1, 1, 8)
    header, _ = scsi_response(n, 1, 2, overflow=1 << 41)
    assert header[44:48] == b"\xff\xff\xff\xff" and header[1] & 0x04
    header = data_in(n, 1, 0, 0, 0, 512, final=True, status=0, underflow=1 << 40)
    assert header[44:48] == b"\xff\xff\xff\xff" and header[1] & 0x02


def test_a_write_bigger_than_any_transfer_is_refused_before_its_buffer_is_made():
    """Found while looking into the service fuzzer's memory finding (test_iscsi_timers.py):
    the target collected a write's Data-Out in a buffer the size of min(EDTL, the CDB's
    length), so one WRITE (16) with a large block count and EDTL made it allocate up to 4 GiB.
    A write carrying more than max_data_out is answered CHECK CONDITION, INVALID FIELD IN CDB
    at once: no buffer, no R2T, no task left."""
    s = session()
    s.wanted = lambda cdb: scsi.data_out_length(cdb, 512)  # as the server gives it
    assert s.max_data_out == 16 << 20  # twice the logical unit's 8 MiB transfer limit
    out = feed(s, w.command(cdb16(0x8A, 0, 0x100000), itt=9, cmdsn=1, edtl=512 << 20,
                            write=True, final=False, data=bytes(512)))
    ((fields, data),) = sent(out)
    assert fields["op"] == 0x21 and fields["b3"] == 0x02  # SCSI Response, CHECK CONDITION
    assert data[2 + 2] & 0x0F == 0x05 and data[2 + 12] == 0x24  # ILLEGAL REQUEST, 24h
    assert not out.execute and not s.tasks
    # what the initiator still sends for it is refused, as for any unknown task
    out = feed(s, w.data_out(bytes(512), itt=9, offset=512))
    assert [f["op"] for f, _ in sent(out)] == [0x3F]  # Reject
