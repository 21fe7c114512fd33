"""SCSI CDBs: the commands the engine knows, their CDB layouts and how much data they carry.

Pure. :data:`COMMANDS` is the one table of supported commands: its CDB length, and the CDB
usage mask that REPORT SUPPORTED OPERATION CODES returns (SPC-4 6.35.3: a bit is set where the
command may have a one). :func:`check_mask` refuses a CDB with a bit set outside that mask (a
reserved field, or a feature we do not have such as protection information) with INVALID FIELD
IN CDB and the field pointer of the first such bit.
"""

from __future__ import annotations

import dataclasses

from services.blockexport.scsi_sense import Field, invalid_cdb

TEST_UNIT_READY = 0x00
REQUEST_SENSE = 0x03
READ_6 = 0x08
WRITE_6 = 0x0A
INQUIRY = 0x12
MODE_SELECT_6 = 0x15
RESERVE_6 = 0x16
RELEASE_6 = 0x17
MODE_SENSE_6 = 0x1A
START_STOP_UNIT = 0x1B
PREVENT_ALLOW = 0x1E
READ_CAPACITY_10 = 0x25
READ_10 = 0x28
WRITE_10 = 0x2A
WRITE_VERIFY_10 = 0x2E
VERIFY_10 = 0x2F
PRE_FETCH_10 = 0x34
READ_DEFECT_DATA_10 = 0x37
SYNCHRONIZE_CACHE_10 = 0x35
WRITE_SAME_10 = 0x41
UNMAP = 0x42
MODE_SELECT_10 = 0x55
RESERVE_10 = 0x56
RELEASE_10 = 0x57
MODE_SENSE_10 = 0x5A
PERSISTENT_RESERVE_IN = 0x5E
PERSISTENT_RESERVE_OUT = 0x5F
READ_16 = 0x88
COMPARE_AND_WRITE = 0x89
ORWRITE_16 = 0x8B
WRITE_16 = 0x8A
WRITE_VERIFY_16 = 0x8E
VERIFY_16 = 0x8F
PRE_FETCH_16 = 0x90
SYNCHRONIZE_CACHE_16 = 0x91
WRITE_SAME_16 = 0x93
SERVICE_ACTION_IN_16 = 0x9E
EXTENDED_COPY = 0x83
RECEIVE_COPY_RESULTS = 0x84
REPORT_LUNS = 0xA0
MAINTENANCE_IN = 0xA3
READ_12 = 0xA8
READ_DEFECT_DATA_12 = 0xB7
WRITE_12 = 0xAA
WRITE_VERIFY_12 = 0xAE
VERIFY_12 = 0xAF

SA_READ_CAPACITY_16 = 0x10
SA_GET_LBA_STATUS = 0x12
SA_REPORT_SUPPORTED_OPCODES = 0x0C

CDB_LENGTH = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}  # by group code (opcode >> 5)


@dataclasses.dataclass(frozen=True)
class Command:
    opcode: int
    name: str
    usage: bytes  # the CDB usage data; its length is the CDB length
    service_action: int | None = None
    length: int = 0  # len(usage), set by _cmd
    forbidden: int = 0  # the CDB bits that must be 0 (bytes 1.., NACA), as one integer


def _forbidden(usage: bytes) -> int:
    mask = bytearray(len(usage))
    for index in range(1, len(usage) - 1):
        mask[index] = ~usage[index] & 0xFF
    mask[-1] = 0x04  # control byte: only NACA matters (no ACA here)
    return int.from_bytes(mask, "big")


def _cmd(opcode: int, name: str, *mask: int, sa: int | None = None) -> Command:
    usage = bytes((opcode, *mask))
    return Command(opcode, name, usage, sa, len(usage), _forbidden(usage))


FF4 = (0xFF,) * 4
FF8 = (0xFF,) * 8
# Byte 1 of READ/WRITE: DPO (0x10) and FUA (0x08); protection fields (RDPROTECT/WRPROTECT)
# are refused (we have no protection information), as is RARC.
RW = 0x18
COMMANDS: tuple[Command, ...] = (
    _cmd(TEST_UNIT_READY, "TEST UNIT READY", 0, 0, 0, 0, 0x04),
    _cmd(REQUEST_SENSE, "REQUEST SENSE", 0x01, 0, 0, 0xFF, 0x04),
    _cmd(READ_6, "READ (6)", 0x1F, 0xFF, 0xFF, 0xFF, 0x04),
    _cmd(WRITE_6, "WRITE (6)", 0x1F, 0xFF, 0xFF, 0xFF, 0x04),
    _cmd(INQUIRY, "INQUIRY", 0x01, 0xFF, 0xFF, 0xFF, 0x04),
    _cmd(MODE_SELECT_6, "MODE SELECT (6)", 0x11, 0, 0, 0xFF, 0x04),
    _cmd(RESERVE_6, "RESERVE (6)", 0, 0, 0, 0, 0x04),
    _cmd(RELEASE_6, "RELEASE (6)", 0, 0, 0, 0, 0x04),
    _cmd(MODE_SENSE_6, "MODE SENSE (6)", 0x08, 0xFF, 0xFF, 0xFF, 0x04),
    _cmd(START_STOP_UNIT, "START STOP UNIT", 0x01, 0, 0x0F, 0xF7, 0x04),
    _cmd(PREVENT_ALLOW, "PREVENT ALLOW MEDIUM REMOVAL", 0, 0, 0, 0x03, 0x04),
    _cmd(READ_CAPACITY_10, "READ CAPACITY (10)", 0, 0, 0, 0, 0, 0, 0, 0, 0x04),
    _cmd(READ_10, "READ (10)", RW, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(WRITE_10, "WRITE (10)", RW, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(WRITE_VERIFY_10, "WRITE AND VERIFY (10)", 0x12, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(VERIFY_10, "VERIFY (10)", 0x16, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(PRE_FETCH_10, "PRE-FETCH (10)", 0x02, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(SYNCHRONIZE_CACHE_10, "SYNCHRONIZE CACHE (10)", 0x06, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(READ_DEFECT_DATA_10, "READ DEFECT DATA (10)", 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0x04),
    _cmd(WRITE_SAME_10, "WRITE SAME (10)", 0x08, *FF4, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(UNMAP, "UNMAP", 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0x04),
    _cmd(MODE_SELECT_10, "MODE SELECT (10)", 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04),
    _cmd(RESERVE_10, "RESERVE (10)", 0, 0, 0, 0, 0, 0, 0, 0, 0x04),
    _cmd(RELEASE_10, "RELEASE (10)", 0, 0, 0, 0, 0, 0, 0, 0, 0x04),
    _cmd(MODE_SENSE_10, "MODE SENSE (10)", 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x04),
    _cmd(PERSISTENT_RESERVE_IN, "PERSISTENT RESERVE IN", 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF,
         0x04),
    _cmd(PERSISTENT_RESERVE_OUT, "PERSISTENT RESERVE OUT", 0x1F, 0xFF, 0, 0, *FF4, 0x04),
    _cmd(READ_16, "READ (16)", RW, *FF8, *FF4, 0x1F, 0x04),
    _cmd(COMPARE_AND_WRITE, "COMPARE AND WRITE", RW, *FF8, 0, 0, 0, 0xFF, 0x1F, 0x04),
    _cmd(ORWRITE_16, "ORWRITE (16)", RW, *FF8, *FF4, 0x1F, 0x04),
    _cmd(WRITE_16, "WRITE (16)", RW, *FF8, *FF4, 0x1F, 0x04),
    _cmd(WRITE_VERIFY_16, "WRITE AND VERIFY (16)", 0x12, *FF8, *FF4, 0x1F, 0x04),
    _cmd(VERIFY_16, "VERIFY (16)", 0x16, *FF8, *FF4, 0x1F, 0x04),
    _cmd(PRE_FETCH_16, "PRE-FETCH (16)", 0x02, *FF8, *FF4, 0x1F, 0x04),
    _cmd(SYNCHRONIZE_CACHE_16, "SYNCHRONIZE CACHE (16)", 0x06, *FF8, *FF4, 0x1F, 0x04),
    _cmd(WRITE_SAME_16, "WRITE SAME (16)", 0x09, *FF8, *FF4, 0x1F, 0x04),
    _cmd(SERVICE_ACTION_IN_16, "READ CAPACITY (16)", SA_READ_CAPACITY_16, *(0,) * 8, *FF4,
         0, 0x04, sa=SA_READ_CAPACITY_16),
    _cmd(SERVICE_ACTION_IN_16, "GET LBA STATUS", SA_GET_LBA_STATUS, *FF8, *FF4, 0, 0x04,
         sa=SA_GET_LBA_STATUS),
    _cmd(EXTENDED_COPY, "EXTENDED COPY (LID1)", 0x00, *(0,) * 8, *FF4, 0, 0x04, sa=0x00),
    _cmd(RECEIVE_COPY_RESULTS, "RECEIVE COPY STATUS (LID1)", 0x00, 0xFF, *(0,) * 7, *FF4,
         0, 0x04, sa=0x00),
    _cmd(RECEIVE_COPY_RESULTS, "RECEIVE COPY OPERATING PARAMETERS", 0x03, 0, *(0,) * 7,
         *FF4, 0, 0x04, sa=0x03),
    _cmd(REPORT_LUNS, "REPORT LUNS", 0, 0xFF, 0, 0, 0, *FF4, 0, 0x04),
    _cmd(MAINTENANCE_IN, "REPORT SUPPORTED OPERATION CODES", SA_REPORT_SUPPORTED_OPCODES,
         0x87, 0xFF, 0xFF, 0xFF, *FF4, 0, 0x04, sa=SA_REPORT_SUPPORTED_OPCODES),
    _cmd(READ_12, "READ (12)", RW, *FF4, *FF4, 0x1F, 0x04),
    _cmd(WRITE_12, "WRITE (12)", RW, *FF4, *FF4, 0x1F, 0x04),
    _cmd(READ_DEFECT_DATA_12, "READ DEFECT DATA (12)", 0x1F, 0, 0, 0, 0, *FF4, 0, 0x04),
    _cmd(WRITE_VERIFY_12, "WRITE AND VERIFY (12)", 0x12, *FF4, *FF4, 0x1F, 0x04),
    _cmd(VERIFY_12, "VERIFY (12)", 0x16, *FF4, *FF4, 0x1F, 0x04),
)
SERVICE_ACTION_OPCODES = frozenset(c.opcode for c in COMMANDS if c.service_action is not None)
BY_KEY: dict[tuple[int, int | None], Command] = {(c.opcode, c.service_action): c
                                                 for c in COMMANDS}


def lookup(cdb: bytes) -> Command | None:
    """The command of a CDB, or None when we do not support it."""
    if not cdb:
        return None
    opcode = cdb[0]
    if opcode in SERVICE_ACTION_OPCODES:
        return BY_KEY.get((opcode, cdb[1] & 0x1F) if len(cdb) > 1 else (opcode, -1))
    return BY_KEY.get((opcode, None))


def check_mask(cdb: bytes, command: Command) -> None:
    """Refuse a bit set outside the command's usage mask (reserved or unsupported field);
    of the control byte only NACA is refused (we support no ACA); the rest is ignored."""
    if not int.from_bytes(cdb[:command.length], "big") & command.forbidden:
        return
    for index in range(1, command.length):
        extra = cdb[index] & (command.forbidden >> (8 * (command.length - 1 - index))) & 0xFF
        if extra:
            raise invalid_cdb(index, extra.bit_length() - 1)


def be(data: bytes, start: int, length: int) -> int:
    return int.from_bytes(data[start:start + length], "big")


@dataclasses.dataclass(frozen=True)
class Transfer:
    """The LBA range and flags of a READ/WRITE/VERIFY-like CDB."""
    lba: int
    blocks: int
    flags: int  # byte 1 of the CDB (DPO, FUA, BYTCHK, UNMAP, ...; 0 for the 6-byte CDBs)
    lba_field: Field  # where the LBA is (for INFORMATION/field pointers)


def transfer(cdb: bytes) -> Transfer:
    """LBA and block count of the read/write family, by CDB length."""
    group = cdb[0] >> 5
    if group == 0:  # 6-byte: 21-bit LBA, 0 blocks means 256 (READ/WRITE (6))
        lba = be(cdb, 1, 3) & 0x1FFFFF
        return Transfer(lba, cdb[4] or 256, 0, Field(1))
    if group in (1, 2):
        return Transfer(be(cdb, 2, 4), be(cdb, 7, 2), cdb[1], Field(2))
    if group == 5:
        return Transfer(be(cdb, 2, 4), be(cdb, 6, 4), cdb[1], Field(2))
    if cdb[0] == COMPARE_AND_WRITE:
        return Transfer(be(cdb, 2, 8), cdb[13], cdb[1], Field(2))
    return Transfer(be(cdb, 2, 8), be(cdb, 10, 4), cdb[1], Field(2))


WRITES = frozenset((WRITE_6, WRITE_10, WRITE_12, WRITE_16))
READS = frozenset((READ_6, READ_10, READ_12, READ_16))
WRITE_VERIFIES = frozenset((WRITE_VERIFY_10, WRITE_VERIFY_12, WRITE_VERIFY_16))
VERIFIES = frozenset((VERIFY_10, VERIFY_12, VERIFY_16))
WRITE_SAMES = frozenset((WRITE_SAME_10, WRITE_SAME_16))
SYNCS = frozenset((SYNCHRONIZE_CACHE_10, SYNCHRONIZE_CACHE_16))
PRE_FETCHES = frozenset((PRE_FETCH_10, PRE_FETCH_16))


def data_out_length(cdb: bytes, block_size: int) -> int | None:
    """Bytes of Data-Out the CDB says the command carries; None for an opcode we do not know
    (the transport then takes what the initiator sends, bounded by its EDTL)."""
    if lookup(cdb) is None or len(cdb) < lookup(cdb).length:
        return None
    opcode = cdb[0]
    if opcode in WRITES or opcode in WRITE_VERIFIES or opcode == ORWRITE_16:
        return transfer(cdb).blocks * block_size
    if opcode in VERIFIES:
        bytchk = (cdb[1] >> 1) & 0x03
        blocks = transfer(cdb).blocks
        return {0: 0, 1: blocks * block_size, 3: block_size if blocks else 0}.get(bytchk, 0)
    if opcode in WRITE_SAMES:
        return 0 if opcode == WRITE_SAME_16 and cdb[1] & 0x01 else block_size
    if opcode == COMPARE_AND_WRITE:
        return 2 * cdb[13] * block_size
    if opcode in (UNMAP, MODE_SELECT_10):
        return be(cdb, 7, 2)
    if opcode == MODE_SELECT_6:
        return cdb[4]
    if opcode == PERSISTENT_RESERVE_OUT:
        return be(cdb, 5, 4)
    if opcode == EXTENDED_COPY:
        return be(cdb, 10, 4)
    return 0
