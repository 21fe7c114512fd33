"""The data the engine answers with: INQUIRY (standard and VPD pages), READ CAPACITY, mode
pages, REPORT LUNS, REPORT SUPPORTED OPERATION CODES. Pure functions of a :class:`Unit`.

Numbers are from SPC-4 (T10/1731-D) and SBC-3 (T10/1799-D); the section is named where a
field's meaning is not obvious.
"""

from __future__ import annotations

import dataclasses
import hashlib

from services.blockexport.scsi_cdb import COMMANDS, SERVICE_ACTION_OPCODES, Command
from services.blockexport.scsi_sense import (
    ILLEGAL_REQUEST,
    SAVING_PARAMETERS_NOT_SUPPORTED,
    Check,
    Field,
    invalid_cdb,
)

VERSION_DESCRIPTORS = (0x00A0, 0x0960, 0x0460, 0x04C0)  # SAM-5, iSCSI, SPC-4, SBC-3
SUPPORTED_VPD = (0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2)
UNMAPPED_ZEROS = "zeros"  # an unmapped block reads back as zeros (LBPRZ=1)
UNMAPPED_GOLDEN = "golden"  # ... as the golden image's block (LBPRZ=0: "any data")
MAX_UNMAP_DESCRIPTORS = 256
MAX_COMPARE_AND_WRITE = 128  # blocks


@dataclasses.dataclass(frozen=True)
class Unit:
    """What the replies say about one logical unit."""
    name: str
    serial: str
    size_bytes: int
    block_size: int = 512
    readonly: bool = False
    unmapped: str | None = None  # None: not thin (no UNMAP); UNMAPPED_ZEROS or UNMAPPED_GOLDEN
    physical_block: int = 4096  # the storage's allocation unit (overlay block, file system)
    max_transfer_bytes: int = 8 << 20
    optimal_transfer_bytes: int = 128 << 10
    vendor: str = "BOOTYARD"
    product: str = "blockexport"
    revision: str = "0001"
    # WCE of the caching mode page: True is a write-back cache (a WRITE is answered once it is
    # in the kernel; FUA and SYNCHRONIZE CACHE make it durable). ``write_cache_default`` is
    # the export's setting (the DEFAULT page), ``write_cache`` the current value, which
    # MODE SELECT may change (docs/blockexport.md "Durability and WCE").
    write_cache: bool = False
    write_cache_default: bool = False

    @property
    def blocks(self) -> int:
        return self.size_bytes // self.block_size

    @property
    def lbppbe(self) -> int:
        """Logical blocks per physical block exponent (READ CAPACITY (16)): 0. A logical block
        is written atomically on its own; the 4 KiB allocation unit is said by the block
        limits' granularity fields instead. (libiscsi's GetLBAStatus.UnmapSingle expects the
        first descriptor of a GET LBA STATUS at LBA n+1 to start at n + 2^LBPPBE, which only
        holds for 0.)"""
        return 0

    @property
    def naa(self) -> bytes:
        """An 8-byte NAA 3h (locally assigned) identifier, stable for the export's name."""
        digest = hashlib.sha256(b"bootyard-lu:" + self.name.encode()).digest()
        value = (0x3 << 60) | (int.from_bytes(digest[:8], "big") & ((1 << 60) - 1))
        return value.to_bytes(8, "big")

    @property
    def thin(self) -> bool:
        return self.unmapped is not None


def _ascii(text: str, length: int) -> bytes:
    data = "".join(c if 0x20 <= ord(c) < 0x7F else "_" for c in text).encode()
    return data[:length].ljust(length, b" ")


def cut(data: bytes, allocation: int) -> bytes:
    return data[:allocation]


# ----------------------------------------------------------------------------- INQUIRY

def standard_inquiry(unit: Unit) -> bytes:
    out = bytearray(74)
    out[0] = 0x00  # peripheral qualifier 000b, direct access block device
    out[1] = 0x00  # RMB 0: not removable
    out[2] = 0x06  # SPC-4
    out[3] = 0x12  # HISUP, response data format 2
    out[4] = len(out) - 5
    out[5] = 0x08  # 3PC: EXTENDED COPY (LID1) within the unit
    out[7] = 0x02  # CMDQUE
    out[8:16] = _ascii(unit.vendor, 8)
    out[16:32] = _ascii(unit.product, 16)
    out[32:36] = _ascii(unit.revision, 4)
    for index, descriptor in enumerate(VERSION_DESCRIPTORS):
        out[58 + 2 * index:60 + 2 * index] = descriptor.to_bytes(2, "big")
    return bytes(out)


def _page(code: int, body: bytes) -> bytes:
    return bytes((0x00, code)) + len(body).to_bytes(2, "big") + body


def _designator(code_set: int, kind: int, value: bytes, association: int = 0,
                protocol: int | None = None) -> bytes:
    first = code_set | ((protocol << 4) if protocol is not None else 0)
    second = (0x80 if protocol is not None else 0) | (association << 4) | kind
    return bytes((first, second, 0, len(value))) + value


def designators(unit: Unit) -> list[bytes]:
    """The logical unit's designation descriptors: NAA, then T10 vendor ID (VPD page 83h;
    EXTENDED COPY names its copy target with one of them)."""
    t10 = _ascii(unit.vendor, 8) + _ascii(unit.name, len(unit.name))
    return [_designator(1, 3, unit.naa), _designator(2, 1, t10)]


def vpd_page(unit: Unit, code: int) -> bytes:
    """A VPD page; INVALID FIELD IN CDB (byte 2) for one we do not have."""
    if code == 0x00:
        return _page(0x00, bytes(SUPPORTED_VPD))
    if code == 0x80:
        return _page(0x80, _ascii(unit.serial, len(unit.serial)))
    if code == 0x83:
        body = b"".join(designators(unit)) + _designator(
            1, 4, (1).to_bytes(4, "big"), association=1, protocol=5)  # relative target port 1
        return _page(0x83, body)
    if code == 0xB0:
        return _page(0xB0, block_limits(unit))
    if code == 0xB1:
        body = bytearray(0x3C)
        body[0:2] = (0).to_bytes(2, "big")  # medium rotation rate not reported
        return _page(0xB1, bytes(body))
    if code == 0xB2:
        body = bytearray(4)
        if unit.thin:
            body[1] = 0x80 | 0x40 | 0x20  # LBPU, LBPWS, LBPWS10
            if unit.unmapped == UNMAPPED_ZEROS:
                body[1] |= 0x04  # LBPRZ
            body[2] = 0x02  # provisioning type: thin
        return _page(0xB2, bytes(body))
    raise invalid_cdb(2)


def unmap_granularity(unit: Unit) -> int:
    """Blocks an UNMAP frees at a time (an overlay block); 1 for a plain disk (hole punching
    zeroes partial file system blocks)."""
    if unit.unmapped == UNMAPPED_GOLDEN:
        return max(1, unit.physical_block // unit.block_size)
    return 1


def block_limits(unit: Unit) -> bytes:
    body = bytearray(0x3C)
    body[0] = 0x00  # WSNZ 0: a WRITE SAME of 0 blocks writes to the end of the medium
    body[1] = MAX_COMPARE_AND_WRITE
    granularity = max(1, unit.physical_block // unit.block_size)
    body[2:4] = granularity.to_bytes(2, "big")
    body[4:8] = (unit.max_transfer_bytes // unit.block_size).to_bytes(4, "big")
    body[8:12] = (unit.optimal_transfer_bytes // unit.block_size).to_bytes(4, "big")
    if unit.thin:
        body[16:20] = (0xFFFFFFFF).to_bytes(4, "big")  # max unmap LBA count: no limit
        body[20:24] = MAX_UNMAP_DESCRIPTORS.to_bytes(4, "big")
        body[24:28] = unmap_granularity(unit).to_bytes(4, "big")
        body[28:32] = (0x80000000).to_bytes(4, "big")  # UGAVALID, alignment 0
    body[32:40] = max_write_same(unit).to_bytes(8, "big")
    return bytes(body)


def max_write_same(unit: Unit) -> int:
    """As large as the largest transfer (libiscsi's WriteSame16.Unmap writes that many blocks
    with one WRITE (16) first)."""
    return unit.max_transfer_bytes // unit.block_size


def inquiry(unit: Unit, cdb: bytes) -> bytes:
    evpd, page = cdb[1] & 0x01, cdb[2]
    allocation = int.from_bytes(cdb[3:5], "big")
    if not evpd:
        if page:
            raise invalid_cdb(2)
        return cut(standard_inquiry(unit), allocation)
    return cut(vpd_page(unit, page), allocation)


# ----------------------------------------------------------------------- READ CAPACITY

def read_capacity_10(unit: Unit) -> bytes:
    last = min(unit.blocks - 1, 0xFFFFFFFF)
    return last.to_bytes(4, "big") + unit.block_size.to_bytes(4, "big")


def read_capacity_16(unit: Unit) -> bytes:
    out = bytearray(32)
    out[0:8] = (unit.blocks - 1).to_bytes(8, "big")
    out[8:12] = unit.block_size.to_bytes(4, "big")
    out[13] = unit.lbppbe & 0x0F
    if unit.thin:
        out[14] = 0x80 | (0x40 if unit.unmapped == UNMAPPED_ZEROS else 0)  # LBPME, LBPRZ
    return bytes(out)


# -------------------------------------------------------------------------- MODE pages

CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS, ALL_PAGES = 0x08, 0x0A, 0x1C, 0x3F
CURRENT, CHANGEABLE, DEFAULT, SAVED = 0, 1, 2, 3


WCE = 0x04  # byte 2 of the caching page


def mode_page(unit: Unit, code: int, control: int) -> bytes:
    """One mode page (with its 2-byte header) for a page control; only WCE of the caching
    page of a writable unit is changeable."""
    if code == CACHING:
        body = bytearray(18)
        # WCE 1: writes are answered from the kernel's page cache, FUA and SYNCHRONIZE CACHE
        # make them durable; WCE 0: every write is durable when answered. RCD 0.
        if control == CHANGEABLE:
            body[0] = 0 if unit.readonly else WCE
            return bytes((code, len(body))) + bytes(body)
        wce = unit.write_cache_default if control == DEFAULT else unit.write_cache
        body[0] = WCE if wce and not unit.readonly else 0
    elif code == CONTROL:
        body = bytearray(10)
        body[0] = 0x02  # GLTSD: no log parameters are saved
        body[1] = 0x10  # queue algorithm modifier 1: unrestricted reordering allowed
        body[2] = 0x08 if unit.readonly else 0x00  # SWP reflects a read-only export
        body[6:8] = (0xFFFF).to_bytes(2, "big")  # busy timeout: unlimited
    elif code == INFORMATIONAL_EXCEPTIONS:
        body = bytearray(10)
        body[0] = 0x08  # DEXCPT: informational exceptions are not reported
    else:
        raise invalid_cdb(2, 5)
    if control == CHANGEABLE:
        body = bytearray(len(body))
    return bytes((code, len(body))) + bytes(body)


def mode_pages(unit: Unit, code: int, subpage: int, control: int) -> bytes:
    if control == SAVED:
        raise Check(ILLEGAL_REQUEST, SAVING_PARAMETERS_NOT_SUPPORTED)
    if code == ALL_PAGES:
        if subpage not in (0x00, 0xFF):
            raise invalid_cdb(3)
        return b"".join(mode_page(unit, c, control)
                        for c in (CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS))
    if subpage != 0x00:
        raise invalid_cdb(3)
    return mode_page(unit, code, control)


def block_descriptor(unit: Unit, long: bool) -> bytes:
    if long:
        return (unit.blocks.to_bytes(8, "big") + bytes(4)
                + unit.block_size.to_bytes(4, "big"))
    return (min(unit.blocks, 0xFFFFFFFF).to_bytes(4, "big") + bytes(1)
            + unit.block_size.to_bytes(3, "big"))


def device_specific(unit: Unit) -> int:
    return (0x80 if unit.readonly else 0x00) | 0x10  # WP, DPOFUA


def mode_sense(unit: Unit, cdb: bytes) -> bytes:
    ten = cdb[0] == 0x5A
    dbd = bool(cdb[1] & 0x08)
    llbaa = ten and bool(cdb[1] & 0x10)
    control, code, subpage = cdb[2] >> 6, cdb[2] & 0x3F, cdb[3]
    pages = mode_pages(unit, code, subpage, control)
    descriptor = b"" if dbd else block_descriptor(unit, llbaa)
    if ten:
        header = bytearray(8)
        header[3] = device_specific(unit)
        header[4] = 0x01 if llbaa and descriptor else 0x00
        header[6:8] = len(descriptor).to_bytes(2, "big")
        data = bytes(header) + descriptor + pages
        data = (len(data) - 2).to_bytes(2, "big") + data[2:]
        return cut(data, int.from_bytes(cdb[7:9], "big"))
    header = bytes((0, 0, device_specific(unit), len(descriptor)))
    data = header + descriptor + pages
    return cut(bytes((len(data) - 1,)) + data[1:], cdb[4])


# ------------------------------------------------------------------------- REPORT LUNS

def lun_bytes(lun: int) -> bytes:
    """SAM-5 single level LUN: peripheral addressing below 256, flat space up to 16383."""
    if lun < 256:
        return bytes((0, lun)) + bytes(6)
    return bytes((0x40 | (lun >> 8) & 0x3F, lun & 0xFF)) + bytes(6)


def report_luns_data(luns: list[int]) -> bytes:
    body = b"".join(lun_bytes(lun) for lun in sorted(luns))
    return len(body).to_bytes(4, "big") + bytes(4) + body


def check_report_luns(cdb: bytes) -> int:
    """The allocation length of a valid REPORT LUNS CDB."""
    if cdb[2] not in (0x00, 0x01, 0x02):
        raise invalid_cdb(2)
    allocation = int.from_bytes(cdb[6:10], "big")
    if allocation < 16:
        raise invalid_cdb(6)
    return allocation


# ---------------------------------------------------- REPORT SUPPORTED OPERATION CODES

TIMEOUTS = (0x000A).to_bytes(2, "big") + bytes(2) + bytes(8)  # nominal/recommended: 0 = none


def _descriptor(command: Command, rctd: bool) -> bytes:
    flags = (0x02 if rctd else 0) | (0x01 if command.service_action is not None else 0)
    head = bytes((command.opcode, 0)) + (command.service_action or 0).to_bytes(2, "big")
    return head + bytes((0, flags)) + command.length.to_bytes(2, "big") + (
        TIMEOUTS if rctd else b"")


def _one(command: Command | None, rctd: bool) -> bytes:
    if command is None:
        return bytes((0, 0x01, 0, 0))  # SUPPORT 001b: not supported
    head = bytes((0, (0x80 if rctd else 0) | 0x03)) + command.length.to_bytes(2, "big")
    return head + command.usage + (TIMEOUTS if rctd else b"")


def report_supported_opcodes(cdb: bytes) -> bytes:
    rctd = bool(cdb[2] & 0x80)
    option = cdb[2] & 0x07
    opcode = cdb[3]
    action = int.from_bytes(cdb[4:6], "big")
    allocation = int.from_bytes(cdb[6:10], "big")
    if option == 0:
        body = b"".join(_descriptor(c, rctd) for c in COMMANDS)
        return cut(len(body).to_bytes(4, "big") + body, allocation)
    has_actions = opcode in SERVICE_ACTION_OPCODES
    if option == 1:
        if has_actions:
            raise invalid_cdb(3)
        if action:
            raise invalid_cdb(4)
        found = next((c for c in COMMANDS if c.opcode == opcode), None)
    elif option in (2, 3):
        if option == 2 and not has_actions:
            raise invalid_cdb(3)
        if has_actions:
            found = next((c for c in COMMANDS
                          if c.opcode == opcode and c.service_action == action), None)
        else:
            found = None if action else next((c for c in COMMANDS if c.opcode == opcode), None)
    else:
        raise Check(ILLEGAL_REQUEST, (0x24, 0x00), Field(2, 2))
    return cut(_one(found, rctd), allocation)
