"""The SCSI commands that touch the medium: READ, WRITE, WRITE AND VERIFY, VERIFY, WRITE SAME,
UNMAP, COMPARE AND WRITE, GET LBA STATUS, SYNCHRONIZE CACHE, PRE-FETCH (SBC-3).

Thin over the storage layer (:class:`services.blockexport.storage.Disk`); the decoding and
checks are pure functions above the I/O. Every write goes through ``disk.write``: durable when
it returns unless a plain WRITE without FUA meets a write-back cache (WCE 1), which leaves it in
the kernel; SYNCHRONIZE CACHE is ``disk.flush``.
Storage errors become sense data here (:func:`storage_check`), never exceptions out.
"""

from __future__ import annotations

import errno

from services.blockexport.scsi_cdb import (
    COMPARE_AND_WRITE,
    WRITE_SAME_16,
    Transfer,
    be,
    transfer,
)
from services.blockexport.scsi_pages import (
    MAX_COMPARE_AND_WRITE,
    MAX_UNMAP_DESCRIPTORS,
    Unit,
    max_write_same,
)
from services.blockexport.scsi_sense import (
    DATA_PROTECT,
    ILLEGAL_REQUEST,
    INVALID_FIELD_IN_INFORMATION_UNIT,
    MEDIUM_ERROR,
    MISCOMPARE,
    MISCOMPARE_DURING_VERIFY,
    PARAMETER_LIST_LENGTH_ERROR,
    SPACE_ALLOCATION_FAILED,
    UNRECOVERED_READ_ERROR,
    WRITE_ERROR,
    Check,
    invalid_cdb,
    invalid_parameter,
    lba_out_of_range,
    write_protected,
)
from services.blockexport.storage import Disk, StorageError

CHUNK = 1 << 20  # bytes a WRITE SAME writes per storage call


def storage_check(exc: Exception, writing: bool) -> Check:
    """The sense for a storage failure (SBC-3 4.18 / table of additional sense codes)."""
    code = getattr(exc, "errno", None)
    if code == errno.EROFS:
        return write_protected()
    if writing and code in (errno.ENOSPC, errno.EDQUOT):
        return Check(DATA_PROTECT, SPACE_ALLOCATION_FAILED)
    return Check(MEDIUM_ERROR, WRITE_ERROR if writing else UNRECOVERED_READ_ERROR)


def check_range(unit: Unit, lba: int, blocks: int) -> None:
    if lba > unit.blocks or lba + blocks > unit.blocks:
        raise lba_out_of_range()


def checked(unit: Unit, cdb: bytes) -> Transfer:
    """The transfer of a CDB, its range checked against the disk and the transfer limit."""
    xfer = transfer(cdb)
    check_range(unit, xfer.lba, xfer.blocks)
    if xfer.blocks * unit.block_size > unit.max_transfer_bytes:
        raise invalid_cdb(7 if len(cdb) == 10 else (6 if len(cdb) == 12 else 10))
    return xfer


def short_data(data: bytes, needed: int, block_size: int) -> int:
    """Whole blocks of Data-Out present when the initiator sent less than the CDB says (its
    EDTL was smaller: the residual overflow tells it what was not written). A part block is
    refused: nothing is written."""
    if len(data) >= needed:
        return needed // block_size
    if len(data) % block_size:
        raise Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_INFORMATION_UNIT)
    return len(data) // block_size


def _read(disk: Disk, offset: int, length: int) -> bytes:
    try:
        return disk.read(offset, length)
    except (OSError, StorageError) as exc:
        raise storage_check(exc, writing=False) from None


def write_through(disk: Disk, writes, sync: bool) -> None:
    """``disk.write``; ``sync`` False only when asked (a disk without write-back needs none)."""
    if sync:
        disk.write(writes)
    else:
        disk.write(writes, False)


def _write(disk: Disk, writes: list[tuple[int, bytes]], sync: bool = True) -> None:
    try:
        write_through(disk, writes, sync)
    except (OSError, StorageError) as exc:
        raise storage_check(exc, writing=True) from None


def read(unit: Unit, cdb: bytes, disk: Disk) -> bytes:
    xfer = checked(unit, cdb)
    if not xfer.blocks:
        return b""
    return _read(disk, xfer.lba * unit.block_size, xfer.blocks * unit.block_size)


def write(unit: Unit, cdb: bytes, data: bytes, disk: Disk, sync: bool = True) -> None:
    """WRITE: durable when it returns with ``sync`` (WCE 0, or FUA), else in the kernel."""
    xfer = checked(unit, cdb)
    blocks = short_data(data, xfer.blocks * unit.block_size, unit.block_size)
    if blocks:
        _write(disk, [(xfer.lba * unit.block_size, bytes(data[:blocks * unit.block_size]))],
               sync)


def verify_bytchk(cdb: bytes) -> int:
    bytchk = (cdb[1] >> 1) & 0x03
    if bytchk == 2:
        raise invalid_cdb(1, 2)
    return bytchk


def verify(unit: Unit, cdb: bytes, data: bytes, disk: Disk) -> None:
    """VERIFY: BYTCHK 0 checks the blocks can be read; 1 compares them with the Data-Out;
    3 compares every block with the one block sent."""
    bytchk = verify_bytchk(cdb)
    xfer = checked(unit, cdb)
    if not xfer.blocks:
        return
    size = xfer.blocks * unit.block_size
    if bytchk == 1 and len(data) < size or bytchk == 3 and len(data) < unit.block_size:
        raise Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_INFORMATION_UNIT)
    stored = _read(disk, xfer.lba * unit.block_size, size)
    if bytchk == 0:
        return
    expected = data[:size] if bytchk == 1 else bytes(data[:unit.block_size]) * xfer.blocks
    if stored != expected:
        raise Check(MISCOMPARE, MISCOMPARE_DURING_VERIFY, information=_first_difference(
            stored, expected))


def _first_difference(one: bytes, two: bytes) -> int:
    for index, (a, b) in enumerate(zip(one, two, strict=False)):
        if a != b:
            return index
    return min(len(one), len(two))


def write_and_verify(unit: Unit, cdb: bytes, data: bytes, disk: Disk) -> None:
    """WRITE AND VERIFY: the write, then (BYTCHK 1) read back and compare."""
    bytchk = (cdb[1] >> 1) & 0x01
    write(unit, cdb, data, disk)
    if bytchk:
        xfer = transfer(cdb)
        size = min(xfer.blocks * unit.block_size, len(data) // unit.block_size * unit.block_size)
        if size and _read(disk, xfer.lba * unit.block_size, size) != data[:size]:
            raise Check(MISCOMPARE, MISCOMPARE_DURING_VERIFY)


def orwrite(unit: Unit, cdb: bytes, data: bytes, disk: Disk) -> None:
    """ORWRITE (16): each byte of the blocks becomes itself OR the Data-Out's byte (the caller
    holds the disk's write lock, so the read-modify-write is atomic)."""
    xfer = checked(unit, cdb)
    blocks = short_data(data, xfer.blocks * unit.block_size, unit.block_size)
    if not blocks:
        return
    size = blocks * unit.block_size
    offset = xfer.lba * unit.block_size
    stored = _read(disk, offset, size)
    merged = (int.from_bytes(stored, "big") | int.from_bytes(data[:size], "big")).to_bytes(
        size, "big")
    _write(disk, [(offset, merged)])


def copy_blocks(unit: Unit, disk: Disk, source: int, destination: int, blocks: int) -> int:
    """Copy blocks inside the disk (EXTENDED COPY), a chunk at a time, backwards when the
    ranges overlap with the destination after the source (as if all were read first).
    The caller holds the disk's write lock. Returns the bytes copied."""
    per_chunk = max(1, CHUNK // unit.block_size)
    starts = list(range(0, blocks, per_chunk))
    if source < destination < source + blocks:
        starts.reverse()
    for start in starts:
        count = min(per_chunk, blocks - start)
        data = _read(disk, (source + start) * unit.block_size, count * unit.block_size)
        _write(disk, [((destination + start) * unit.block_size, data)])
    return blocks * unit.block_size


def read_defect_data(cdb: bytes) -> bytes:
    """READ DEFECT DATA (10)/(12): the lists asked for are valid and empty."""
    if cdb[0] == 0x37:
        flags, allocation = cdb[2] & 0x1F, be(cdb, 7, 2)
        return (bytes((0, flags)) + bytes(2))[:allocation]
    flags, allocation = cdb[1] & 0x1F, be(cdb, 6, 4)
    return (bytes((0, flags)) + bytes(6))[:allocation]


def compare_and_write(unit: Unit, cdb: bytes, data: bytes, disk: Disk) -> None:
    """COMPARE AND WRITE: the caller holds the disk's write lock (atomic against every other
    write of this logical unit to the same disk)."""
    xfer = transfer(cdb)
    if xfer.blocks > MAX_COMPARE_AND_WRITE:
        raise invalid_cdb(13)
    check_range(unit, xfer.lba, xfer.blocks)
    if not xfer.blocks:
        return
    size = xfer.blocks * unit.block_size
    if len(data) != 2 * size:
        raise Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_INFORMATION_UNIT)
    stored = _read(disk, xfer.lba * unit.block_size, size)
    if stored != data[:size]:
        raise Check(MISCOMPARE, MISCOMPARE_DURING_VERIFY,
                    information=_first_difference(stored, data[:size]))
    _write(disk, [(xfer.lba * unit.block_size, bytes(data[size:]))])


def write_same(unit: Unit, cdb: bytes, data: bytes, expected_length: int, disk: Disk) -> None:
    """WRITE SAME (10)/(16): one block (or zeros with NDOB) written to every LBA of the range
(0 blocks: to the end of the medium, within the maximum WRITE SAME length).
    With UNMAP set the range is unmapped as UNMAP does and the block is not written: it reads
    back as the unit's unmapped blocks do (zeros on a plain disk, LBPRZ 1; golden on an
    overlay, LBPRZ 0). That is what libiscsi's WriteSame10.UnmapUntilEnd expects (it sends
    0xFF blocks and reads zeros back) and what Linux relies on only with LBPRZ 1."""
    sixteen = cdb[0] == WRITE_SAME_16
    ndob = sixteen and bool(cdb[1] & 0x01)
    unmap = bool(cdb[1] & 0x08)
    xfer = transfer(cdb)
    if unmap and not unit.thin:
        raise invalid_cdb(1, 3)
    blocks = xfer.blocks
    if not blocks:  # WSNZ 0: from the LBA to the end of the medium
        if xfer.lba > unit.blocks:
            raise lba_out_of_range()
        blocks = unit.blocks - xfer.lba
    if blocks > max_write_same(unit):
        raise invalid_cdb(10 if sixteen else 7)
    check_range(unit, xfer.lba, blocks)
    if ndob:
        block = bytes(unit.block_size)
    else:
        if expected_length != unit.block_size or len(data) < unit.block_size:
            raise Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_INFORMATION_UNIT)
        block = bytes(data[:unit.block_size])
    start, size = xfer.lba * unit.block_size, blocks * unit.block_size
    if unmap:
        discard(disk, [(start, size)])
        return
    per_chunk = max(1, CHUNK // unit.block_size)
    offset, end = start, start + size
    while offset < end:
        count = min(per_chunk, (end - offset) // unit.block_size)
        _write(disk, [(offset, block * count)])
        offset += count * unit.block_size


def discard(disk: Disk, extents: list[tuple[int, int]]) -> None:
    try:
        disk.discard(extents)
    except (OSError, StorageError) as exc:
        raise storage_check(exc, writing=True) from None


def unmap(unit: Unit, cdb: bytes, data: bytes, disk: Disk) -> None:
    """UNMAP: the block descriptors of the parameter list, checked whole before any is done."""
    if not unit.thin:
        raise invalid_cdb(0)
    if cdb[1] & 0x01:
        raise invalid_cdb(1, 0)  # ANCHOR: no anchored state here (ANC_SUP 0)
    length = be(cdb, 7, 2)
    if length == 0:
        return
    if length < 8 or len(data) < min(length, 8):
        raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
    data_length = be(data, 0, 2)
    descriptors_length = be(data, 2, 2)
    if descriptors_length % 16:
        raise invalid_parameter(2)
    count = min(descriptors_length, len(data) - 8) // 16
    if data_length + 2 > length or descriptors_length + 8 > length:
        raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
    if count > MAX_UNMAP_DESCRIPTORS:
        raise invalid_parameter(2)
    extents = []
    for index in range(count):
        base = 8 + 16 * index
        lba, blocks = be(data, base, 8), be(data, base + 8, 4)
        check_range(unit, lba, blocks)
        if blocks:
            extents.append((lba * unit.block_size, blocks * unit.block_size))
    if extents:
        discard(disk, extents)


def get_lba_status(unit: Unit, cdb: bytes, disk: Disk) -> bytes:
    lba = be(cdb, 2, 8)
    allocation = be(cdb, 10, 4)
    if lba >= unit.blocks:
        raise lba_out_of_range()
    room = max(1, (allocation - 8) // 16) if allocation >= 24 else 1
    span = min(unit.blocks - lba, max(1, unit.max_transfer_bytes // unit.block_size) * 8)
    try:
        runs = disk.allocation(lba * unit.block_size, span * unit.block_size)
    except (OSError, StorageError) as exc:
        raise storage_check(exc, writing=False) from None
    body = bytearray()
    for offset, length, mapped in runs[:room]:
        body += (offset // unit.block_size).to_bytes(8, "big")
        body += (length // unit.block_size).to_bytes(4, "big")
        body += bytes((0 if mapped else 1, 0, 0, 0))
    data = (len(body) + 4).to_bytes(4, "big") + bytes(4) + bytes(body)
    return data[:allocation]


def synchronize_cache(unit: Unit, cdb: bytes, disk: Disk) -> None:
    if cdb[0] == 0x35:
        lba, blocks = be(cdb, 2, 4), be(cdb, 7, 2)
    else:
        lba, blocks = be(cdb, 2, 8), be(cdb, 10, 4)
    check_range(unit, lba, blocks)
    try:
        disk.flush()
    except (OSError, StorageError) as exc:
        raise storage_check(exc, writing=True) from None


def pre_fetch(unit: Unit, cdb: bytes) -> None:
    if cdb[0] == 0x34:
        lba, blocks = be(cdb, 2, 4), be(cdb, 7, 2)
    else:
        lba, blocks = be(cdb, 2, 8), be(cdb, 10, 4)
    check_range(unit, lba, blocks)


__all__ = ["COMPARE_AND_WRITE", "compare_and_write", "get_lba_status", "read", "write"]
