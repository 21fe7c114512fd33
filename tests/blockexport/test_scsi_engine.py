"""The SCSI engine over real disks (a plain file, a copy-on-write overlay): reads and writes,
residuals as RFC 7143 and libiscsi's Residuals tests expect, VERIFY, WRITE AND VERIFY,
COMPARE AND WRITE (atomic), WRITE SAME, UNMAP and GET LBA STATUS (the unmapped contract),
SYNCHRONIZE CACHE, MODE SELECT, REQUEST SENSE, errors as sense data."""

from __future__ import annotations

import errno
import os
import threading

import pytest
from scsikit import NEXUS_A, Initiator, cdb6, cdb10, cdb16, field_pointer, sense_of

from services.blockexport import scsi_cdb as op
from services.blockexport.scsi import LogicalUnit, Request, no_such_lun, report_luns, unmapped_mode
from services.blockexport.scsi_pages import designators
from services.blockexport.storage import PlainDisk
from services.blockexport.storage_cow import CowDisk

BS = 512
BLOCKS = 2048  # a 1 MiB disk
MAC = "52:54:00:00:00:0a"


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(BLOCKS * BS)
    disk = PlainDisk(str(path))
    lu = LogicalUnit(name="plain", serial="plain", size_bytes=disk.size, readonly=False,
                     unmapped=unmapped_mode(disk))
    yield Initiator(lu, disk)
    disk.close()


@pytest.fixture
def cow(tmp_path):
    golden = tmp_path / "golden.img"
    golden.write_bytes(os.urandom(BLOCKS * BS))
    disk = CowDisk(str(golden), str(tmp_path / "overlays"), "cow")
    view = disk.view(MAC)
    lu = LogicalUnit(name="cow", serial="cow", size_bytes=disk.size, readonly=False,
                     unmapped=unmapped_mode(view))
    yield Initiator(lu, view), golden.read_bytes()
    disk.close()


def read10(io, lba, blocks, expected=None):
    response = io(cdb10(op.READ_10, lba, blocks), expected=expected or blocks * BS)
    assert response.status == 0, response
    return response.data_in


def write10(io, lba, data, flags=0):
    response = io(cdb10(op.WRITE_10, lba, len(data) // BS, flags), data)
    assert response.status == 0 and not response.overflow and not response.underflow, response
    return response


def test_read_write_every_cdb_size(plain):
    write10(plain, 3, b"a" * BS * 2, flags=0x18)  # DPO and FUA
    assert read10(plain, 3, 2) == b"a" * BS * 2
    assert plain(cdb6(op.WRITE_6, 10, 1), b"b" * BS).status == 0
    assert plain(cdb6(op.READ_6, 10, 1), expected=BS).data_in == b"b" * BS
    assert plain(cdb16(op.WRITE_16, 20, 1, 0x08), b"c" * BS).status == 0
    twelve = bytes((op.READ_12, 0)) + (20).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\0\0"
    assert plain(twelve, expected=BS).data_in == b"c" * BS
    assert plain(cdb16(op.READ_16, 20, 1), expected=BS).data_in == b"c" * BS
    assert plain(cdb10(op.READ_10, 0, 0), expected=0).status == 0  # 0 blocks: nothing


def test_out_of_range_protection_and_unknown_commands(plain):
    key, code = sense_of(plain(cdb10(op.READ_10, BLOCKS - 1, 2)))
    assert (key, code) == (0x05, (0x21, 0x00))
    assert sense_of(plain(cdb16(op.READ_16, (1 << 64) - 1, 1)))[1] == (0x21, 0x00)
    assert sense_of(plain(cdb10(op.WRITE_10, BLOCKS, 1), b"x" * BS))[1] == (0x21, 0x00)
    protect = plain(cdb10(op.READ_10, 0, 1, 0x20))  # RDPROTECT: no protection information
    assert sense_of(protect)[1] == (0x24, 0x00) and field_pointer(protect) == (True, 1, 5)
    assert sense_of(plain(bytes((0xC0,)) + bytes(15)))[1] == (0x20, 0x00)
    unknown_action = plain(bytes((0x9E, 0x1F)) + bytes(14))
    assert sense_of(unknown_action)[1] == (0x24, 0x00) and field_pointer(unknown_action)[1] == 1
    assert sense_of(plain(cdb10(op.VERIFY_10, 0, 1, 0x04)))[1] == (0x24, 0x00)  # BYTCHK 2


def test_read_only_export_refuses_writes(tmp_path):
    path = tmp_path / "ro.img"
    path.write_bytes(bytes(64 * BS))
    disk = PlainDisk(str(path), readonly=True)
    io = Initiator(LogicalUnit(name="ro", serial="ro", size_bytes=disk.size, readonly=True,
                               unmapped=unmapped_mode(disk)), disk)
    for cdb, data in ((cdb10(op.WRITE_10, 0, 1), b"x" * BS),
                      (cdb16(op.WRITE_SAME_16, 0, 1), b"x" * BS),
                      (cdb10(op.WRITE_VERIFY_10, 0, 1), b"x" * BS)):
        assert sense_of(io(cdb, data)) == (0x07, (0x27, 0x00))
    assert io(cdb10(op.READ_10, 0, 1), expected=BS).status == 0
    unmap = bytes((op.UNMAP,)) + bytes(6) + (24).to_bytes(2, "big") + b"\0"
    assert sense_of(io(unmap, bytes(24)))[0] == 0x07
    assert path.read_bytes() == bytes(64 * BS)
    disk.close()


def test_write_residuals_as_libiscsi_expects(plain):
    write10(plain, 0, b"a" * BS * 2)
    nothing = plain(cdb10(op.WRITE_10, 0, 1), b"", expected=0, write=True)
    assert (nothing.status, nothing.overflow, nothing.underflow) == (0, BS, 0)
    more = plain(cdb10(op.WRITE_10, 0, 1), b"b" * 10000, expected=10000)
    assert (more.status, more.overflow, more.underflow) == (0, 0, 10000 - BS)
    part = plain(cdb10(op.WRITE_10, 0, 1), b"c" * 200, expected=200)
    assert part.overflow == BS - 200 and sense_of(part)[1] == (0x0E, 0x03)
    assert read10(plain, 0, 1) == b"b" * BS  # the part block was not written
    short = plain(cdb10(op.WRITE_10, 0, 2), b"d" * BS, expected=BS)
    assert (short.status, short.overflow) == (0, BS)
    assert read10(plain, 0, 2) == b"d" * BS + b"a" * BS  # only what was transferred
    write10(plain, 4, b"a" * BS * 2)
    under = plain(cdb10(op.WRITE_10, 4, 1), b"e" * 2 * BS, expected=2 * BS)
    assert (under.status, under.underflow) == (0, BS)
    assert read10(plain, 4, 2) == b"e" * BS + b"a" * BS  # never more than the CDB says


def test_read_residuals(plain):
    write10(plain, 0, b"r" * BS * 2)
    none = plain(cdb10(op.READ_10, 0, 1), expected=0)
    assert (none.status, none.data_in, none.overflow) == (0, b"", BS)
    big = plain(cdb10(op.READ_10, 0, 1), expected=10000)
    assert (len(big.data_in), big.underflow) == (BS, 10000 - BS)
    cut = plain(cdb10(op.READ_10, 0, 1), expected=200)
    assert (cut.data_in, cut.overflow) == (b"r" * 200, BS - 200)
    half = plain(cdb10(op.READ_10, 0, 2), expected=BS)
    assert (len(half.data_in), half.overflow) == (BS, BS)
    inquiry = plain(bytes((0x12, 0, 0, 0, 4, 0)), expected=4)
    assert (len(inquiry.data_in), inquiry.overflow, inquiry.underflow) == (4, 0, 0)
    tur = plain(bytes(6), expected=0)
    assert (tur.status, tur.overflow, tur.underflow) == (0, 0, 0)


def test_verify_and_write_and_verify(plain):
    write10(plain, 8, b"v" * BS * 2)
    assert plain(cdb10(op.VERIFY_10, 8, 2)).status == 0  # BYTCHK 0: medium readable
    assert plain(cdb10(op.VERIFY_10, 8, 2, 0x02), b"v" * BS * 2).status == 0
    miss = plain(cdb16(op.VERIFY_16, 8, 2, 0x02), b"v" * BS + b"w" * BS)
    assert sense_of(miss) == (0x0E, (0x1D, 0x00))
    assert plain(cdb10(op.VERIFY_10, 8, 2, 0x06), b"v" * BS).status == 0  # BYTCHK 3
    assert plain(cdb10(op.WRITE_VERIFY_10, 30, 1, 0x02), b"z" * BS).status == 0
    assert read10(plain, 30, 1) == b"z" * BS
    beyond = plain(cdb10(op.VERIFY_10, BLOCKS, 1, 0x02), b"v" * BS)
    assert sense_of(beyond)[1] == (0x21, 0x00)


def caw(lba, blocks):
    return bytes((op.COMPARE_AND_WRITE, 0)) + lba.to_bytes(8, "big") + bytes(3) + bytes(
        (blocks, 0, 0))


def test_compare_and_write(plain):
    write10(plain, 5, b"1" * BS)
    assert plain(caw(5, 1), b"1" * BS + b"2" * BS).status == 0
    assert read10(plain, 5, 1) == b"2" * BS
    miss = plain(caw(5, 1), b"2" * 100 + b"x" + b"2" * (BS - 101) + b"3" * BS)
    assert sense_of(miss) == (0x0E, (0x1D, 0x00))
    assert miss.sense[0] & 0x80 and int.from_bytes(miss.sense[3:7], "big") == 100
    assert read10(plain, 5, 1) == b"2" * BS  # nothing written on a miscompare
    wrong_size = plain(caw(5, 1), b"2" * BS * 4)  # EDTL of 4 blocks for 1 block
    assert sense_of(wrong_size)[0] == 0x05
    assert plain(caw(5, 0), b"", expected=0).status == 0


def test_compare_and_write_is_atomic_against_other_writers(plain):
    """Threads race COMPARE AND WRITE from the value they read to the next: with the per-unit
    lock every success increments exactly once, so the final value counts the successes."""
    write10(plain, 40, (0).to_bytes(BS, "big"))
    successes = []

    def worker() -> None:
        done = 0
        for _ in range(60):
            current = int.from_bytes(read10(plain, 40, 1), "big")
            response = plain(caw(40, 1), current.to_bytes(BS, "big")
                             + (current + 1).to_bytes(BS, "big"))
            done += response.status == 0
        successes.append(done)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(successes) == 4
    assert int.from_bytes(read10(plain, 40, 1), "big") == sum(successes) > 0


def test_write_same(plain):
    assert plain(cdb10(op.WRITE_SAME_10, 100, 5), b"s" * BS).status == 0
    assert read10(plain, 100, 5) == b"s" * BS * 5
    assert plain(cdb16(op.WRITE_SAME_16, 100, 2, 0x01), b"", expected=0).status == 0  # NDOB
    assert read10(plain, 100, 2) == bytes(2 * BS)
    assert plain(cdb10(op.WRITE_SAME_10, BLOCKS - 4, 0), b"e" * BS).status == 0  # to the end
    assert read10(plain, BLOCKS - 5, 5) == bytes(BS) + b"e" * BS * 4
    past = plain(cdb10(op.WRITE_SAME_10, BLOCKS + 1, 0), b"e" * BS)
    assert sense_of(past)[1] == (0x21, 0x00)
    assert sense_of(plain(cdb10(op.WRITE_SAME_10, 0, 1), b"s" * (BS // 2)))[0] == 0x05
    assert sense_of(plain(cdb10(op.WRITE_SAME_10, 0, 1), b"s" * (BS * 2)))[0] == 0x05
    assert sense_of(plain(cdb16(op.WRITE_SAME_16, BLOCKS - 1, 2), b"s" * BS))[1] == (0x21, 0)


def unmap_cdb(descriptors):
    body = b"".join(lba.to_bytes(8, "big") + n.to_bytes(4, "big") + bytes(4)
                    for lba, n in descriptors)
    data = (len(body) + 6).to_bytes(2, "big") + len(body).to_bytes(2, "big") + bytes(4) + body
    cdb = bytes((op.UNMAP,)) + bytes(6) + len(data).to_bytes(2, "big") + b"\0"
    return cdb, data


def lba_status(io, lba):
    cdb = bytes((0x9E, 0x12)) + lba.to_bytes(8, "big") + (1024).to_bytes(4, "big") + b"\0\0"
    response = io(cdb, expected=1024)
    assert response.status == 0, response
    data = response.data_in
    count = (int.from_bytes(data[0:4], "big") - 4) // 16
    return [(int.from_bytes(data[8 + 16 * i:16 + 16 * i], "big"),
             int.from_bytes(data[16 + 16 * i:20 + 16 * i], "big"), data[20 + 16 * i] & 0x0F)
            for i in range(count)]


def test_unmap_on_a_plain_disk_reads_zeros_and_frees(plain):
    write10(plain, 0, b"u" * BS * 64)
    assert lba_status(plain, 0)[0][:3] == (0, 64, 0)
    cdb, data = unmap_cdb([(8, 16), (40, 8)])
    assert plain(cdb, data).status == 0
    assert read10(plain, 0, 64) == b"u" * BS * 8 + bytes(16 * BS) + b"u" * BS * 16 + bytes(
        8 * BS) + b"u" * BS * 16
    runs = lba_status(plain, 0)
    assert runs[:4] == [(0, 8, 0), (8, 16, 1), (24, 16, 0), (40, 8, 1)]
    assert sense_of(plain(*unmap_cdb([(BLOCKS - 1, 2)])))[1] == (0x21, 0x00)
    assert plain(bytes((op.UNMAP,)) + bytes(15), b"", expected=0).status == 0  # empty list
    short = bytes((op.UNMAP,)) + bytes(6) + (4).to_bytes(2, "big") + b"\0"
    assert sense_of(plain(short, bytes(4)))[1] == (0x1A, 0x00)
    # WRITE SAME with UNMAP: discarded whatever the block (reads zeros, LBPRZ 1)
    write10(plain, 104, b"w" * BS * 8)  # one whole 4 KiB file system block
    assert plain(cdb16(op.WRITE_SAME_16, 104, 8, 0x08), b"\xff" * BS).status == 0
    assert read10(plain, 104, 8) == bytes(8 * BS) and lba_status(plain, 104)[0][2] == 1
    beyond = bytes((0x9E, 0x12)) + BLOCKS.to_bytes(8, "big") + (24).to_bytes(4, "big") + b"\0\0"
    assert sense_of(plain(beyond))[1] == (0x21, 0x00)


def test_unmap_on_an_overlay_reads_golden_again(cow):
    io, golden = cow
    write10(io, 0, b"h" * BS * 32)  # 4 overlay blocks of 4 KiB
    assert lba_status(io, 0)[0] == (0, 32, 0) and lba_status(io, 32)[0][2] == 1
    assert io(*unmap_cdb([(8, 12)])).status == 0  # covers block 1 whole, block 2 partly
    data = read10(io, 0, 32)
    assert data[:8 * BS] == b"h" * BS * 8
    assert data[8 * BS:16 * BS] == golden[8 * BS:16 * BS]  # dropped: golden again
    assert data[16 * BS:] == b"h" * BS * 16  # a partly covered block keeps the host's data
    assert lba_status(io, 0)[:3] == [(0, 8, 0), (8, 8, 1), (16, 16, 0)]
    write10(io, 10, b"n" * BS)  # a block written again after the unmap merges golden
    again = read10(io, 8, 8)
    assert again == golden[8 * BS:10 * BS] + b"n" * BS + golden[11 * BS:16 * BS]
    # WRITE SAME with UNMAP on an overlay unmaps too: golden again (LBPRZ 0)
    write10(io, 64, b"m" * BS * 8)
    assert io(cdb10(op.WRITE_SAME_10, 64, 8, 0x08), bytes(BS)).status == 0
    assert read10(io, 64, 8) == golden[64 * BS:72 * BS]


def test_orwrite_and_read_defect_data(plain):
    write10(plain, 50, bytes((0x0F,)) * BS)
    assert plain(cdb16(op.ORWRITE_16, 50, 1), bytes((0xA0,)) * BS).status == 0
    assert read10(plain, 50, 1) == bytes((0xAF,)) * BS
    assert sense_of(plain(cdb16(op.ORWRITE_16, BLOCKS, 1), bytes(BS)))[1] == (0x21, 0x00)
    defects = plain(bytes((0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0)), expected=32)
    assert defects.data_in == bytes((0, 0x18, 0, 0)) and defects.underflow == 28
    twelve = plain(bytes((0xB7, 0x0D, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0)), expected=32)
    assert twelve.data_in == bytes((0, 0x0D)) + bytes(6)


def test_synchronize_cache_and_prefetch(plain):
    assert plain(cdb10(op.SYNCHRONIZE_CACHE_10, 0, 0)).status == 0
    assert plain(cdb16(op.SYNCHRONIZE_CACHE_16, 0, BLOCKS)).status == 0
    assert sense_of(plain(cdb10(op.SYNCHRONIZE_CACHE_10, BLOCKS, 1)))[1] == (0x21, 0x00)
    assert plain(cdb10(op.PRE_FETCH_10, 0, 8)).status == 0


def test_mode_select_accepts_no_change_and_refuses_changes(plain):
    current = plain(bytes((0x1A, 0x08, 0x08, 0, 255, 0))).data_in  # caching page, no blocks
    page = current[4:]
    select = bytes((0x15, 0x10, 0, 0, 4 + len(page), 0))
    assert plain(select, bytes(4) + page).status == 0
    changed = bytearray(page)
    changed[2] |= 0x01  # RCD 1: not changeable (only WCE is: test_iscsi_writeback.py)
    refused = plain(select, bytes(4) + bytes(changed))
    assert sense_of(refused)[1] == (0x26, 0x00)
    assert field_pointer(refused) == (False, 6, None)
    saving = plain(bytes((0x15, 0x11, 0, 0, 4 + len(page), 0)), bytes(4) + page)
    assert sense_of(saving)[1] == (0x24, 0x00)
    descriptor = plain(bytes((0x1A, 0, 0x08, 0, 255, 0))).data_in  # with a block descriptor
    ten = bytes((0x55, 0x10, 0, 0, 0, 0, 0)) + (8 + len(descriptor) - 4).to_bytes(2, "big")
    header10 = bytes(6) + (8).to_bytes(2, "big")
    assert plain(ten + b"\0", header10 + descriptor[4:]).status == 0


def test_request_sense_unit_attention_and_resets(plain):
    other = plain.as_("iqn.other,i,0x1")
    assert plain(bytes(6)).status == 0 and other(bytes(6)).status == 0
    plain.lu.reset("lun", NEXUS_A)
    assert sense_of(plain(bytes(6))) == (0x06, (0x29, 0x03))  # the issuer too
    assert plain(bytes(6)).status == 0
    assert other(bytes((0x12, 0, 0, 0, 36, 0))).status == 0  # INQUIRY is not stopped
    sense = other(bytes((0x03, 0, 0, 0, 18, 0)))  # REQUEST SENSE reports and clears it
    assert sense.status == 0 and sense.data_in[2] == 0x06 and sense.data_in[12:14] == b"\x29\x03"
    assert other(bytes(6)).status == 0
    plain.lu.reset("target_cold", NEXUS_A)
    assert sense_of(plain(bytes(6))) == (0x06, (0x29, 0x00))
    assert plain(bytes(6)).status == 0
    clean = plain(bytes((0x03, 0, 0, 0, 18, 0)))
    assert clean.data_in[2] == 0 and clean.data_in[12:14] == b"\0\0"
    descriptor = plain(bytes((0x03, 1, 0, 0, 8, 0)))
    assert descriptor.data_in[0] == 0x72


def test_storage_errors_become_sense(tmp_path):
    class Failing(PlainDisk):
        def write(self, writes):
            raise OSError(errno.ENOSPC, "no space")

        def read(self, offset, length):
            raise OSError(errno.EIO, "bad block")

    path = tmp_path / "f.img"
    path.write_bytes(bytes(64 * BS))
    disk = Failing(str(path))
    io = Initiator(LogicalUnit(name="f", serial="f", size_bytes=disk.size, readonly=False), disk)
    assert sense_of(io(cdb10(op.WRITE_10, 0, 1), b"x" * BS)) == (0x07, (0x27, 0x07))
    assert sense_of(io(cdb10(op.READ_10, 0, 1))) == (0x03, (0x11, 0x00))
    disk.close()


def test_no_such_lun_and_report_luns():
    def request(cdb, expected=255):
        return Request(cdb.ljust(16, b"\0"), 3, NEXUS_A, b"", expected, True, False)

    inquiry = no_such_lun(request(bytes((0x12, 0, 0, 0, 36, 0)), 36))
    assert inquiry.status == 0 and inquiry.data_in[0] == 0x7F
    refused = no_such_lun(request(cdb10(op.READ_10, 0, 1), 512))
    assert sense_of(refused) == (0x05, (0x25, 0x00)) and refused.underflow == 512
    luns = report_luns([0, 1], request(bytes((0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)), 256))
    assert luns.data_in[:4] == (16).to_bytes(4, "big") and luns.underflow == 256 - 24


def test_execute_many_batches_writes_in_order(plain):
    lu, disk = plain.lu, plain.disk
    assert plain(bytes(6)).status == 0  # the nexus is known

    def request(cdb, data=b"", expected=None):
        return Request(cdb.ljust(16, b"\0"), 0, NEXUS_A, data,
                       len(data) if expected is None else expected, not data, bool(data))

    items = [(request(cdb10(op.WRITE_10, 0, 1), b"1" * BS), disk),
             (request(cdb16(op.WRITE_16, 1, 1), b"2" * BS), disk),
             (request(cdb10(op.READ_10, 0, 2), expected=2 * BS), disk),  # sees both writes
             (request(cdb10(op.WRITE_10, 0, 1), b"3" * BS), disk),
             (request(cdb10(op.WRITE_10, BLOCKS, 1), b"4" * BS), disk),  # out of range
             (request(cdb10(op.WRITE_10, 2, 1), b"5" * 2 * BS), disk)]  # EDTL > transfer
    responses = lu.execute_many(items)
    assert [r.status for r in responses] == [0, 0, 0, 0, 2, 0]
    assert responses[2].data_in == b"1" * BS + b"2" * BS
    assert sense_of(responses[4])[1] == (0x21, 0x00)
    assert responses[5].underflow == BS
    assert read10(plain, 0, 3) == b"3" * BS + b"2" * BS + b"5" * BS


def test_execute_many_failed_batch_answers_each(tmp_path):
    class Failing(PlainDisk):
        def write(self, writes):
            raise OSError(errno.EIO, "bad disk")

    path = tmp_path / "f.img"
    path.write_bytes(bytes(64 * BS))
    disk = Failing(str(path))
    lu = LogicalUnit(name="f", serial="f", size_bytes=disk.size, readonly=False)
    items = [(Request(cdb10(op.WRITE_10, i, 1).ljust(16, b"\0"), 0, NEXUS_A, b"x" * BS, BS,
                      False, True), disk) for i in range(3)]
    lu.execute(Request(bytes(16), 0, NEXUS_A, b"", 0, False, False), disk)
    assert [sense_of(r) for r in lu.execute_many(items)] == [(0x03, (0x0C, 0x00))] * 3
    disk.close()


def test_random_cdbs_never_break_the_engine(plain, caplog):
    """Every known opcode with random fields and random Data-Out: a valid status, sense data
    for CHECK CONDITION, and never an internal error (HARDWARE ERROR)."""
    import random

    rng = random.Random(15)
    opcodes = sorted({c.opcode for c in op.COMMANDS}) + [0xC0, 0x48, 0x83, 0x84, 0x9C]
    for _ in range(4000):
        code = rng.choice(opcodes)
        fields = rng.randbytes(15)
        if rng.random() < 0.5:  # mostly small numbers, so commands get past the range checks
            fields = bytes(b if rng.random() < 0.3 else b & 0x03 for b in fields)
        cdb = bytes((code,)) + fields
        data = rng.randbytes(rng.choice((0, 8, 24, 512, 1024, 4096)))
        response = plain.as_(rng.choice((NEXUS_A, "iqn.x,i,0x2")))(
            cdb, data, expected=rng.choice((0, len(data), 512, 65536)), write=bool(data))
        assert response.status in (0x00, 0x02, 0x18), response
        if response.status == 0x02:
            key, _ = sense_of(response)
            assert key != 0x04, (cdb.hex(), response)
        assert not (response.overflow and response.underflow)
    assert "scsi_command_failed" not in caplog.text


def xcopy(plain, segments, target=None, list_id=1, usage=0, targets=1, length=None):
    """An EXTENDED COPY (LID1) of block-to-block segments (source lba, destination lba,
    blocks) inside the unit, named by its NAA designator unless ``target`` is given."""
    if target is None:
        naa = designators(plain.lu.unit)[0]
        target = bytes((0xE4, 0, 0, 0)) + naa.ljust(24, b"\0") + bytes((0, 0, 2, 0))
    body = target * targets
    segs = b"".join(bytes((0x02, 0, 0, 0x18, 0, 0, 0, 0, 0, 0)) + n.to_bytes(2, "big")
                    + src.to_bytes(8, "big") + dst.to_bytes(8, "big") for src, dst, n in segments)
    header = bytes((list_id, usage << 3)) + len(body).to_bytes(2, "big") + bytes(4) \
        + len(segs).to_bytes(4, "big") + bytes(4)
    data = header + body + segs
    size = len(data) if length is None else length
    cdb = bytes((0x83, 0)) + bytes(8) + size.to_bytes(4, "big") + b"\0\0"
    return plain(cdb, data[:size], expected=size, write=True)


def copy_results(plain, action, list_id=1):
    cdb = bytes((0x84, action, list_id)) + bytes(7) + (1024).to_bytes(4, "big") + b"\0\0"
    return plain(cdb, expected=1024)


def test_extended_copy_inside_the_unit(plain):
    assert plain(bytes((0x12, 0, 0, 0, 36, 0))).data_in[5] & 0x08  # 3PC
    params = copy_results(plain, 0x03, list_id=0).data_in
    assert int.from_bytes(params[8:10], "big") == 2 and params[44:46] == b"\x02\xe4"
    assert sense_of(copy_results(plain, 0x00))[1] == (0x24, 0x00)  # nothing held yet
    write10(plain, 0, b"x" * BS * 4 + b"y" * BS * 4)
    assert xcopy(plain, [(0, 100, 8), (4, 200, 2)]).status == 0
    assert read10(plain, 100, 8) == b"x" * BS * 4 + b"y" * BS * 4
    assert read10(plain, 200, 2) == b"y" * BS * 2
    status = copy_results(plain, 0x00).data_in
    assert status[4] == 0x01 and int.from_bytes(status[5:7], "big") == 2
    assert xcopy(plain, [(0, 2, 6)]).status == 0  # overlapping, destination after source
    assert read10(plain, 0, 8) == b"x" * BS * 4 + b"x" * BS * 2 + b"y" * BS * 2
    assert plain(bytes((0x83,)) + bytes(15), b"", expected=0).status == 0  # empty list


def test_extended_copy_refusals(plain):
    assert sense_of(xcopy(plain, [(0, 1, 1)], length=40))[1] == (0x1A, 0x00)  # cut short
    assert sense_of(xcopy(plain, [(0, 1, 1)], targets=3))[1] == (0x26, 0x06)
    assert sense_of(xcopy(plain, [(0, 1, 1)] * 17))[1] == (0x26, 0x08)
    other = bytes((0xE0,)) + bytes(31)
    assert sense_of(xcopy(plain, [(0, 1, 1)], target=other))[1] == (0x26, 0x07)
    stranger = bytes((0xE4, 0, 0, 0, 1, 3, 0, 8)) + bytes(8) + bytes(12) + bytes((0, 0, 2, 0))
    assert sense_of(xcopy(plain, [(0, 1, 1)], target=stranger)) == (0x0A, (0x08, 0x04))
    beyond = xcopy(plain, [(0, BLOCKS - 1, 2)])
    assert sense_of(beyond)[0] == 0x0A
    segment = xcopy(plain, [(0, 1, 1)])
    assert segment.status == 0
    bad_index = bytes((0x83, 0)) + bytes(8)  # a segment naming target 1 of 1
    naa = designators(plain.lu.unit)[0]
    target = bytes((0xE4, 0, 0, 0)) + naa.ljust(24, b"\0") + bytes((0, 0, 2, 0))
    seg = bytes((0x02, 0, 0, 0x18, 0, 0, 0, 1, 0, 0, 0, 1)) + bytes(16)
    data = bytes((1, 0, 0, 32)) + bytes(4) + (28).to_bytes(4, "big") + bytes(4) + target + seg
    response = plain(bad_index + len(data).to_bytes(4, "big") + b"\0\0", data)
    assert sense_of(response) == (0x0A, (0x08, 0x04))


def test_short_and_empty_cdbs(plain):
    lu, disk = plain.lu, plain.disk
    for cdb in (b"", b"\x28", cdb10(op.READ_10, 0, 1), bytes((0x88,)) + bytes(9), b"\x9e\x10"):
        response = lu.execute(Request(cdb, 0, NEXUS_A, b"", 512, True, False), disk)
        assert response.status in (0x00, 0x02)
    ten = lu.execute(Request(cdb10(op.READ_10, 0, 1), 0, NEXUS_A, b"", 512, True, False), disk)
    assert ten.status == 0 and len(ten.data_in) == 512  # a 10-byte CDB works too
