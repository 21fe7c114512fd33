"""DHCPv4 wire format (RFC 2131 header, RFC 2132 options, RFC 3396 long options): pure code.

``decode(data) -> Message`` raises only :class:`DecodeError`; ``encode(msg) -> bytes`` builds a
packet. No sockets, clock, logging or settings here.

Options are kept as an ordered mapping ``{code: value bytes}``. Decoding follows RFC 3396: every
instance of one code, in the options field, then ``file``, then ``sname`` (when option 52 says
they are overloaded), is concatenated into one value. Encoding splits values longer than 255
bytes into consecutive instances and, when the options do not fit the client's maximum message
size, overflows them into ``file`` and ``sname`` with option 52.
"""

from __future__ import annotations

import dataclasses
import enum
import socket
import struct
from typing import Final

MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 §3, 99.130.83.99
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # RFC 2131 §2, 236 bytes
HEADER_TO_CHADDR = struct.Struct("!BBBBIHH4s4s4s4s16s")  # the same, op .. chaddr (44 bytes)
HEADER_LEN = HEADER.size
MIN_LEN = HEADER_LEN + len(MAGIC_COOKIE)
BOOTP_MIN_LEN = 300  # RFC 1542 §2.1: some relays and clients drop shorter BOOTP messages
DEFAULT_MAX_LEN = 576  # RFC 2131 §2: every client accepts at least 576-byte IP datagrams
IP_UDP_OVERHEAD = 28
FLAG_BROADCAST = 0x8000  # RFC 2131 §2, flags field
ZERO_IP = "0.0.0.0"


class DecodeError(ValueError):
    """The bytes are not a DHCP message we can read; the message says why."""


class TooBig(ValueError):
    """The options do not fit the client's maximum message size, even spread over ``file`` and
    ``sname`` (option 52): the message cannot be sent as it is."""


class Op(enum.IntEnum):  # RFC 2131 §2 'op'
    BOOTREQUEST = 1
    BOOTREPLY = 2


class MessageType(enum.IntEnum):  # RFC 2132 §9.6, option 53
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(enum.IntEnum):
    PAD = 0  # RFC 2132 §3.1
    SUBNET_MASK = 1  # §3.3
    ROUTER = 3  # §3.5
    DNS_SERVERS = 6  # §3.8
    HOSTNAME = 12  # §3.14
    DOMAIN_NAME = 15  # §3.17
    BROADCAST_ADDRESS = 28  # §5.3
    VENDOR_SPECIFIC = 43  # §8.4 (PXE: RFC 4578 / PXE 2.1 spec)
    REQUESTED_IP = 50  # §9.1
    LEASE_TIME = 51  # §9.2
    OVERLOAD = 52  # §9.3
    MESSAGE_TYPE = 53  # §9.6
    SERVER_ID = 54  # §9.7
    PARAMETER_REQUEST_LIST = 55  # §9.8
    MESSAGE = 56  # §9.9
    MAX_MESSAGE_SIZE = 57  # §9.10
    RENEWAL_TIME = 58  # §9.11
    REBINDING_TIME = 59  # §9.12
    VENDOR_CLASS_ID = 60  # §9.13
    CLIENT_ID = 61  # §9.14
    TFTP_SERVER_NAME = 66  # §9.4
    BOOTFILE_NAME = 67  # §9.5
    USER_CLASS = 77  # RFC 3004
    RELAY_AGENT_INFO = 82  # RFC 3046
    CLIENT_SYSTEM_ARCH = 93  # RFC 4578 §2.1
    CLIENT_NDI = 94  # RFC 4578 §2.2
    CLIENT_UUID = 97  # RFC 4578 §2.3
    IPXE_ENCAP = 175  # iPXE's encapsulated options (sent only by iPXE)
    END = 255  # RFC 2132 §3.2


# The codes the per-packet path compares and looks up, as plain ints from the enums above (which
# stay their names): compiled, an IntEnum member is a Python attribute lookup, and a slower
# comparison and dict key, where a Final int is a native one (docs/benchmarks.md, DHCP, eighth
# round). The rest of the code uses the enums.
BOOTREQUEST: Final = int(Op.BOOTREQUEST)
BOOTREPLY: Final = int(Op.BOOTREPLY)
DISCOVER: Final = int(MessageType.DISCOVER)
OFFER: Final = int(MessageType.OFFER)
REQUEST: Final = int(MessageType.REQUEST)
DECLINE: Final = int(MessageType.DECLINE)
ACK: Final = int(MessageType.ACK)
NAK: Final = int(MessageType.NAK)
RELEASE: Final = int(MessageType.RELEASE)
INFORM: Final = int(MessageType.INFORM)
OPT_HOSTNAME: Final = int(Opt.HOSTNAME)
OPT_REQUESTED_IP: Final = int(Opt.REQUESTED_IP)
OPT_SERVER_ID: Final = int(Opt.SERVER_ID)
OPT_PARAMETER_REQUEST_LIST: Final = int(Opt.PARAMETER_REQUEST_LIST)
OPT_MAX_MESSAGE_SIZE: Final = int(Opt.MAX_MESSAGE_SIZE)
OPT_VENDOR_CLASS_ID: Final = int(Opt.VENDOR_CLASS_ID)
OPT_CLIENT_ID: Final = int(Opt.CLIENT_ID)
OPT_BOOTFILE_NAME: Final = int(Opt.BOOTFILE_NAME)
OPT_USER_CLASS: Final = int(Opt.USER_CLASS)
OPT_RELAY_AGENT_INFO: Final = int(Opt.RELAY_AGENT_INFO)
OPT_CLIENT_SYSTEM_ARCH: Final = int(Opt.CLIENT_SYSTEM_ARCH)
OPT_IPXE_ENCAP: Final = int(Opt.IPXE_ENCAP)


@dataclasses.dataclass(slots=True)
class Message:
    """One DHCP message. Not frozen (a frozen 15-field dataclass costs ~2.5 us to build, four
    times per exchange), but treated as immutable: nothing changes a message once built."""

    op: int = Op.BOOTREQUEST  # 'op'
    htype: int = 1  # 'htype', 1 = Ethernet
    hlen: int = 6  # 'hlen'
    hops: int = 0  # 'hops', incremented by relays
    xid: int = 0  # 'xid', transaction id chosen by the client
    secs: int = 0  # 'secs', seconds since the client began
    flags: int = 0  # 'flags', bit 15 = BROADCAST
    ciaddr: str = ZERO_IP  # 'ciaddr', client address (BOUND, RENEW, REBIND)
    yiaddr: str = ZERO_IP  # 'yiaddr', 'your' address given by the server
    siaddr: str = ZERO_IP  # 'siaddr', next server (TFTP)
    giaddr: str = ZERO_IP  # 'giaddr', relay agent address
    chaddr: bytes = bytes(16)  # 'chaddr', client hardware address (16 bytes)
    sname: bytes = b""  # 'sname', server host name (unless overloaded)
    file: bytes = b""  # 'file', boot file name (unless overloaded)
    options: dict[int, bytes] = dataclasses.field(default_factory=dict)  # a dict: native lookups

    # Written out, not the one @dataclass makes: a compiled class calls its own __init__
    # natively, where the generated one is interpreted Python (~5,000 instructions a call,
    # docs/benchmarks.md "Seventh round"). The same fields, order and defaults.
    def __init__(self, op: int = Op.BOOTREQUEST, htype: int = 1, hlen: int = 6, hops: int = 0,
                 xid: int = 0, secs: int = 0, flags: int = 0, ciaddr: str = ZERO_IP,
                 yiaddr: str = ZERO_IP, siaddr: str = ZERO_IP, giaddr: str = ZERO_IP,
                 chaddr: bytes = bytes(16), sname: bytes = b"", file: bytes = b"",
                 options: dict[int, bytes] | None = None) -> None:
        self.op = op
        self.htype = htype
        self.hlen = hlen
        self.hops = hops
        self.xid = xid
        self.secs = secs
        self.flags = flags
        self.ciaddr = ciaddr
        self.yiaddr = yiaddr
        self.siaddr = siaddr
        self.giaddr = giaddr
        self.chaddr = chaddr
        self.sname = sname
        self.file = file
        self.options = {} if options is None else options

    # -- convenient readings of common options (None when absent or unreadable) ----------------
    @property
    def message_type(self) -> int | None:
        value = self.options.get(53)  # Opt.MESSAGE_TYPE (a literal: read several times a packet)
        return value[0] if value and len(value) == 1 else None

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    @property
    def mac(self) -> bytes:
        return self.chaddr[: self.hlen if 0 < self.hlen <= 16 else 6]

    def ip_option(self, code: int) -> str | None:
        value = self.options.get(code)
        return dotted(value) if value is not None and len(value) == 4 else None

    def text_option(self, code: int) -> str | None:
        value = self.options.get(code)
        return None if value is None else value.rstrip(b"\0").decode("utf-8", "replace")

    @property
    def client_arches(self) -> tuple[int, ...]:
        """Option 93 (RFC 4578): a list of 16-bit architecture types."""
        value = self.options.get(OPT_CLIENT_SYSTEM_ARCH)
        if not value:
            return ()
        return tuple(int.from_bytes(value[i:i + 2], "big") for i in range(0, len(value) - 1, 2))

    @property
    def user_classes(self) -> tuple[bytes, ...]:
        """Option 77: RFC 3004 length-prefixed items; iPXE and some firmware send a bare string,
        which is read as one item when the bytes do not parse as RFC 3004 items."""
        value = self.options.get(OPT_USER_CLASS)
        if not value:
            return ()
        items, i = [], 0
        while i < len(value):
            n = value[i]
            if n == 0 or i + 1 + n > len(value):
                return (value,)
            items.append(value[i + 1:i + 1 + n])
            i += 1 + n
        return tuple(items)


_ZERO_RAW = bytes(4)


# each octet's text: dotted() without inet_ntoa, which formats with glibc's sprintf (~1,800
# instructions a call from the compiled path, ~250 this way: docs/benchmarks.md, DHCP, eighth
# round)
_OCTETS: Final = tuple(str(n) for n in range(256))


def dotted(raw: bytes) -> str:
    """``socket.inet_ntoa`` of a 4-byte address (the same text: tests/dhcp/test_dhcp_codec.py)."""
    if len(raw) != 4:
        raise ValueError(f"an IPv4 address is 4 bytes, not {len(raw)}")
    return f"{_OCTETS[raw[0]]}.{_OCTETS[raw[1]]}.{_OCTETS[raw[2]]}.{_OCTETS[raw[3]]}"


def _ntoa(raw: bytes) -> str:
    return ZERO_IP if raw == _ZERO_RAW else dotted(raw)


_ZERO_NAMES = bytes(64 + 128)  # sname and file both empty: the common request
_RELAYS: dict[bytes, str] = {}  # giaddr's text per address: a segment has a handful of relays
RELAYS_KEPT = 256


def _giaddr(raw: bytes) -> str:
    """``_ntoa`` of a giaddr, remembered (a few relays send every relayed packet)."""
    if raw == _ZERO_RAW:
        return ZERO_IP
    text = _RELAYS.get(raw)
    if text is None:
        if len(_RELAYS) >= RELAYS_KEPT:
            _RELAYS.clear()
        text = _RELAYS[raw] = dotted(raw)
    return text


def chaddr_mac(chaddr: bytes) -> str:
    """The client's MAC from a chaddr's first six bytes, in shared.addresses' canonical form
    (``52:54:00:ab:cd:ef``, as normalise_mac spells it: a test checks they agree). Here, in the
    compiled packet path, not in shared/: a call from compiled code into interpreted code costs
    ~2,000 instructions before it does anything (docs/benchmarks.md, DHCP, eighth round)."""
    if len(chaddr) < 6:
        raise DecodeError(f"hardware address is {len(chaddr)} bytes, a MAC needs 6")
    return chaddr[:6].hex(":")


def client_identity(htype: int, hlen: int, chaddr: bytes, client_id: bytes | None,
                    mac: str = "") -> str:
    """The client identity a lease belongs to (RFC 2131 §4.2; shared/leases.py stores leases
    by it): option 61 (``client_id``) when present, else htype, hlen and chaddr. An Ethernet
    client (htype 1, hlen 6) without option 61, or whose option 61 is its own Ethernet address
    (type 1, RFC 2132 §9.14), is its canonical MAC, as leases recorded before identities were
    kept are; other identities are ``id:<option 61 in hex>`` or
    ``hw:<htype>:<chaddr[:hlen] in hex>``. ``mac``: ``chaddr_mac(chaddr)`` when the caller has
    it (the Ethernet identity is that text, not made again)."""
    hardware = chaddr[:hlen] if 0 <= hlen <= 16 else chaddr
    ethernet = htype == 1 and hlen == 6
    if client_id is None:
        if ethernet:
            return mac or hardware.hex(":")
        return f"hw:{htype}:{hardware.hex()}"
    if ethernet and client_id == b"\x01" + hardware:
        return mac or hardware.hex(":")
    return f"id:{client_id.hex()}"


def _parse_options(data: bytes, start: int, end: int, out: dict[int, bytes], where: str,
                   allow_missing_end: bool) -> None:
    """Parse options from ``data[start:end]`` into ``out``, concatenating repeats (RFC 3396)."""
    i = start
    while i < end:
        code = data[i]
        if code == 0:  # pad
            i += 1
            continue
        if code == 255:  # end
            return
        if i + 1 >= end:
            raise DecodeError(f"option {code} in {where} has no length byte")
        length = data[i + 1]
        stop = i + 2 + length
        if stop > end:
            raise DecodeError(f"option {code} in {where} claims {length} bytes, "
                              f"{end - i - 2} left")
        value = data[i + 2:stop]
        previous = out.get(code)
        out[code] = value if previous is None else previous + value
        i = stop
    if not allow_missing_end:
        raise DecodeError(f"{where} field overloaded but has no end option")


def decode(data: bytes) -> Message:
    """Read one DHCP message; raise DecodeError if it is not one."""
    if len(data) < MIN_LEN:
        raise DecodeError(f"{len(data)} bytes is shorter than a DHCP message ({MIN_LEN})")
    # sname and file are read only when they hold something (most requests leave them zero).
    # The fields by index, as HEADER_TO_CHADDR.unpack_from would give them: compiled, these
    # are native operations, where unpack_from is a Python call and a tuple of objects.
    op = data[0]
    htype = data[1]
    hlen = data[2]
    hops = data[3]
    xid = data[4] << 24 | data[5] << 16 | data[6] << 8 | data[7]
    secs = data[8] << 8 | data[9]
    flags = data[10] << 8 | data[11]
    ciaddr = data[12:16]
    yiaddr = data[16:20]
    siaddr = data[20:24]
    giaddr = data[24:28]
    chaddr = data[28:44]
    if op not in (1, 2):
        raise DecodeError(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if data[HEADER_LEN:MIN_LEN] != MAGIC_COOKIE:
        raise DecodeError("no DHCP magic cookie (a plain BOOTP message?)")
    if data[44:HEADER_LEN] == _ZERO_NAMES:
        sname = file = b""
    else:
        sname, file = data[44:108].rstrip(b"\0"), data[108:HEADER_LEN].rstrip(b"\0")
    options: dict[int, bytes] = {}
    # Many PXE ROMs and some embedded stacks omit the end option when the packet ends exactly
    # after the last option, so a missing end in the options field is accepted.
    _parse_options(data, MIN_LEN, len(data), options, "options", True)
    overload = options.get(52)  # Opt.OVERLOAD (literals here: looked up per packet otherwise)
    if overload is not None:
        del options[52]
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DecodeError(f"option 52 (overload) has invalid value {overload.hex()}")
        # RFC 3396 §5: options field, then file, then sname. Option 52 inside them is ignored.
        if overload[0] & 1:
            _parse_options(data, 108, 236, options, "file", True)
            file = b""
        if overload[0] & 2:
            _parse_options(data, 44, 108, options, "sname", True)
            sname = b""
        options.pop(52, None)
    return Message(op, htype, hlen, hops, xid, secs, flags, _ntoa(ciaddr), _ntoa(yiaddr),
                   _ntoa(siaddr), _giaddr(giaddr), chaddr, sname, file, options)


def _option_bytes(code: int, value: bytes) -> bytes:
    if not value:
        return bytes((code, 0))
    parts = []
    for i in range(0, len(value), 255):  # RFC 3396: split long values into instances
        chunk = value[i:i + 255]
        parts.append(bytes((code, len(chunk))) + chunk)
    return b"".join(parts)


_NOT_ENCODED = frozenset((Opt.MESSAGE_TYPE, Opt.OVERLOAD, Opt.PAD, Opt.END))


def encode(msg: Message, max_size: int | None = None) -> bytes:
    """The packet for ``msg``. ``max_size`` is the largest DHCP message (UDP payload) the client
    accepts; options that do not fit overflow into ``file`` then ``sname`` (option 52), and
    :class:`TooBig` is raised when they do not fit even so."""
    if len(msg.sname) > 64 or len(msg.file) > 128 or len(msg.chaddr) > 16:
        raise ValueError("sname is at most 64 bytes, file 128, chaddr 16")
    limit = max(max_size or DEFAULT_MAX_LEN - IP_UDP_OVERHEAD, DEFAULT_MAX_LEN - IP_UDP_OVERHEAD)
    options = msg.options
    encoded = []
    mtype = options.get(Opt.MESSAGE_TYPE)
    if mtype is not None:
        # Message type first (RFC 2131 does not require it, but some PXE ROMs only look there).
        encoded.append(_option_bytes(Opt.MESSAGE_TYPE, mtype))
    for code, value in options.items():
        if code in _NOT_ENCODED:
            continue
        n = len(value)
        encoded.append(bytes((code, n)) + value if 0 < n < 256 else _option_bytes(code, value))
    body = b"".join(encoded)
    sname, file = msg.sname, msg.file
    if MIN_LEN + len(body) + 1 > limit:
        body, sname, file = _overload(encoded, limit, msg)
    header = HEADER.pack(
        msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags,
        ip_bytes(msg.ciaddr), ip_bytes(msg.yiaddr), ip_bytes(msg.siaddr), ip_bytes(msg.giaddr),
        msg.chaddr, sname, file)
    packet = header + MAGIC_COOKIE + body + b"\xff"
    if len(packet) < BOOTP_MIN_LEN:
        packet += bytes(BOOTP_MIN_LEN - len(packet))
    return packet


def _overload(encoded: list[bytes], limit: int, msg: Message) -> tuple[bytes, bytes, bytes]:
    """Spread whole option instances over options, file (if free) and sname (if free)."""
    room_main = limit - MIN_LEN - 1 - 3  # end option and the option 52 itself
    areas = [bytearray()]
    rooms = [room_main]
    kinds = []  # overload bit of each extra area: 1 = file, 2 = sname (RFC 2132 §9.3)
    if not msg.file:
        areas.append(bytearray())
        rooms.append(128 - 1)
        kinds.append(1)
    if not msg.sname:
        areas.append(bytearray())
        rooms.append(64 - 1)
        kinds.append(2)
    pieces: list[bytes] = []
    for item in encoded:  # split into single instances so each fits one area
        i = 0
        while i < len(item):
            n = item[i + 1]
            pieces.append(item[i:i + 2 + n])
            i += 2 + n
    area = 0
    for piece in pieces:
        while area < len(areas) and len(areas[area]) + len(piece) > rooms[area]:
            area += 1
        if area == len(areas):
            raise TooBig(f"options do not fit {limit} bytes (the client's maximum message size)")
        areas[area] += piece
    main = bytes(areas[0])
    extra = dict(zip(kinds, areas[1:]))
    used = sum(bit for bit, area in extra.items() if area)
    if not used:
        return main, msg.sname, msg.file
    main = bytes((Opt.OVERLOAD, 1, used)) + main
    file = bytes(extra[1]) + b"\xff" if used & 1 else msg.file
    sname = bytes(extra[2]) + b"\xff" if used & 2 else msg.sname
    return main, sname, file


_ADDRESS_BYTES: dict[str, bytes] = {}  # ip_bytes' answers, remembered (ADDRESSES_KEPT)
ADDRESSES_KEPT = 4096


def ip_bytes(ip: str) -> bytes:
    """``socket.inet_aton`` of an address, remembered: the ACK gives the address its OFFER gave
    a moment before (inet_aton from the compiled path: ~2,000 instructions a call)."""
    if ip == ZERO_IP:
        return _ZERO_RAW
    raw = _ADDRESS_BYTES.get(ip)
    if raw is None:
        if len(_ADDRESS_BYTES) >= ADDRESSES_KEPT:
            _ADDRESS_BYTES.clear()
        raw = _ADDRESS_BYTES[ip] = socket.inet_aton(ip)
    return raw


_RELAY_BYTES: dict[str, bytes] = {}  # giaddr's bytes per address (see _RELAYS)


def giaddr_bytes(ip: str) -> bytes:
    """``ip_bytes`` of a giaddr, remembered (a few relays send every relayed packet)."""
    if ip == ZERO_IP:
        return _ZERO_RAW
    raw = _RELAY_BYTES.get(ip)
    if raw is None:
        if len(_RELAY_BYTES) >= RELAYS_KEPT:
            _RELAY_BYTES.clear()
        raw = _RELAY_BYTES[ip] = socket.inet_aton(ip)
    return raw


def ip_list(ips) -> bytes:
    return b"".join(socket.inet_aton(ip) for ip in ips)


def u32(value: int) -> bytes:
    return struct.pack("!I", value)
