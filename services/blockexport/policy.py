"""The AoE target's decisions: (export, its state, a request frame) -> new state and an outcome.

Pure: no sockets, files or clock. The server hands every decoded frame to :func:`decide`,
performs the I/O an outcome asks for (:class:`Read`, :class:`Write`, :class:`Flush`) on the
storage layer, and builds the reply with :func:`io_done` or :func:`io_failed`. Everything else is
a :class:`Reply` (a frame to send) or a :class:`Drop` (counted by reason, nothing sent).

What the target does (AoE specification r11; the numbers are its section numbers):

- It answers only frames addressed to its shelf.slot, or Query Config frames to the broadcast
  shelf 0xffff and/or slot 0xff (§2.4-2.5); every reply carries its own shelf.slot and the
  request's tag. Other commands sent to a broadcast address are dropped: an ATA write to "every
  disk" is never what an initiator means (neither Linux nor iPXE sends one).
- Query Config (§3.2): read, test (exact), test prefix (a mismatch is not answered), set (only
  when the config string is empty or already equal: else error 4, Config string present), force
  set; the reply carries the buffer count, firmware version, sectors per command (from the MTU)
  and the config string (at most 1,024 bytes).
- ATA (§3.1): IDENTIFY DEVICE, READ/WRITE SECTORS (EXT), FLUSH CACHE (EXT) (a real flush),
  CHECK POWER MODE (active); any other command is aborted in the ATA status (ERR, ABRT), never
  ignored. An address past the disk is ERR with IDNF; a sector count over what a frame carries
  at our MTU, or a write with less data than its count, is error 2 (Bad argument parameter).
- Mac Mask List (§3.3): while the list is not empty, frames from MACs not in it are dropped.
  Edits are atomic: a directive that fails (2 bad directive, 3 list full) leaves the list as it
  was and the reply echoes the request's directives with MError set; success replies with the
  list. Adding a MAC twice or deleting one not there is not an error.
- Reserve/Release (§3.4): while the reserve list is not empty, ATA commands other than IDENTIFY
  from MACs not in it get error 6 (Target is reserved); only a reserving MAC may set the list
  (force set may always); setting an empty list releases it.
- A version other than 1 gets error 5; an unknown command code error 1; responses (R flag) that
  reach us are dropped.
"""

from __future__ import annotations

import dataclasses

from services.blockexport.codec import (
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    MAX_CONFIG,
    SECTOR,
    VERSION,
    AFlag,
    Ata,
    AtaCommand,
    AtaError,
    AtaStatus,
    Body,
    Command,
    Config,
    ConfigCommand,
    Directive,
    DirectiveCommand,
    Error,
    Flag,
    Frame,
    Header,
    MacMask,
    MaskCommand,
    MaskError,
    Reserve,
    ReserveCommand,
    ata_response_head as encode_ata_head,
)

MAX_MASKS = 64  # Mac Mask List entries (64 * 8 bytes fit a 1500-byte frame's reply)
MAX_RESERVED = 64  # Reserve list entries
FIRMWARE = 0x0001  # Query Config firmware version
FIRMWARE_TEXT = "bootyrd1"  # IDENTIFY words 23-26 (8 characters)

# Plain ints for the per-frame path (IntFlag arithmetic costs microseconds per frame).
RESPONSE, RESPONSE_ERROR = int(Flag.RESPONSE), int(Flag.RESPONSE | Flag.ERROR)
ECHOED_AFLAGS = int(AFlag.EXTENDED | AFlag.DEVICE)
EXTENDED = int(AFlag.EXTENDED)
OK = int(AtaStatus.DRDY)
FAILED = int(AtaStatus.DRDY | AtaStatus.ERR)
FAULT = int(AtaStatus.DRDY | AtaStatus.DF | AtaStatus.ERR)
ABRT, IDNF, UNC = int(AtaError.ABRT), int(AtaError.IDNF), int(AtaError.UNC)

DROP_REASONS = ("response", "other_target", "masked", "broadcast_command", "config_mismatch")
REPLY_KINDS = ("config", "identify", "check_power", "read", "write", "flush", "unsupported",
               "past_end", "read_only", "io_error", "mask", "mask_error", "reserve", "error",
               "ata")  # Reply.kind
READS = (AtaCommand.READ_SECTORS, AtaCommand.READ_SECTORS_EXT)
WRITES = (AtaCommand.WRITE_SECTORS, AtaCommand.WRITE_SECTORS_EXT)
FLUSHES = (AtaCommand.FLUSH_CACHE, AtaCommand.FLUSH_CACHE_EXT)


@dataclasses.dataclass(frozen=True)
class Target:
    """What the policy knows of one export as it is served."""
    name: str
    shelf: int
    slot: int
    sectors: int  # disk size in 512-byte sectors
    mac: bytes  # the interface's MAC address (the replies' source)
    max_sectors: int  # sectors one ATA frame carries at the interface's MTU
    buffer_count: int = 64  # frames the target queues per initiator (Query Config)
    readonly: bool = False


@dataclasses.dataclass(frozen=True)
class State:
    """What AoE requests change: the config string, the mask list, the reserve list."""
    config: bytes = b""
    masks: tuple[bytes, ...] = ()
    reserved: tuple[bytes, ...] = ()


@dataclasses.dataclass(frozen=True)
class Reply:
    frame: Frame
    kind: str  # what it answers, for metrics and logs: config, identify, ata, mask, ... error


@dataclasses.dataclass(frozen=True)
class Drop:
    reason: str  # one of DROP_REASONS


@dataclasses.dataclass(frozen=True)
class Read:
    request: Frame
    offset: int
    length: int


@dataclasses.dataclass(frozen=True)
class Write:
    request: Frame | None  # None: taken by the fast path (aoe_writes.py), answered by io_head
    offset: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class Flush:
    request: Frame


Outcome = Reply | Drop | Read | Write | Flush
IO_KINDS = {Read: "read", Write: "write", Flush: "flush"}


# -- the decision ---------------------------------------------------------------------------
def decide(target: Target, state: State, frame: Frame) -> tuple[State, Outcome]:
    h = frame.header
    if h.is_response:
        return state, Drop("response")
    broadcast = h.major == BROADCAST_SHELF or h.minor == BROADCAST_SLOT
    if (h.major not in (target.shelf, BROADCAST_SHELF)
            or h.minor not in (target.slot, BROADCAST_SLOT)):
        return state, Drop("other_target")
    if state.masks and h.src not in state.masks:
        return state, Drop("masked")
    if broadcast and h.command != Command.QUERY_CONFIG:
        return state, Drop("broadcast_command")
    if h.version != VERSION:
        return state, error(target, frame, Error.UNSUPPORTED_VERSION)
    body = frame.body
    if h.command == Command.QUERY_CONFIG and isinstance(body, Config):
        return query_config(target, state, frame, body)
    if h.command == Command.ATA and isinstance(body, Ata):
        if (state.reserved and h.src not in state.reserved
                and body.command != AtaCommand.IDENTIFY_DEVICE):
            return state, error(target, frame, Error.TARGET_RESERVED)
        return state, ata(target, frame, body)
    if h.command == Command.MAC_MASK and isinstance(body, MacMask):
        return mask_list(target, state, frame, body)
    if h.command == Command.RESERVE and isinstance(body, Reserve):
        return reserve(target, state, frame, body)
    return state, error(target, frame, Error.UNRECOGNIZED_COMMAND)


def reply_header(target: Target, request: Header, error_code: int = 0) -> Header:
    return Header(dst=request.src, src=target.mac, major=target.shelf, minor=target.slot,
                  command=request.command, tag=request.tag,
                  flags=RESPONSE_ERROR if error_code else RESPONSE, error=error_code,
                  version=VERSION)


def error(target: Target, frame: Frame, code: Error, body: Body | None = None) -> Reply:
    """An AoE error reply (E flag and code) echoing the request's arguments."""
    return Reply(Frame(reply_header(target, frame.header, code),
                       frame.body if body is None else body), "error")


# -- Query Config (§3.2) --------------------------------------------------------------------
def config_body(target: Target, ccmd: int, config: bytes) -> Config:
    return Config(buffer_count=target.buffer_count, firmware=FIRMWARE,
                  sectors=min(target.max_sectors, 255), aoe_version=VERSION, ccmd=ccmd,
                  config=config)


def query_config(target: Target, state: State, frame: Frame,
                 body: Config) -> tuple[State, Outcome]:
    current = state.config
    ccmd = body.ccmd
    if ccmd == ConfigCommand.TEST and body.config != current:
        return state, Drop("config_mismatch")
    if ccmd == ConfigCommand.TEST_PREFIX and not current.startswith(body.config):
        return state, Drop("config_mismatch")
    if ccmd == ConfigCommand.SET:
        if current and current != body.config:
            return state, error(target, frame, Error.CONFIG_STRING_PRESENT,
                                config_body(target, ccmd, current))
        state = dataclasses.replace(state, config=body.config)
    elif ccmd == ConfigCommand.FORCE_SET:
        state = dataclasses.replace(state, config=body.config)
    elif ccmd not in (ConfigCommand.READ, ConfigCommand.TEST, ConfigCommand.TEST_PREFIX):
        return state, error(target, frame, Error.BAD_ARGUMENT)
    assert len(state.config) <= MAX_CONFIG  # the codec refuses longer ones
    return state, Reply(Frame(reply_header(target, frame.header),
                              config_body(target, ccmd, state.config)), "config")


# -- ATA (§3.1) -----------------------------------------------------------------------------
def ata_reply(target: Target, frame: Frame, status: int = OK, err: int = 0,
              data: bytes = b"", count: int | None = None, kind: str = "ata") -> Reply:
    req = frame.body
    assert isinstance(req, Ata)
    body = Ata(aflags=req.aflags & ECHOED_AFLAGS, feature=err,
               count=req.count if count is None else count, command=status, lba=req.lba,
               data=data)
    return Reply(Frame(reply_header(target, frame.header), body), kind)


def aborted(target: Target, frame: Frame, err: int = ABRT, kind: str = "ata") -> Reply:
    return ata_reply(target, frame, status=FAILED, err=err, kind=kind)


def ata(target: Target, frame: Frame, req: Ata) -> Outcome:
    command = req.command
    if command == AtaCommand.IDENTIFY_DEVICE:
        return ata_reply(target, frame, data=identify(target), kind="identify")
    if command == AtaCommand.CHECK_POWER_MODE:
        return ata_reply(target, frame, count=0xFF, kind="check_power")  # 0xFF: active or idle
    if command in FLUSHES:
        return Flush(frame)
    if command not in READS and command not in WRITES:
        return aborted(target, frame, kind="unsupported")
    count = req.count
    if count == 0 or count > target.max_sectors:  # 0 means 256 (65,536 with EXT): past a frame
        return error(target, frame, Error.BAD_ARGUMENT)
    lba = req.address
    if lba + count > target.sectors:
        return aborted(target, frame, err=IDNF, kind="past_end")
    if command in READS:
        return Read(frame, lba * SECTOR, count * SECTOR)
    if len(req.data) < count * SECTOR:
        return error(target, frame, Error.BAD_ARGUMENT)
    if target.readonly:
        return aborted(target, frame, kind="read_only")
    return Write(frame, lba * SECTOR, req.data[:count * SECTOR])


def io_done(target: Target, outcome: Read | Write | Flush, data: bytes = b"") -> Reply:
    """The reply to an I/O step the storage layer completed (``data``: what a read read)."""
    return ata_reply(target, outcome.request, data=data, kind=IO_KINDS[type(outcome)])


def direct_read(target: Target, state: State, src: bytes, major: int, minor: int,
                aflags: int, count: int, lba: int) -> tuple[int, int] | None:
    """The fast path's decision for an ATA READ request (:func:`codec.peek_read`): (byte
    offset, length) when :func:`decide` would make it a :class:`Read`; None when it decides
    anything else (the caller then takes the full path)."""
    if major != target.shelf or minor != target.slot:
        return None
    if (state.masks and src not in state.masks) or (state.reserved and src not in state.reserved):
        return None
    if count == 0 or count > target.max_sectors:
        return None
    address = lba if aflags & EXTENDED else lba & 0x0FFFFFFF
    if address + count > target.sectors:
        return None
    return address * SECTOR, count * SECTOR


def direct_write(target: Target, state: State, src: bytes, major: int, minor: int,
                 aflags: int, count: int, lba: int, data_length: int) -> tuple[int, int] | None:
    """The fast path's decision for an ATA WRITE request (:func:`codec.peek_write`;
    ``data_length``: the bytes after its 36 header bytes): (byte offset, length) when
    :func:`decide` would make it a :class:`Write` of those bytes; None when it decides anything
    else (the caller then takes the full path)."""
    step = direct_read(target, state, src, major, minor, aflags, count, lba)
    if step is None or data_length < step[1] or target.readonly:
        return None
    return step


def io_head(target: Target, src: bytes, tag: int, aflags: int, count: int, lba: bytes,
            kind: type, ok: bool) -> bytes:
    """The header bytes of :func:`io_done`'s reply (``ok``; a read's data follows them) or of
    :func:`io_failed`'s, for an I/O step of class ``kind`` (Read, Write, Flush) whose request's
    wire fields are given: the I/O thread answers a queued step without a Frame."""
    if ok:
        status, err = OK, 0
    elif kind is Read:
        status, err = FAILED, UNC
    else:
        status, err = FAULT, ABRT
    return encode_ata_head(src, target.mac, target.shelf, target.slot, tag,
                           aflags & ECHOED_AFLAGS, err, count, status, lba)


def read_done_head(target: Target, src: bytes, tag: int, aflags: int, count: int,
                   lba: bytes) -> bytes:
    """The header bytes of :func:`io_done`'s reply to a read that :func:`direct_read` allowed
    (the data read follows them)."""
    return encode_ata_head(src, target.mac, target.shelf, target.slot, tag,
                           aflags & ECHOED_AFLAGS, 0, count, OK, lba)


def io_failed(target: Target, outcome: Read | Write | Flush) -> Reply:
    """The reply to an I/O step that failed: UNC for a read, ABRT for a write or flush, with
    device fault (the Linux driver fails the request: status & 0xA9)."""
    if isinstance(outcome, Read):
        return aborted(target, outcome.request, err=UNC, kind="io_error")
    return ata_reply(target, outcome.request, status=FAULT, err=ABRT, kind="io_error")


def ata_string(text: str, length: int) -> bytes:
    """An IDENTIFY string: ASCII, space padded, each 16-bit word's two bytes swapped."""
    raw = text.encode("ascii", "replace")[:length].ljust(length, b" ")
    return bytes(raw[i ^ 1] for i in range(length))


def identify(target: Target) -> bytes:
    """IDENTIFY DEVICE data (512 bytes, ATA/ATAPI-7 word numbers)."""
    words = [0] * 256
    sectors = target.sectors
    cylinders = min(sectors // (16 * 63), 16383)
    words[0] = 0x0040  # fixed device
    words[1], words[3], words[6] = cylinders, 16, 63  # default CHS geometry
    words[47] = 0x8000  # READ/WRITE MULTIPLE: no sectors per interrupt
    words[49] = 0x0200  # LBA supported
    words[50] = 0x4000
    words[53] = 0x0001  # words 54-58 valid
    words[54], words[55], words[56] = cylinders, 16, 63  # current CHS geometry
    chs = cylinders * 16 * 63
    words[57], words[58] = chs & 0xFFFF, chs >> 16
    lba28 = min(sectors, 0x0FFFFFFF)
    words[60], words[61] = lba28 & 0xFFFF, lba28 >> 16  # LBA28 capacity (Linux w/o LBA48)
    words[80] = 0x00F0  # ATA/ATAPI-4 to -7
    words[82] = 0x4000  # no write cache (bit 5 clear): every answered write is durable
    words[83] = 0x7400  # FLUSH CACHE EXT (13), FLUSH CACHE (12), 48-bit addresses (10)
    words[84] = 0x4000
    words[85] = 0x4000  # enabled: as word 82
    words[86] = 0x3400  # enabled: as word 83 (Linux reads 83 | 86, iPXE 83 alone)
    words[87] = 0x4000
    for i in range(4):  # LBA48 capacity, words 100-103
        words[100 + i] = (sectors >> (16 * i)) & 0xFFFF
    data = bytearray(b"".join(w.to_bytes(2, "little") for w in words))
    data[20:40] = ata_string(f"{target.shelf}.{target.slot}:{target.name}", 20)  # words 10-19
    data[46:54] = ata_string(FIRMWARE_TEXT, 8)  # words 23-26
    data[54:94] = ata_string(f"bootyard AoE {target.name}", 40)  # words 27-46
    data[510] = 0xA5  # word 255: integrity word, checksum makes the byte sum 0
    data[511] = (-sum(data[:511])) & 0xFF
    return bytes(data)


# -- Mac Mask List (§3.3) --------------------------------------------------------------------
def mask_list(target: Target, state: State, frame: Frame,
              body: MacMask) -> tuple[State, Outcome]:
    if body.mcmd == MaskCommand.EDIT:
        masks = list(state.masks)
        failed = MaskError.NONE
        for directive in body.directives:
            if directive.dcmd == DirectiveCommand.NONE:
                continue
            if directive.dcmd == DirectiveCommand.ADD:
                if directive.mac in masks:
                    continue
                if len(masks) >= MAX_MASKS:
                    failed = MaskError.LIST_FULL
                    break
                masks.append(directive.mac)
            elif directive.dcmd == DirectiveCommand.DELETE:
                if directive.mac in masks:
                    masks.remove(directive.mac)
            else:
                failed = MaskError.BAD_DIRECTIVE
                break
        if failed:
            return state, Reply(Frame(reply_header(target, frame.header),
                                      dataclasses.replace(body, merror=failed)), "mask_error")
        state = dataclasses.replace(state, masks=tuple(masks))
    elif body.mcmd != MaskCommand.READ:
        return state, error(target, frame, Error.BAD_ARGUMENT)
    listed = tuple(Directive(DirectiveCommand.NONE, mac) for mac in state.masks)
    return state, Reply(Frame(reply_header(target, frame.header),
                              MacMask(mcmd=body.mcmd, merror=MaskError.NONE,
                                      directives=listed)), "mask")


# -- Reserve / Release (§3.4) ----------------------------------------------------------------
def reserve(target: Target, state: State, frame: Frame,
            body: Reserve) -> tuple[State, Outcome]:
    if body.rcmd in (ReserveCommand.SET, ReserveCommand.FORCE_SET):
        if (body.rcmd == ReserveCommand.SET and state.reserved
                and frame.header.src not in state.reserved):
            return state, error(target, frame, Error.TARGET_RESERVED,
                                Reserve(body.rcmd, state.reserved))
        macs = tuple(dict.fromkeys(body.macs))
        if len(macs) > MAX_RESERVED:
            return state, error(target, frame, Error.BAD_ARGUMENT)
        state = dataclasses.replace(state, reserved=macs)
    elif body.rcmd != ReserveCommand.READ:
        return state, error(target, frame, Error.BAD_ARGUMENT)
    return state, Reply(Frame(reply_header(target, frame.header),
                              Reserve(body.rcmd, state.reserved)), "reserve")
