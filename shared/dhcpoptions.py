"""Custom DHCP options: names, types, values and encoding (pure: no sockets, no Redis).

Subnets, groups and hosts carry custom DHCP options as hash fields ``option.<name or number>``
(``option.ntp-servers = 198.18.5.1,198.18.5.2``, ``option.224 = text:rack-7``). A value is
``[TYPE:]VALUE``; an option in :data:`TABLE` has a type of its own, so the prefix is only needed
for a number the table does not know (or to send a known option's bytes as ``hex:``):

=========  =====================================  ==========================================
type       value                                  bytes
=========  =====================================  ==========================================
``ip``     one IPv4 address                       4
``ips``    comma-separated IPv4 addresses         4 each
``text``   text (ASCII, printable)                the text
``u8``     0..255                                 1
``u16``    0..65535                               2, network order
``u32``    0..4294967295                          4, network order
``i32``    -2147483648..2147483647                4, two's complement
``bool``   yes/no, true/false, on/off, 1/0        1 (1 or 0)
``hex``    hex bytes, ``01:04:0a:00`` or ``01040a00``  the bytes
=========  =====================================  ==========================================

Some options are never taken from the inventory (:data:`PROTECTED`): the DHCP machinery
(message type, server identifier, lease times, parameter list, overload, ...) and what another
field sets (the subnet mask from ``network``, the host name from ``hostname``, the lease time from
``lease_time``). Two are applied only where the boot plan leaves room (docs/dhcp.md "Custom
options"): option 67 only when the boot plan chose no boot file for the client (a phone, not a
PXE client), and option 43, which replaces the PXE discovery control bootyard sends PXE ROMs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

PREFIX = "option."
TYPES = ("ip", "ips", "text", "u8", "u16", "u32", "i32", "bool", "hex")
MAX_LEN = 255  # one option instance; longer values (RFC 3396) are not offered here

# code -> (name, type). The names are the usual ones (ISC dhcpd / dnsmasq spellings).
TABLE: dict[int, tuple[str, str]] = {
    2: ("time-offset", "i32"),
    3: ("routers", "ips"),
    4: ("time-servers", "ips"),
    6: ("domain-name-servers", "ips"),
    7: ("log-servers", "ips"),
    9: ("lpr-servers", "ips"),
    15: ("domain-name", "text"),
    17: ("root-path", "text"),
    19: ("ip-forwarding", "bool"),
    23: ("default-ip-ttl", "u8"),
    26: ("interface-mtu", "u16"),
    28: ("broadcast-address", "ip"),
    40: ("nis-domain", "text"),
    41: ("nis-servers", "ips"),
    42: ("ntp-servers", "ips"),
    43: ("vendor-encapsulated-options", "hex"),
    44: ("netbios-name-servers", "ips"),
    46: ("netbios-node-type", "u8"),
    47: ("netbios-scope", "text"),
    66: ("tftp-server-name", "text"),
    67: ("bootfile-name", "text"),
    69: ("smtp-servers", "ips"),
    72: ("www-servers", "ips"),
    100: ("posix-timezone", "text"),
    101: ("tzdb-timezone", "text"),
    114: ("captive-portal", "text"),
    150: ("tftp-server-address", "ips"),
    209: ("pxelinux-configfile", "text"),
    210: ("pxelinux-pathprefix", "text"),
    211: ("pxelinux-reboottime", "u32"),
    252: ("wpad", "text"),
}
ALIASES = {"router": 3, "dns-servers": 6, "dns": 6, "domain": 15, "ntp": 42, "mtu": 26,
           "vendor-options": 43, "tftp-server": 66, "bootfile": 67, "timezone": 101}
BY_NAME: dict[str, int] = {name: code for code, (name, _) in TABLE.items()} | ALIASES

# Never from the inventory: code -> what sets it instead.
PROTECTED: dict[int, str] = {
    0: "the pad byte", 255: "the end marker",
    1: "set from the subnet's network",
    12: "the host's hostname field",
    50: "a client option (requested address)",
    51: "the subnet's lease_time", 58: "the subnet's lease_time (T1 is half)",
    59: "the subnet's lease_time (T2 is 7/8)",
    52: "the codec (option overload)", 53: "the DHCP message type",
    54: "the server identifier (dhcp.server_address)", 55: "a client option (request list)",
    57: "a client option (maximum message size)", 61: "a client option (client identifier)",
    60: "the boot plan (PXEClient / HTTPClient for firmware)",
    82: "the relay agent (echoed back unchanged)",
    93: "a client option (architecture)", 94: "a client option (network interface)",
    97: "a client option (machine identifier)",
    175: "the boot plan (iPXE's no-pxedhcp)",
}
# Applied only where the boot plan leaves room (policy: services/dhcp/policy.py).
BOOT_FILE = 67
VENDOR_SPECIFIC = 43

_TRUE = ("yes", "true", "1", "on")
_FALSE = ("no", "false", "0", "off")
_HEX = re.compile(r"[0-9a-fA-F]{2}([:\s]?[0-9a-fA-F]{2})*")


class OptionError(ValueError):
    """A refused option name or value; the message is the reason shown to operators."""


def code_of(name: str) -> int:
    """The option code of ``name`` (a name of :data:`TABLE`, an alias, or a number 1-254);
    OptionError names what is wrong. Protected options are refused here."""
    key = name.strip().lower()
    if key.isdigit():
        code = int(key)
        if not 0 <= code <= 255:
            raise OptionError(f"option {name!r}: a number is 1 to 254")
    elif key in BY_NAME:
        code = BY_NAME[key]
    else:
        raise OptionError(f"option {name!r}: unknown name; give a number (1-254) with a type "
                          f"(option.224 = text:...), or one of {', '.join(sorted(BY_NAME))}")
    if code in PROTECTED:
        raise OptionError(f"option {code} cannot be set here: {PROTECTED[code]}")
    return code


def canonical_name(code: int) -> str:
    """The field suffix bootyard writes for ``code``: its table name, else the number."""
    return TABLE[code][0] if code in TABLE else str(code)


def _split_type(code: int, value: str) -> tuple[str, str]:
    head, sep, rest = value.partition(":")
    if sep and head.strip().lower() in TYPES:
        return head.strip().lower(), rest.strip()
    if code in TABLE:
        return TABLE[code][1], value.strip()
    raise OptionError(f"option {code} is not in bootyard's table: give its type, "
                      f"TYPE:VALUE with TYPE one of {', '.join(TYPES)} (e.g. text:rack-7, "
                      "u16:8080, hex:01:04:0a)")


def _ip(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text.strip()).packed
    except ValueError:
        raise OptionError(f"{text.strip()!r} is not an IPv4 address") from None


def _int(text: str, low: int, high: int, size: int, signed: bool = False) -> bytes:
    try:
        number = int(text.strip(), 10)
    except ValueError:
        raise OptionError(f"{text.strip()!r} is not a whole number") from None
    if not low <= number <= high:
        raise OptionError(f"{number} is not between {low} and {high}")
    return number.to_bytes(size, "big", signed=signed)


def encode_value(kind: str, text: str) -> bytes:
    """The option bytes of ``text`` read as ``kind`` (one of :data:`TYPES`)."""
    if kind == "ip":
        return _ip(text)
    if kind == "ips":
        items = [t for t in text.split(",") if t.strip()]
        if not items:
            raise OptionError("expected one or more IPv4 addresses, comma separated")
        return b"".join(_ip(t) for t in items)
    if kind == "text":
        if not text or not text.isascii() or not text.isprintable():
            raise OptionError("expected printable ASCII text")
        return text.encode("ascii")
    if kind == "u8":
        return _int(text, 0, 255, 1)
    if kind == "u16":
        return _int(text, 0, 65535, 2)
    if kind == "u32":
        return _int(text, 0, 2**32 - 1, 4)
    if kind == "i32":
        return _int(text, -2**31, 2**31 - 1, 4, signed=True)
    if kind == "bool":
        low = text.strip().lower()
        if low in _TRUE:
            return b"\x01"
        if low in _FALSE:
            return b"\x00"
        raise OptionError("expected yes or no")
    if kind == "hex":
        compact = text.strip()
        if not _HEX.fullmatch(compact):
            raise OptionError("expected hex bytes, e.g. 01:04:0a:00:00:01 or 01040a000001")
        return bytes.fromhex(re.sub(r"[:\s]", "", compact))
    raise OptionError(f"unknown type {kind!r} (types: {', '.join(TYPES)})")


def parse(name: str, value: str) -> tuple[int, bytes]:
    """(code, bytes) of the field ``option.<name>`` with ``value``; OptionError says why not."""
    code = code_of(name)
    kind, text = _split_type(code, value)
    data = encode_value(kind, text)
    if not data:
        raise OptionError("the value is empty")
    if len(data) > MAX_LEN:
        raise OptionError(f"{len(data)} bytes: one option holds at most {MAX_LEN}")
    return code, data


def encode_all(options: Mapping[str, str]) -> dict[int, bytes]:
    """{code: bytes} of already validated ``{name: value}`` options (a record's ``options``)."""
    return dict(parse(name, value) for name, value in options.items())


def layered(layers: Iterable[Mapping[str, str]]) -> dict[int, tuple[str, str]]:
    """{code: (name, value)} of several option maps, later ones winning (subnet, group,
    host): the spellings ``option.66`` and ``option.tftp-server-name`` are one option."""
    out: dict[int, tuple[str, str]] = {}
    for options in layers:
        for name, value in options.items():
            out[code_of(name)] = (name, value)
    return out


def describe(code: int) -> str:
    """``66 (tftp-server-name, text)`` for messages and docs."""
    if code in TABLE:
        return f"{code} ({TABLE[code][0]}, {TABLE[code][1]})"
    return str(code)
