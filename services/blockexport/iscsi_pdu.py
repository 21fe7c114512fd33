"""iSCSI PDUs (RFC 7143 section 11) <-> dataclasses. Pure: no sockets, no clock.

A PDU is a 48-byte Basic Header Segment (BHS), Additional Header Segments (AHS, 4-byte words,
``TotalAHSLength``), an optional header digest, a data segment padded to 4 bytes and an optional
data digest (CRC32C, section 13.1; both only once negotiated). :func:`frame_lengths` says how
long a PDU is from its BHS (the transport reads that much), :func:`decode` turns the bytes into
the dataclass of its opcode and raises only :class:`DecodeError` (or :class:`DigestError`, a
kind of it), :func:`encode` builds the bytes of a PDU the target sends.

Received (initiator opcodes, 11.1.1): NOP-Out, SCSI Command, Task Management Function Request,
Login Request, Text Request, SCSI Data-Out, Logout Request, SNACK Request. Sent (target
opcodes): NOP-In, SCSI Response, Task Management Function Response, Login Response, Text
Response, SCSI Data-In, Logout Response, Ready To Transfer (R2T), Asynchronous Message, Reject.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import NamedTuple

from crc32c import crc32c as _crc32c

BHS = 48
RESERVED_TAG = 0xFFFFFFFF  # 11.2.1.8/11.19: "no task" / "no reply wanted"
# The Residual Count is 32 bits (11.4.5): a larger residual (WRITE (16) of 2^32-1 blocks with
# a small expected length) is sent as the largest one, the overflow/underflow bit still set.
RESIDUAL_MAX = 0xFFFFFFFF


class DecodeError(ValueError):
    """The bytes are not a PDU we can read; ``reason`` is a short label for metrics."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class DigestError(DecodeError):
    """A header or data digest does not match (13.1): ``which`` is "header" or "data"."""

    def __init__(self, which: str) -> None:
        super().__init__(f"{which} digest mismatch", reason=f"{which}_digest")
        self.which = which


class Op(enum.IntEnum):
    """Opcodes (11.1.1.1)."""
    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TASK_MGMT_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK_REQUEST = 0x10
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TASK_MGMT_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    R2T = 0x31
    ASYNC_MESSAGE = 0x32
    REJECT = 0x3F


class RejectReason(enum.IntEnum):
    """Reject reasons (11.17.1)."""
    DATA_DIGEST = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OP_REJECT = 0x0A
    WAITING_FOR_LOGOUT = 0x0C


class Tmf(enum.IntEnum):
    """Task management functions (11.5.1)."""
    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TmfResponse(enum.IntEnum):
    """Task management responses (11.6.1)."""
    COMPLETE = 0
    NO_TASK = 1
    NO_LUN = 2
    STILL_ALLEGIANT = 3
    REASSIGN_UNSUPPORTED = 4
    NOT_SUPPORTED = 5
    AUTH_FAILED = 6
    REJECTED = 255


# -- received PDUs ------------------------------------------------------------------------------
# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made decoding
# a SCSI Command take 12 us instead of 5 (measured); nothing changes a PDU after decode.

@dataclasses.dataclass(slots=True)
class Pdu:
    """What every PDU has: its opcode, the I bit, the raw BHS (a Reject carries it back)."""
    op: int
    immediate: bool
    bhs: bytes


@dataclasses.dataclass(slots=True)
class NopOut(Pdu):
    lun: int
    itt: int  # 0xffffffff: no NOP-In wanted (an answer to ours, or a one-way ping)
    ttt: int  # ours when it answers our NOP-In, else 0xffffffff
    cmdsn: int
    expstatsn: int
    data: bytes


@dataclasses.dataclass(slots=True)
class ScsiCommand(Pdu):
    final: bool  # F: no unsolicited Data-Out follows
    read: bool  # R
    write: bool  # W
    attr: int  # task attributes
    lun: int
    itt: int
    edtl: int  # Expected Data Transfer Length
    cmdsn: int
    expstatsn: int
    cdb: bytes  # the 16 bytes of the BHS, longer with an Extended CDB AHS
    data: bytes  # immediate data


@dataclasses.dataclass(slots=True)
class TaskMgmtRequest(Pdu):
    function: int
    lun: int
    itt: int
    ref_itt: int  # Referenced Task Tag
    cmdsn: int
    expstatsn: int
    ref_cmdsn: int


@dataclasses.dataclass(slots=True)
class LoginRequest(Pdu):
    transit: bool  # T
    cont: bool  # C
    csg: int
    nsg: int
    version_max: int
    version_min: int
    isid: bytes  # 6 bytes
    tsih: int
    itt: int
    cid: int
    cmdsn: int
    expstatsn: int
    data: bytes


@dataclasses.dataclass(slots=True)
class TextRequest(Pdu):
    final: bool
    cont: bool
    lun: int
    itt: int
    ttt: int
    cmdsn: int
    expstatsn: int
    data: bytes


@dataclasses.dataclass(slots=True)
class DataOut(Pdu):
    final: bool
    lun: int
    itt: int
    ttt: int
    expstatsn: int
    datasn: int
    offset: int  # Buffer Offset
    data: bytes


@dataclasses.dataclass(slots=True)
class LogoutRequest(Pdu):
    reason: int  # 0 close the session, 1 close the connection, 2 remove it for recovery
    itt: int
    cid: int
    cmdsn: int
    expstatsn: int


@dataclasses.dataclass(slots=True)
class SnackRequest(Pdu):
    type: int
    itt: int


@dataclasses.dataclass(slots=True)
class Unknown(Pdu):
    """An opcode a target never receives (a target opcode, a vendor one): Rejected."""


_INITIATOR_OPS = {Op.NOP_OUT, Op.SCSI_COMMAND, Op.TASK_MGMT_REQUEST, Op.LOGIN_REQUEST,
                  Op.TEXT_REQUEST, Op.DATA_OUT, Op.LOGOUT_REQUEST, Op.SNACK_REQUEST}


# -- framing ------------------------------------------------------------------------------------

def pad4(n: int) -> int:
    return (n + 3) & ~3


def crc32c(data) -> int:
    return _crc32c(data)


def frame_lengths(bhs: bytes, header_digest: bool, data_digest: bool) -> tuple[int, int]:
    """(bytes after the BHS up to the data segment, bytes of the data segment with padding and
    digest) of the PDU whose 48-byte BHS is ``bhs``."""
    ahs = bhs[4] * 4
    dsl = int.from_bytes(bhs[5:8], "big")
    head = ahs + (4 if header_digest else 0)
    body = pad4(dsl) + (4 if data_digest and dsl else 0)
    return head, body


def data_length(bhs: bytes) -> int:
    return int.from_bytes(bhs[5:8], "big")


_U32 = struct.Struct(">I")
_LE32 = struct.Struct("<I")


def decode(pdu: bytes, header_digest: bool = False, data_digest: bool = False) -> Pdu:
    """The PDU in ``pdu`` (exactly one, as framed by :func:`frame_lengths`)."""
    if len(pdu) < BHS:
        raise DecodeError(f"{len(pdu)} bytes: shorter than a basic header segment (48)")
    bhs = bytes(pdu[:BHS])
    ahs_len = bhs[4] * 4
    dsl = int.from_bytes(bhs[5:8], "big")
    pos = BHS + ahs_len
    if header_digest:
        if len(pdu) < pos + 4:
            raise DecodeError("truncated before the header digest")
        if _LE32.unpack_from(pdu, pos)[0] != _crc32c(pdu[:pos]):
            raise DigestError("header")
        pos += 4
    need = pos + pad4(dsl) + (4 if data_digest and dsl else 0)
    if len(pdu) != need:
        raise DecodeError(f"{len(pdu)} bytes where the header says {need}")
    data = bytes(pdu[pos:pos + dsl])
    if data_digest and dsl:
        if _LE32.unpack_from(pdu, pos + pad4(dsl))[0] != _crc32c(pdu[pos:pos + pad4(dsl)]):
            raise DigestError("data")
    ahs = bytes(pdu[BHS:BHS + ahs_len])
    return _decode_bhs(bhs, ahs, data)


def _decode_bhs(bhs: bytes, ahs: bytes, data: bytes) -> Pdu:
    op = bhs[0] & 0x3F
    immediate = bool(bhs[0] & 0x40)
    flags = bhs[1]
    lun = int.from_bytes(bhs[8:16], "big")
    itt, f20, f24, f28, f32, f36, f40, f44 = struct.unpack_from(">8I", bhs, 16)
    if op == Op.SCSI_COMMAND:
        cdb = bhs[32:48]
        if ahs:
            cdb = _extended_cdb(ahs, cdb)
        return ScsiCommand(op, immediate, bhs, bool(flags & 0x80), bool(flags & 0x40),
                           bool(flags & 0x20), flags & 0x07, lun, itt, f20, f24, f28, cdb, data)
    if op == Op.DATA_OUT:
        return DataOut(op, immediate, bhs, bool(flags & 0x80), lun, itt, f20, f28, f36, f40,
                       data)
    if op == Op.NOP_OUT:
        return NopOut(op, immediate, bhs, lun, itt, f20, f24, f28, data)
    if op == Op.LOGIN_REQUEST:
        isid = bhs[8:14]
        tsih = int.from_bytes(bhs[14:16], "big")
        cid = f20 >> 16
        return LoginRequest(op, immediate, bhs, bool(flags & 0x80), bool(flags & 0x40),
                            (flags >> 2) & 3, flags & 3, bhs[2], bhs[3], isid, tsih, itt, cid,
                            f24, f28, data)
    if op == Op.TEXT_REQUEST:
        return TextRequest(op, immediate, bhs, bool(flags & 0x80), bool(flags & 0x40), lun,
                           itt, f20, f24, f28, data)
    if op == Op.TASK_MGMT_REQUEST:
        return TaskMgmtRequest(op, immediate, bhs, flags & 0x7F, lun, itt, f20, f24, f28, f32)
    if op == Op.LOGOUT_REQUEST:
        return LogoutRequest(op, immediate, bhs, flags & 0x7F, itt, f20 >> 16, f24, f28)
    if op == Op.SNACK_REQUEST:
        return SnackRequest(op, immediate, bhs, flags & 0x0F, itt)
    return Unknown(op, immediate, bhs)


def _extended_cdb(ahs: bytes, cdb: bytes) -> bytes:
    """The CDB with its Extended CDB AHS (11.2.1.3, type 1) appended; a bidirectional
    read-length AHS (type 2) is skipped."""
    pos = 0
    while pos + 3 <= len(ahs):
        length, kind = int.from_bytes(ahs[pos:pos + 2], "big"), ahs[pos + 2]
        if length == 0 or pos + 3 + length > len(ahs):
            raise DecodeError(f"AHS of type {kind} with length {length} does not fit",
                              reason="bad_ahs")
        if kind == 1:
            cdb = cdb + ahs[pos + 4:pos + 3 + length]
        pos += pad4(3 + length)
    return cdb


# -- sent PDUs ------------------------------------------------------------------------------------

class Numbers(NamedTuple):
    """StatSN, ExpCmdSN and MaxCmdSN as a PDU carries them (a tuple: made twice a command)."""
    statsn: int
    expcmdsn: int
    maxcmdsn: int


# TotalAHSLength (0: we send no AHS) and DataSegmentLength (< 2**24) as one 32-bit field
_BHS = struct.Struct(">BBBBIQIIIIIIII")


def _bhs(op: int, flags: int, b2: int = 0, b3: int = 0, dsl: int = 0, lun: int = 0,
         itt: int = RESERVED_TAG, f20: int = 0, f24: int = 0, f28: int = 0, f32: int = 0,
         f36: int = 0, f40: int = 0, f44: int = 0) -> bytes:
    return _BHS.pack(op, flags, b2, b3, dsl & 0xFFFFFF, lun, itt, f20, f24, f28, f32, f36, f40,
                     f44)


def frame(bhs: bytes, data=b"", header_digest: bool = False, data_digest: bool = False) -> bytes:
    """A whole PDU: the header (and its digest), the data padded to 4 bytes (and its digest)."""
    parts = [bhs]
    if header_digest:
        parts.append(_LE32.pack(_crc32c(bhs)))
    if data:
        padded = bytes(data) + bytes(pad4(len(data)) - len(data))
        parts.append(padded)
        if data_digest:
            parts.append(_LE32.pack(_crc32c(padded)))
    return b"".join(parts)


def nop_in(n: Numbers, itt: int, ttt: int, lun: int = 0, data: bytes = b"") -> bytes:
    """NOP-In (11.19): an answer (itt of the NOP-Out, ttt 0xffffffff) or our own ping
    (itt 0xffffffff; ttt ours if we want an answer)."""
    return _bhs(Op.NOP_IN, 0x80, dsl=len(data), lun=lun, itt=itt, f20=ttt, f24=n.statsn,
                f28=n.expcmdsn, f32=n.maxcmdsn)


def scsi_response(n: Numbers, itt: int, status: int, *, response: int = 0, overflow: int = 0,
                  underflow: int = 0, sense: bytes = b"", expdatasn: int = 0) -> tuple[bytes,
                                                                                       bytes]:
    """SCSI Response (11.4): (BHS, data segment: SenseLength + sense data, or nothing)."""
    flags = 0x80
    residual = 0
    if overflow:
        flags |= 0x04
        residual = min(overflow, RESIDUAL_MAX)
    elif underflow:
        flags |= 0x02
        residual = min(underflow, RESIDUAL_MAX)
    data = len(sense).to_bytes(2, "big") + sense if sense else b""
    return _bhs(Op.SCSI_RESPONSE, flags, response, status, dsl=len(data), itt=itt,
                f24=n.statsn, f28=n.expcmdsn, f32=n.maxcmdsn, f36=expdatasn,
                f44=residual), data


def data_in(n: Numbers | None, itt: int, lun: int, datasn: int, offset: int, length: int, *,
            final: bool, status: int | None = None, overflow: int = 0,
            underflow: int = 0) -> bytes:
    """SCSI Data-In (11.7) header for ``length`` bytes at ``offset``; with ``status`` (only on
    the last PDU, F set) it carries the command's status and residual (phase collapse)."""
    flags = 0x80 if final else 0
    residual = statsn = 0
    if status is not None:
        flags |= 0x81
        statsn = n.statsn
        if overflow:
            flags |= 0x04
            residual = min(overflow, RESIDUAL_MAX)
        elif underflow:
            flags |= 0x02
            residual = min(underflow, RESIDUAL_MAX)
    return _bhs(Op.DATA_IN, flags, 0, status or 0, dsl=length, lun=lun, itt=itt,
                f20=RESERVED_TAG, f24=statsn, f28=n.expcmdsn, f32=n.maxcmdsn, f36=datasn,
                f40=offset, f44=residual)


_DATA_IN = int(Op.DATA_IN)


def data_in_status_into(buf: bytearray, itt: int, lun: int, statsn: int, expcmdsn: int,
                        maxcmdsn: int, underflow: int) -> None:
    """The header of a READ's one Data-In with its GOOD status (phase collapse, as
    :func:`data_in` makes it with ``status=0``) packed into the first 48 bytes of ``buf``,
    whose rest is the data (whole blocks: no padding): one buffer for the whole PDU. The
    underflow is less than the 32-bit EDTL it comes from."""
    _BHS.pack_into(buf, 0, _DATA_IN, 0x83 if underflow else 0x81, 0, 0, len(buf) - BHS, lun,
                   itt, RESERVED_TAG, statsn, expcmdsn, maxcmdsn, 0, 0, underflow)


def r2t(n: Numbers, itt: int, lun: int, ttt: int, r2tsn: int, offset: int,
        length: int) -> bytes:
    """Ready To Transfer (11.8): send ``length`` bytes from ``offset`` with Data-Out ``ttt``."""
    return _bhs(Op.R2T, 0x80, lun=lun, itt=itt, f20=ttt, f24=n.statsn, f28=n.expcmdsn,
                f32=n.maxcmdsn, f36=r2tsn, f40=offset, f44=length)


def task_mgmt_response(n: Numbers, itt: int, response: int) -> bytes:
    """Task Management Function Response (11.6)."""
    return _bhs(Op.TASK_MGMT_RESPONSE, 0x80, response, itt=itt, f24=n.statsn, f28=n.expcmdsn,
                f32=n.maxcmdsn)


def login_response(n: Numbers, *, transit: bool, cont: bool, csg: int, nsg: int, isid: bytes,
                   tsih: int, itt: int, status_class: int = 0, status_detail: int = 0,
                   data: bytes = b"", version: int = 0) -> bytes:
    """Login Response (11.13) header (its data: the text keys)."""
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit
                                                                             else 0)
    lun_field = int.from_bytes(isid + tsih.to_bytes(2, "big"), "big")
    return _bhs(Op.LOGIN_RESPONSE, flags, version, version, dsl=len(data), lun=lun_field,
                itt=itt, f24=n.statsn, f28=n.expcmdsn, f32=n.maxcmdsn,
                f36=(status_class << 24) | (status_detail << 16))


def text_response(n: Numbers, itt: int, ttt: int, *, final: bool, cont: bool,
                  data: bytes) -> bytes:
    """Text Response (11.11) header."""
    flags = (0x80 if final else 0) | (0x40 if cont else 0)
    return _bhs(Op.TEXT_RESPONSE, flags, dsl=len(data), itt=itt, f20=ttt, f24=n.statsn,
                f28=n.expcmdsn, f32=n.maxcmdsn)


def logout_response(n: Numbers, itt: int, response: int = 0) -> bytes:
    """Logout Response (11.15); Time2Wait and Time2Retain 0 (error recovery level 0)."""
    return _bhs(Op.LOGOUT_RESPONSE, 0x80, response, itt=itt, f24=n.statsn, f28=n.expcmdsn,
                f32=n.maxcmdsn)


def reject(n: Numbers, reason: int, rejected_bhs: bytes, datasn: int = 0) -> tuple[bytes, bytes]:
    """Reject (11.17): (BHS, data segment: the rejected PDU's header)."""
    data = bytes(rejected_bhs[:BHS]).ljust(BHS, b"\0")
    return _bhs(Op.REJECT, 0x80, reason, dsl=len(data), itt=RESERVED_TAG, f24=n.statsn,
                f28=n.expcmdsn, f32=n.maxcmdsn, f36=datasn), data


def async_message(n: Numbers, event: int, *, lun: int = 0, param1: int = 0, param2: int = 0,
                  param3: int = 0) -> bytes:
    """Asynchronous Message (11.9): event 1 asks the initiator to log out within ``param3``
    seconds."""
    return _bhs(Op.ASYNC_MESSAGE, 0x80, dsl=0, lun=lun, itt=RESERVED_TAG, f24=n.statsn,
                f28=n.expcmdsn, f32=n.maxcmdsn, f36=(event << 24),
                f40=(param1 << 16) | param2, f44=param3 << 16)


def is_initiator_op(op: int) -> bool:
    return op in _INITIATOR_OPS


# -- text keys (section 6) -------------------------------------------------------------------

MAX_TEXT = 65536  # text of one login or text exchange we accept (several PDUs with C)


def parse_text(data: bytes) -> list[tuple[str, str]]:
    """``key=value`` pairs, each NUL-terminated (6.1). A pair without '=' or that is not UTF-8
    raises DecodeError; trailing NUL padding is ignored."""
    out = []
    for item in bytes(data).split(b"\0"):
        if not item:
            continue
        key, sep, value = item.partition(b"=")
        if not sep or not key:
            raise DecodeError(f"text key without '=': {item[:40]!r}", reason="bad_text")
        try:
            out.append((key.decode("utf-8"), value.decode("utf-8")))
        except UnicodeDecodeError:
            raise DecodeError(f"text key not UTF-8: {item[:40]!r}", reason="bad_text") from None
    return out


def format_text(pairs) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)
