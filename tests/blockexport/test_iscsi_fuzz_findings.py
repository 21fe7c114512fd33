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
