"""ATA over Ethernet (AoE, Coraid specification revision 11): frames <-> frozen dataclasses.

Pure: no sockets, clock, logging or settings. :func:`decode` takes a whole Ethernet frame (the
14-byte Ethernet header included, as AF_PACKET hands it over) and raises only
:class:`DecodeError`; :func:`encode` builds one. Names and numbers are the specification's
(section numbers in the comments); the layouts were cross-read from the Linux ``aoe`` driver,
iPXE's ``src/net/aoe.c``, vblade and tcpdump's ``print-aoe.c``.

Layout of every frame (spec §2)::

    dst(6) src(6) ethertype 0x88A2(2) | ver<<4|flags(1) error(1) major(2) minor(1) command(1)
    tag(4) | command arguments ...

The AoE header is 10 bytes, so the arguments start at offset 24 of the frame.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

ETHERTYPE = 0x88A2
VERSION = 1  # the AoE protocol version this codec speaks (spec §2.1)
ETH_HEADER = 14
HEADER = struct.Struct("!6s6sHBBHBBI")  # Ethernet + AoE common header (24 bytes)
HEADER_LEN = HEADER.size  # 24
ATA_ARGS = struct.Struct("!BBBB6s2x")  # §3.1: AFlags, Err/Feature, Sector Count, Cmd/Status, LBA
ATA_HEADER_LEN = HEADER_LEN + ATA_ARGS.size  # 36: (MTU - 36) // 512 sectors fit a frame
CFG_ARGS = struct.Struct("!HHBBH")  # §3.2: Buffer Count, Firmware Version, Sector Count,
                                    #       AoE Ver<<4|CCmd, Config String Length
MASK_ARGS = struct.Struct("!BBBB")  # §3.3: reserved, MCmd, MError, Dir Count
DIRECTIVE = struct.Struct("!xB6s")  # §3.3: reserved, DCmd, MAC address
RESERVE_ARGS = struct.Struct("!BB")  # §3.4: RCmd, NMacs
SECTOR = 512
MAX_CONFIG = 1024  # §3.2: a config string holds at most 1024 bytes
BROADCAST_MAC = b"\xff" * 6
BROADCAST_SHELF = 0xFFFF  # §2.4: major 0xffff addresses every shelf
BROADCAST_SLOT = 0xFF  # §2.5: minor 0xff addresses every slot


class DecodeError(ValueError):
    """The frame is not a well-formed AoE frame (the reason says what is wrong)."""


class Flag(enum.IntFlag):
    """Header flags (§2.1), the low nibble of the first byte."""
    RESPONSE = 0x08  # R: the frame is a response
    ERROR = 0x04  # E: the Error field holds an error code


class Command(enum.IntEnum):
    """Header Command field (§2.7)."""
    ATA = 0  # Issue ATA Command
    QUERY_CONFIG = 1  # Query Config Information
    MAC_MASK = 2  # Mac Mask List
    RESERVE = 3  # Reserve / Release


class Error(enum.IntEnum):
    """Header Error field (§2.3), meaningful when the E flag is set."""
    NONE = 0
    UNRECOGNIZED_COMMAND = 1  # Unrecognized command code
    BAD_ARGUMENT = 2  # Bad argument parameter
    DEVICE_UNAVAILABLE = 3  # Device unavailable
    CONFIG_STRING_PRESENT = 4  # Config string present
    UNSUPPORTED_VERSION = 5  # Unsupported version
    TARGET_RESERVED = 6  # Target is reserved


# Plain-int copies of the flags the per-frame path tests (IntFlag arithmetic costs microseconds).
_RESPONSE, _EXTENDED, _WRITE = 0x08, 0x40, 0x01


class AFlag(enum.IntFlag):
    """ATA AFlags (§3.1)."""
    EXTENDED = 0x40  # E: LBA48 (the six LBA bytes and 16-bit register semantics)
    DEVICE = 0x10  # D: the device/head register's DEV bit
    ASYNC = 0x02  # A: asynchronous write (answer before the write is done: we never do)
    WRITE = 0x01  # W: the frame carries data to write


class AtaCommand(enum.IntEnum):
    """ATA command codes (ATA/ATAPI-7) the target knows by name."""
    READ_SECTORS = 0x20
    READ_SECTORS_EXT = 0x24
    WRITE_SECTORS = 0x30
    WRITE_SECTORS_EXT = 0x34
    CHECK_POWER_MODE = 0xE5
    FLUSH_CACHE = 0xE7
    IDENTIFY_DEVICE = 0xEC
    FLUSH_CACHE_EXT = 0xEA


class AtaStatus(enum.IntFlag):
    """ATA status register bits (the Cmd/Status field of a response)."""
    ERR = 0x01
    DRQ = 0x08
    DF = 0x20  # device fault
    DRDY = 0x40
    BSY = 0x80


class AtaError(enum.IntFlag):
    """ATA error register bits (the Err/Feature field of a response)."""
    ABRT = 0x04  # command aborted
    IDNF = 0x10  # ID not found: the address is past the end of the device
    UNC = 0x40  # uncorrectable data error


class ConfigCommand(enum.IntEnum):
    """Query Config CCmd (§3.2)."""
    READ = 0  # read config string
    TEST = 1  # test config string (exact match)
    TEST_PREFIX = 2  # test config string prefix
    SET = 3  # set config string (only if empty)
    FORCE_SET = 4  # force set config string


class MaskCommand(enum.IntEnum):
    """MAC Mask List MCmd (§3.3)."""
    READ = 0
    EDIT = 1


class MaskError(enum.IntEnum):
    """MAC Mask List MError (§3.3)."""
    NONE = 0
    UNSPECIFIED = 1
    BAD_DIRECTIVE = 2  # bad DCmd directive
    LIST_FULL = 3  # mask list full


class DirectiveCommand(enum.IntEnum):
    """MAC Mask List directive DCmd (§3.3)."""
    NONE = 0  # no directive (also the DCmd of every entry of a reply's list)
    ADD = 1  # add mac address to mask list
    DELETE = 2  # delete mac address from mask list


class ReserveCommand(enum.IntEnum):
    """Reserve / Release RCmd (§3.4)."""
    READ = 0  # read reserve list
    SET = 1  # set reserve list
    FORCE_SET = 2  # force set reserve list


# -- messages ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Header:
    """Ethernet addresses and the AoE common header (§2)."""
    dst: bytes
    src: bytes
    major: int  # shelf
    minor: int  # slot
    command: int  # Command (an int: unknown codes are decoded so they can be answered)
    tag: int
    flags: int = 0  # Flag bits
    error: int = 0  # Error
    version: int = VERSION

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _RESPONSE)


@dataclasses.dataclass(frozen=True)
class Ata:
    """Issue ATA Command arguments (§3.1) and the data that follows them."""
    aflags: int = 0
    feature: int = 0  # Err/Feature: the feature register in a request, error in a response
    count: int = 0  # Sector Count
    command: int = 0  # Cmd/Status: the ATA command in a request, its status in a response
    lba: int = 0  # 48 bits (LBA0 is the first byte on the wire)
    data: bytes = b""

    @property
    def extended(self) -> bool:
        return bool(self.aflags & _EXTENDED)

    @property
    def write(self) -> bool:
        return bool(self.aflags & _WRITE)

    @property
    def address(self) -> int:
        """The sector address the device uses: 48 bits with E, else 28 (LBA3's high nibble is
        the device/head register's other bits)."""
        return self.lba if self.extended else self.lba & 0x0FFFFFFF


@dataclasses.dataclass(frozen=True)
class Config:
    """Query Config Information arguments (§3.2)."""
    buffer_count: int = 0
    firmware: int = 0
    sectors: int = 0  # max sectors per ATA command
    aoe_version: int = VERSION
    ccmd: int = ConfigCommand.READ
    config: bytes = b""


@dataclasses.dataclass(frozen=True)
class Directive:
    dcmd: int
    mac: bytes


@dataclasses.dataclass(frozen=True)
class MacMask:
    """Mac Mask List arguments (§3.3)."""
    mcmd: int = MaskCommand.READ
    merror: int = MaskError.NONE
    directives: tuple[Directive, ...] = ()


@dataclasses.dataclass(frozen=True)
class Reserve:
    """Reserve / Release arguments (§3.4)."""
    rcmd: int = ReserveCommand.READ
    macs: tuple[bytes, ...] = ()


@dataclasses.dataclass(frozen=True)
class Unknown:
    """The arguments of a command code this codec does not know (answered with error 1)."""
    data: bytes = b""


Body = Ata | Config | MacMask | Reserve | Unknown


@dataclasses.dataclass(frozen=True)
class Frame:
    header: Header
    body: Body


# -- decoding ---------------------------------------------------------------------------------
def decode_header(data: bytes) -> Header:
    """The Ethernet and AoE headers only (what a target needs to decide whether a frame is for
    it before decoding the rest)."""
    if len(data) < HEADER_LEN:
        raise DecodeError(f"frame of {len(data)} bytes is shorter than the {HEADER_LEN}-byte "
                          "AoE header")
    dst, src, ethertype, verflags, error, major, minor, command, tag = HEADER.unpack_from(data)
    if ethertype != ETHERTYPE:
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not AoE (0x{ETHERTYPE:04x})")
    return Header(dst=dst, src=src, major=major, minor=minor, command=command, tag=tag,
                  flags=verflags & 0x0F, error=error, version=verflags >> 4)


def decode(data: bytes) -> Frame:
    """A whole frame. Trailing bytes past what the command uses are Ethernet padding (a
    60-byte minimum frame) and ignored, except for ATA data, which is kept whole: the sector
    count says how much of it a write uses."""
    header = decode_header(data)
    if header.version != VERSION:
        # the arguments of another version are not ours to read; the target answers error 5
        return Frame(header, Unknown(bytes(data[HEADER_LEN:])))
    args = memoryview(data)[HEADER_LEN:]
    command = header.command
    if command == Command.ATA:
        body: Body = _decode_ata(args)
    elif command == Command.QUERY_CONFIG:
        body = _decode_config(args)
    elif command == Command.MAC_MASK:
        body = _decode_mask(args)
    elif command == Command.RESERVE:
        body = _decode_reserve(args)
    else:
        body = Unknown(bytes(args))
    return Frame(header, body)


def _need(args: memoryview, size: int, what: str) -> None:
    if len(args) < size:
        raise DecodeError(f"{what} needs {size} bytes of arguments, the frame has {len(args)}")


def _decode_ata(args: memoryview) -> Ata:
    _need(args, ATA_ARGS.size, "ATA command")
    aflags, feature, count, command, lba = ATA_ARGS.unpack_from(args)
    return Ata(aflags=aflags, feature=feature, count=count, command=command,
               lba=int.from_bytes(lba, "little"), data=bytes(args[ATA_ARGS.size:]))


def _decode_config(args: memoryview) -> Config:
    _need(args, CFG_ARGS.size, "Query Config")
    bufcnt, firmware, sectors, verccmd, length = CFG_ARGS.unpack_from(args)
    if length > MAX_CONFIG:
        raise DecodeError(f"config string length {length} is over the {MAX_CONFIG}-byte limit")
    rest = args[CFG_ARGS.size:]
    if length > len(rest):
        raise DecodeError(f"config string length {length} runs past the frame "
                          f"({len(rest)} bytes follow the arguments)")
    return Config(buffer_count=bufcnt, firmware=firmware, sectors=sectors,
                  aoe_version=verccmd >> 4, ccmd=verccmd & 0x0F, config=bytes(rest[:length]))


def _decode_mask(args: memoryview) -> MacMask:
    _need(args, MASK_ARGS.size, "Mac Mask List")
    _reserved, mcmd, merror, count = MASK_ARGS.unpack_from(args)
    if MASK_ARGS.size + count * DIRECTIVE.size > len(args):
        raise DecodeError(f"Mac Mask List says {count} directives, the frame holds "
                          f"{(len(args) - MASK_ARGS.size) // DIRECTIVE.size}")
    directives = tuple(Directive(*DIRECTIVE.unpack_from(args, MASK_ARGS.size + i * DIRECTIVE.size))
                       for i in range(count))
    return MacMask(mcmd=mcmd, merror=merror, directives=directives)


def _decode_reserve(args: memoryview) -> Reserve:
    _need(args, RESERVE_ARGS.size, "Reserve/Release")
    rcmd, count = RESERVE_ARGS.unpack_from(args)
    if RESERVE_ARGS.size + count * 6 > len(args):
        raise DecodeError(f"Reserve/Release says {count} MAC addresses, the frame holds "
                          f"{(len(args) - RESERVE_ARGS.size) // 6}")
    base = RESERVE_ARGS.size
    return Reserve(rcmd=rcmd, macs=tuple(bytes(args[base + i * 6: base + i * 6 + 6])
                                         for i in range(count)))


# -- encoding ---------------------------------------------------------------------------------
def encode(frame: Frame) -> bytes:
    h = frame.header
    head = HEADER.pack(h.dst, h.src, ETHERTYPE, (h.version << 4) | (h.flags & 0x0F), h.error,
                       h.major, h.minor, h.command, h.tag)
    return head + encode_body(frame.body)


def encode_body(body: Body) -> bytes:
    if isinstance(body, Ata):
        return ATA_ARGS.pack(body.aflags, body.feature, body.count, body.command,
                             body.lba.to_bytes(6, "little")) + body.data
    if isinstance(body, Config):
        if len(body.config) > MAX_CONFIG:
            raise ValueError(f"config string of {len(body.config)} bytes is over {MAX_CONFIG}")
        return CFG_ARGS.pack(body.buffer_count, body.firmware, body.sectors,
                             (body.aoe_version << 4) | (body.ccmd & 0x0F),
                             len(body.config)) + body.config
    if isinstance(body, MacMask):
        return MASK_ARGS.pack(0, body.mcmd, body.merror, len(body.directives)) + b"".join(
            DIRECTIVE.pack(d.dcmd, d.mac) for d in body.directives)
    if isinstance(body, Reserve):
        return RESERVE_ARGS.pack(body.rcmd, len(body.macs)) + b"".join(body.macs)
    return body.data


# -- the read fast path -------------------------------------------------------------------------
# Most frames a booting host sends are ATA reads. These two read and write one whole ATA frame's
# headers with one struct call, without building a Frame (the full decode costs microseconds a
# frame). Their results are the same as decode() and encode() (tests/blockexport check it).
ATA_FRAME = struct.Struct("!6s6sHBBHBBIBBBB6s2x")  # Ethernet, AoE and ATA headers: 36 bytes
_REQUEST_V1 = VERSION << 4  # version 1, no flags: a request
_READS = frozenset({0x20, 0x24})  # READ SECTORS (EXT)
_WRITES = frozenset({0x30, 0x34})  # WRITE SECTORS (EXT)


def _peek(data: bytes, commands: frozenset[int]) -> tuple[bytes, int, int, int, int, int,
                                                         bytes] | None:
    if len(data) < ATA_HEADER_LEN:
        return None
    (_dst, src, ethertype, verflags, _error, major, minor, command, tag, aflags, _feature, count,
     ata, lba) = ATA_FRAME.unpack_from(data)
    if ethertype != ETHERTYPE or verflags != _REQUEST_V1 or command != 0 or ata not in commands:
        return None
    return src, major, minor, tag, aflags, count, lba


def peek_read(data: bytes) -> tuple[bytes, int, int, int, int, int, bytes] | None:
    """(src, major, minor, tag, aflags, count, lba as the 6 bytes on the wire) of an ATA
    READ SECTORS (EXT) request of version 1 without flags; None for any other frame (for
    :func:`decode`)."""
    return _peek(data, _READS)


def peek_write(data: bytes) -> tuple[bytes, int, int, int, int, int, bytes] | None:
    """As :func:`peek_read`, for an ATA WRITE SECTORS (EXT) request (its data follows the 36
    header bytes)."""
    return _peek(data, _WRITES)


def ata_response_head(dst: bytes, src: bytes, major: int, minor: int, tag: int, aflags: int,
                      error: int, count: int, status: int, lba: bytes) -> bytes:
    """The 36 header bytes of an ATA response without AoE error (its data follows)."""
    return ATA_FRAME.pack(dst, src, ETHERTYPE, _REQUEST_V1 | _RESPONSE, 0, major, minor,
                          Command.ATA, tag, aflags, error, count, status, lba)


def sectors_per_frame(mtu: int) -> int:
    """How many 512-byte sectors one ATA frame carries at this MTU (the Linux driver and vblade
    compute the same, (MTU - 36) / 512, counting the Ethernet header against the MTU too:
    1500 -> 2, 9000 -> 17)."""
    return max(0, (mtu - ATA_HEADER_LEN) // SECTOR)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
