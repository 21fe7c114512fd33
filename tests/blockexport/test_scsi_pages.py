"""The SCSI engine's pure parts, byte by byte: sense data, the CDB table and Data-Out lengths,
INQUIRY and VPD pages, READ CAPACITY, mode pages, REPORT LUNS, REPORT SUPPORTED OPERATION
CODES, persistent reservation data (SPC-4, SBC-3)."""

from __future__ import annotations

import pytest
from scsikit import cdb6, cdb10, cdb16

from services.blockexport import scsi_cdb as op, scsi_pages as pages
from services.blockexport.scsi import data_out_length
from services.blockexport.scsi_cdb import check_mask, lookup, transfer
from services.blockexport.scsi_pr import Reservations, transport_id
from services.blockexport.scsi_sense import (
    ILLEGAL_REQUEST,
    INVALID_FIELD_IN_CDB,
    Check,
    Field,
    fixed_sense,
    parse_sense,
)

UNIT = pages.Unit(name="web-root", serial="web-root", size_bytes=1 << 30,
                  unmapped=pages.UNMAPPED_ZEROS)


def test_fixed_sense_layout_with_field_pointer_and_information():
    sense = fixed_sense(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, Field(2, 5))
    assert len(sense) == 18 and sense[0] == 0x70 and sense[2] == 0x05 and sense[7] == 10
    assert (sense[12], sense[13]) == (0x24, 0x00)
    assert sense[15] == 0x80 | 0x40 | 0x08 | 5 and sense[16:18] == b"\x00\x02"
    parameter = fixed_sense(ILLEGAL_REQUEST, (0x26, 0), Field(20, cdb=False))
    assert parameter[15] == 0x80 and parameter[16:18] == b"\x00\x14"
    info = fixed_sense(0x0E, (0x1D, 0), information=7)
    assert info[0] == 0xF0 and info[3:7] == b"\x00\x00\x00\x07"
    assert parse_sense(info) == (0x0E, (0x1D, 0))
    assert parse_sense(bytes((0x72, 6, 0x29, 0x03, 0, 0, 0, 0))) == (6, (0x29, 3))


def test_transfer_decoding_by_cdb_size():
    six = transfer(cdb6(op.READ_6, 0x12345, 0))
    assert (six.lba, six.blocks) == (0x12345, 256)  # 0 blocks means 256 in the 6-byte CDB
    ten = transfer(cdb10(op.WRITE_10, 0xDEADBEEF, 7, 0x08))
    assert (ten.lba, ten.blocks, ten.flags) == (0xDEADBEEF, 7, 0x08)
    sixteen = transfer(cdb16(op.READ_16, 1 << 40, 70000))
    assert (sixteen.lba, sixteen.blocks) == (1 << 40, 70000)
    twelve = transfer(bytes((op.READ_12, 0)) + (9).to_bytes(4, "big") + (3).to_bytes(4, "big")
                      + b"\0\0")
    assert (twelve.lba, twelve.blocks) == (9, 3)


def test_data_out_length_per_command():
    bs = 512
    assert data_out_length(cdb10(op.WRITE_10, 0, 4).ljust(16, b"\0"), bs) == 2048
    assert data_out_length(cdb6(op.WRITE_6, 0, 0), bs) == 256 * bs
    assert data_out_length(cdb16(op.WRITE_VERIFY_16, 0, 2), bs) == 1024
    assert data_out_length(cdb10(op.VERIFY_10, 0, 4, 0x00), bs) == 0
    assert data_out_length(cdb10(op.VERIFY_10, 0, 4, 0x02), bs) == 2048  # BYTCHK 1
    assert data_out_length(cdb10(op.VERIFY_10, 0, 4, 0x06), bs) == 512  # BYTCHK 3
    assert data_out_length(cdb10(op.WRITE_SAME_10, 0, 100), bs) == 512
    assert data_out_length(cdb16(op.WRITE_SAME_16, 0, 100, 0x01), bs) == 0  # NDOB
    caw = bytes((op.COMPARE_AND_WRITE, 0)) + bytes(11) + bytes((3, 0, 0))
    assert data_out_length(caw, bs) == 6 * bs
    assert data_out_length(bytes((op.UNMAP,)) + bytes(6) + (24).to_bytes(2, "big") + b"\0",
                           bs) == 24
    assert data_out_length(bytes((op.MODE_SELECT_6, 0x10, 0, 0, 28, 0)), bs) == 28
    assert data_out_length(bytes((op.PERSISTENT_RESERVE_OUT, 0, 0, 0, 0)) +
                           (24).to_bytes(4, "big") + b"\0", bs) == 24
    assert data_out_length(cdb10(op.READ_10, 0, 8), bs) == 0
    assert data_out_length(bytes((0xC0,)) + bytes(15), bs) is None  # unknown opcode
    assert data_out_length(bytes((0x9E, 0x1F)) + bytes(14), bs) is None  # unknown action


def test_usage_mask_refuses_protection_fields_with_a_field_pointer():
    with pytest.raises(Check) as caught:
        check_mask(cdb10(op.READ_10, 0, 1, 0x20), lookup(cdb10(op.READ_10)))  # RDPROTECT 1
    assert caught.value.field == Field(1, 5)
    check_mask(cdb10(op.READ_10, 0, 1, 0x18), lookup(cdb10(op.READ_10)))  # DPO, FUA fine
    with pytest.raises(Check) as naca:
        check_mask(bytes((0, 0, 0, 0, 0, 0x04)), lookup(bytes(6)))
    assert naca.value.field == Field(5, 2)
    assert all(c.usage[0] == c.opcode for c in op.COMMANDS)
    assert all(len(c.usage) == op.CDB_LENGTH[c.opcode >> 5] for c in op.COMMANDS)


def test_standard_inquiry_fields():
    data = pages.standard_inquiry(UNIT)
    assert data[0] == 0 and data[1] == 0 and data[2] == 6 and data[3] & 0x0F == 2
    assert data[4] == len(data) - 5 and data[7] & 0x02
    assert data[8:16] == b"BOOTYARD" and data[16:32] == b"blockexport     "
    descriptors = {int.from_bytes(data[58 + 2 * i:60 + 2 * i], "big") for i in range(8)}
    assert {0x0460, 0x04C0, 0x0960} <= descriptors  # SPC-4, SBC-3, iSCSI


def test_vpd_pages():
    supported = pages.vpd_page(UNIT, 0x00)
    assert supported[1] == 0 and list(supported[4:]) == sorted(supported[4:])
    assert supported[4:] == bytes((0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2))
    serial = pages.vpd_page(UNIT, 0x80)
    assert serial[4:] == b"web-root"
    ident = pages.vpd_page(UNIT, 0x83)
    assert ident[4:8] == bytes((0x01, 0x03, 0x00, 0x08)) and ident[8] >> 4 == 0x3  # NAA 3
    assert ident[8:16] == pages.Unit(name="web-root", serial="x", size_bytes=512).naa
    assert ident[8:16] != pages.Unit(name="other", serial="x", size_bytes=512).naa
    assert b"BOOTYARDweb-root" in ident
    limits = pages.vpd_page(UNIT, 0xB0)
    assert limits[3] == 0x3C and len(limits) == 64
    assert int.from_bytes(limits[20:24], "big") and int.from_bytes(limits[24:28], "big")
    provisioning = pages.vpd_page(UNIT, 0xB2)
    assert provisioning[5] & 0xE4 == 0xE4 and provisioning[6] == 0x02  # LBPU/WS/WS10/LBPRZ
    thick = pages.Unit(name="x", serial="x", size_bytes=512 * 64)
    assert pages.vpd_page(thick, 0xB2)[5] == 0
    assert pages.vpd_page(thick, 0xB0)[20:28] == bytes(8)  # no unmap: counts are 0
    with pytest.raises(Check) as caught:
        pages.vpd_page(UNIT, 0x86)
    assert caught.value.field == Field(2)


def test_inquiry_page_code_without_evpd_is_invalid():
    with pytest.raises(Check):
        pages.inquiry(UNIT, bytes((0x12, 0, 0x80, 0, 255, 0)))
    assert len(pages.inquiry(UNIT, bytes((0x12, 0, 0, 0, 5, 0)))) == 5


def test_read_capacity_data():
    assert pages.read_capacity_10(UNIT) == ((1 << 21) - 1).to_bytes(4, "big") + bytes(
        (0, 0, 2, 0))
    big = pages.Unit(name="b", serial="b", size_bytes=(1 << 32) * 512 + 4096)
    assert pages.read_capacity_10(big)[:4] == b"\xff\xff\xff\xff"
    data = pages.read_capacity_16(UNIT)
    assert len(data) == 32 and int.from_bytes(data[0:8], "big") == (1 << 21) - 1
    assert data[13] == 0 and data[14] & 0xC0 == 0xC0  # LBPPBE 0, LBPME, LBPRZ
    golden = pages.Unit(name="g", serial="g", size_bytes=1 << 20,
                        unmapped=pages.UNMAPPED_GOLDEN)
    assert pages.read_capacity_16(golden)[14] & 0xC0 == 0x80  # thin, LBPRZ 0


def test_mode_sense_pages_and_page_controls():
    six = pages.mode_sense(UNIT, bytes((0x1A, 0, 0x3F, 0, 255, 0)))
    assert six[0] == len(six) - 1 and six[2] == 0x10 and six[3] == 8  # DPOFUA, 1 descriptor
    body = six[12:]
    codes = []
    while body:
        codes.append(body[0])
        body = body[body[1] + 2:]
    assert codes == [0x08, 0x0A, 0x1C]
    caching = pages.mode_page(UNIT, 0x08, pages.CURRENT)
    assert caching[2] & 0x04 == 0  # WCE 0: writes are durable when answered
    assert pages.mode_page(UNIT, 0x0A, pages.CHANGEABLE)[2:] == bytes(10)
    ro = pages.Unit(name="r", serial="r", size_bytes=1 << 20, readonly=True)
    assert pages.mode_sense(ro, bytes((0x1A, 0x08, 0x0A, 0, 255, 0)))[2] & 0x80  # WP
    ten = pages.mode_sense(UNIT, bytes((0x5A, 0x10, 0x08, 0, 0, 0, 0, 1, 0, 0)))
    assert int.from_bytes(ten[0:2], "big") == len(ten) - 2 and ten[4] == 1 and ten[7] == 16
    with pytest.raises(Check) as saved:
        pages.mode_sense(UNIT, bytes((0x1A, 0, 0xC8, 0, 255, 0)))
    assert saved.value.code == (0x39, 0x00)
    with pytest.raises(Check):
        pages.mode_sense(UNIT, bytes((0x1A, 0, 0x19, 0, 255, 0)))  # no such page
    assert len(pages.mode_sense(UNIT, bytes((0x1A, 0, 0x3F, 0, 4, 0)))) == 4


def test_report_luns_data():
    data = pages.report_luns_data([0, 300, 1])
    assert data[0:4] == (24).to_bytes(4, "big")
    assert data[8:16] == bytes(8) and data[16:18] == b"\x00\x01" and data[24:26] == b"\x41\x2c"
    with pytest.raises(Check):
        pages.check_report_luns(bytes((0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0)))
    with pytest.raises(Check):
        pages.check_report_luns(bytes((0xA0, 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0)))


def rsoc(option: int, opcode: int = 0, action: int = 0, rctd: bool = False) -> bytes:
    return (bytes((0xA3, 0x0C, option | (0x80 if rctd else 0), opcode))
            + action.to_bytes(2, "big") + (8192).to_bytes(4, "big") + b"\0\0")


def test_report_supported_operation_codes_all_and_one():
    data = pages.report_supported_opcodes(rsoc(0))
    assert int.from_bytes(data[0:4], "big") == 8 * len(op.COMMANDS)
    entries = {(data[i], int.from_bytes(data[i + 2:i + 4], "big"), data[i + 5] & 1)
               for i in range(4, len(data), 8)}
    assert (0x28, 0, 0) in entries and (0x9E, 0x10, 1) in entries and (0x9E, 0x12, 1) in entries
    timed = pages.report_supported_opcodes(rsoc(0, rctd=True))
    assert int.from_bytes(timed[0:4], "big") == 20 * len(op.COMMANDS) and timed[9] & 0x02
    one = pages.report_supported_opcodes(rsoc(1, 0x28))
    assert one[1] & 0x07 == 3 and int.from_bytes(one[2:4], "big") == 10
    assert one[4:14] == op.BY_KEY[(0x28, None)].usage
    assert pages.report_supported_opcodes(rsoc(1, 0xC0))[1] & 0x07 == 1  # not supported
    with pytest.raises(Check):
        pages.report_supported_opcodes(rsoc(1, 0x9E))  # has service actions: use option 2
    by_action = pages.report_supported_opcodes(rsoc(2, 0x9E, 0x10))
    assert by_action[1] & 0x07 == 3 and by_action[4:6] == b"\x9e\x10"
    with pytest.raises(Check):
        pages.report_supported_opcodes(rsoc(2, 0x28))
    assert pages.report_supported_opcodes(rsoc(3, 0x28))[1] & 0x07 == 3
    with_timeouts = pages.report_supported_opcodes(rsoc(1, 0x28, rctd=True))
    assert with_timeouts[1] & 0x80 and len(with_timeouts) == 4 + 10 + 12


def test_pr_report_capabilities_and_transport_id():
    res = Reservations()
    caps = res.in_("a", bytes((0x5E, 2)) + bytes(8))
    assert caps[0:2] == b"\x00\x08" and caps[3] & 0x80 and caps[4] == 0xEA and caps[5] == 1
    tid = transport_id("iqn.x,i,0x1")
    assert tid[0] == 0x45 and len(tid) % 4 == 0 and len(tid) >= 24
    assert int.from_bytes(tid[2:4], "big") == len(tid) - 4
    with pytest.raises(Check):
        res.in_("a", bytes((0x5E, 4)) + bytes(8))
