"""TFTP packets (RFC 1350) with options (RFC 2347 OACK, 2348 blksize, 2349 timeout/tsize,
7440 windowsize): pure, synchronous, ``decode`` raises only :class:`DecodeError`.

Our own ``struct`` code: tftpy's packet classes raise UnicodeDecodeError, ValueError and
struct.error on malformed input (issue 7 lists the cases); they are used in the tests as an
independent encoder/decoder to cross-check this module, never on the serving path.

Leniency, each with its reason:

- Option names and the mode are case-insensitive (RFC 1350 §5, RFC 2347); we lower-case them.
- Unknown options are kept in ``Request.options`` (the session ignores them, RFC 2347).
- A value of a *known* option that is not a decimal number (``blksize=abc``) is a DecodeError:
  no client we know sends that, and guessing would hide an attack.
- Trailing bytes after the last NUL of a request (some PXE ROMs pad RRQs) are ignored.
- An ACK longer than 4 bytes is accepted (padding, as tftpy also allows); shorter is an error.
- File names, modes and option names/values must be 7-bit ASCII (RFC 1350: netascii).
"""

from __future__ import annotations

import dataclasses
import struct
from enum import IntEnum


class DecodeError(ValueError):
    """A datagram that is not a well-formed TFTP packet; the message says why."""


class Opcode(IntEnum):
    RRQ = 1    # RFC 1350 read request
    WRQ = 2    # RFC 1350 write request
    DATA = 3   # RFC 1350
    ACK = 4    # RFC 1350
    ERROR = 5  # RFC 1350
    OACK = 6   # RFC 2347 option acknowledgment


class ErrorCode(IntEnum):
    NOT_DEFINED = 0          # RFC 1350: see the message
    FILE_NOT_FOUND = 1       # RFC 1350
    ACCESS_VIOLATION = 2     # RFC 1350
    DISK_FULL = 3            # RFC 1350
    ILLEGAL_OPERATION = 4    # RFC 1350
    UNKNOWN_TID = 5          # RFC 1350: packet from a port that is not the transfer's peer
    FILE_EXISTS = 6          # RFC 1350
    NO_SUCH_USER = 7         # RFC 1350
    OPTION_REFUSED = 8       # RFC 2347: option negotiation failed


# Option names (RFC 2347 §Option Format), lower case.
BLKSIZE = "blksize"        # RFC 2348: 8..65464 octets
TIMEOUT = "timeout"        # RFC 2349: 1..255 seconds
TSIZE = "tsize"            # RFC 2349: transfer size in octets
WINDOWSIZE = "windowsize"  # RFC 7440: 1..65535 blocks
NUMERIC_OPTIONS = frozenset({BLKSIZE, TIMEOUT, TSIZE, WINDOWSIZE})
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464
MAX_DIGITS = 20  # a longer "number" is an attack, not a size


@dataclasses.dataclass(frozen=True)
class Request:
    """RRQ or WRQ (RFC 1350 §5) with RFC 2347 options."""

    opcode: Opcode           # RRQ or WRQ
    filename: str            # ASCII, as sent (the path sanitiser judges it)
    mode: str                # lower-cased: "octet", "netascii", "mail", or anything sent
    options: tuple[tuple[str, str], ...] = ()  # (lower-cased name, value) in the order sent

    def option(self, name: str) -> str | None:
        for key, value in self.options:
            if key == name:
                return value
        return None

    def number(self, name: str) -> int | None:
        value = self.option(name)
        return None if value is None else int(value)


@dataclasses.dataclass(frozen=True)
class Data:
    block: int      # RFC 1350 block number, 16 bits (wraps to 0 after 65535)
    data: bytes     # 0..blksize octets; shorter than blksize ends the transfer


@dataclasses.dataclass(frozen=True)
class Ack:
    block: int      # RFC 1350 block number acknowledged (0 acknowledges an OACK, RFC 2347)


@dataclasses.dataclass(frozen=True)
class Error:
    code: int       # RFC 1350 ErrorCode (kept as int: peers send codes beyond 8)
    message: str    # RFC 1350 ErrMsg


@dataclasses.dataclass(frozen=True)
class OAck:
    options: tuple[tuple[str, str], ...]  # RFC 2347 accepted options and their values


Message = Request | Data | Ack | Error | OAck
# (opcode, block or error code): the 4-octet header of DATA, ACK and ERROR (RFC 1350). The one
# definition: the session and the transport frame the per-block DATA and ACK with HEADER.pack
# (services/tftp/pump.py frames the same 4 octets in C)
HEADER = struct.Struct("!HH")


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not ASCII") from None


def _strings(body: bytes) -> list[bytes]:
    """NUL-terminated strings; bytes after the last NUL are ignored (PXE ROM padding)."""
    parts = body.split(b"\x00")
    return parts[:-1]


def _options(strings: list[bytes], what: str) -> tuple[tuple[str, str], ...]:
    if len(strings) % 2:
        raise DecodeError(f"{what}: option {strings[-1][:32]!r} has no value")
    out = []
    seen = set()
    for i in range(0, len(strings), 2):
        name = _ascii(strings[i], "option name").lower()
        value = _ascii(strings[i + 1], f"value of option {name!r}")
        if not name:
            raise DecodeError(f"{what}: empty option name")
        if name in NUMERIC_OPTIONS:
            if not value.isdigit() or len(value) > MAX_DIGITS:  # isdigit on ASCII: 0-9 only
                raise DecodeError(f"{what}: option {name} needs a decimal number, got {value[:32]!r}")
        if name in seen:
            raise DecodeError(f"{what}: option {name} given twice")
        seen.add(name)
        out.append((name, value))
    return tuple(out)


def decode(datagram: bytes) -> Message:
    """Decode one datagram; raises only DecodeError."""
    if len(datagram) < 4:
        raise DecodeError(f"datagram of {len(datagram)} bytes is shorter than any TFTP packet")
    opcode, second = HEADER.unpack_from(datagram)
    if opcode == Opcode.ACK:
        return Ack(second)
    if opcode == Opcode.DATA:
        return Data(second, bytes(datagram[4:]))
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        strings = _strings(bytes(datagram[2:]))
        if len(strings) < 2:
            raise DecodeError("request without a NUL-terminated file name and mode")
        filename = _ascii(strings[0], "file name")
        if not filename:
            raise DecodeError("request with an empty file name")
        mode = _ascii(strings[1], "mode").lower()
        return Request(Opcode(opcode), filename, mode, _options(strings[2:], "request"))
    if opcode == Opcode.ERROR:
        raw = bytes(datagram[4:])
        message = raw.split(b"\x00", 1)[0].decode("ascii", "replace")
        return Error(second, message)
    if opcode == Opcode.OACK:
        options = _options(_strings(bytes(datagram[2:])), "OACK")
        if not options:  # RFC 2347: an OACK acknowledges at least one option
            raise DecodeError("OACK without options")
        return OAck(options)
    raise DecodeError(f"unknown opcode {opcode}")


def _cstring(text: str) -> bytes:
    raw = text.encode("ascii")
    if b"\x00" in raw:
        raise ValueError("NUL inside a TFTP string")
    return raw + b"\x00"


def encode(message: Message) -> bytes:
    if isinstance(message, Data):
        return HEADER.pack(Opcode.DATA, message.block) + message.data
    if isinstance(message, Ack):
        return HEADER.pack(Opcode.ACK, message.block)
    if isinstance(message, Error):
        return HEADER.pack(Opcode.ERROR, message.code) + _cstring(message.message)
    if isinstance(message, OAck):
        body = b"".join(_cstring(k) + _cstring(v) for k, v in message.options)
        return struct.pack("!H", Opcode.OACK) + body
    if isinstance(message, Request):
        body = _cstring(message.filename) + _cstring(message.mode)
        body += b"".join(_cstring(k) + _cstring(v) for k, v in message.options)
        return struct.pack("!H", message.opcode) + body
    raise TypeError(f"cannot encode {type(message).__name__}")


def error(code: ErrorCode, message: str) -> bytes:
    return encode(Error(int(code), message))
