"""Apple BSDP (Boot Service Discovery Protocol, NetBoot 2.0): pure code.

A Mac that NetBoots sends DHCP INFORM with vendor class ``AAPLBSDPC/<arch>/<model>`` and its BSDP
options inside option 43: first INFORM[LIST] (which images do you have?), then INFORM[SELECT]
(boot this one, server S). We answer with ACKs carrying vendor class ``AAPLBSDPC`` and our own
option 43. The SELECT answer also names the booter (``file``, fetched over TFTP from ``siaddr``)
and the root image (option 17, an http:// or nfs: URL).

Option 43 sub-options (Apple's BSDP specification):

==  ============================  ======================================================
1   message type                  1 byte: 1 LIST, 2 SELECT, 3 FAILED
2   version                       2 bytes, 0x0101 (1.1)
3   server identifier             4 bytes, IPv4 address
4   server priority               2 bytes (higher wins)
5   reply port                    2 bytes (when the client listens elsewhere than 68)
7   default boot image ID         4 bytes
8   selected boot image ID        4 bytes
9   boot image list               repeated: 4-byte ID, 1-byte name length, name
12  maximum message size          2 bytes
==  ============================  ======================================================

A boot image ID is 4 bytes: bit 31 install image, bits 24-30 kind (0 Mac OS 9, 1 Mac OS X,
2 Mac OS X Server, 3 hardware diagnostics), bits 0-15 the index (1-4095 served by one server
only, 4096-65535 the same image on several servers).
"""

from __future__ import annotations

import dataclasses
import struct

from services.dhcp import codec
from services.dhcp.codec import ZERO_IP, Message, MessageType, Opt
from services.dhcp.policy import Destination, Ignore, Reply, ServerContext

VENDOR_CLASS = b"AAPLBSDPC"
LIST, SELECT, FAILED = 1, 2, 3
VERSION_1_1 = b"\x01\x01"
KIND_CODES = {"macos9": 0, "macosx": 1, "macosx-server": 2, "diagnostics": 3}
ROOT_PATH = 17  # RFC 2132 §3.19


class BsdpError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Image:
    """What BSDP needs of a NetBoot image (from the inventory's ``netboot`` records)."""

    index: int
    name: str
    boot_file: str
    root_path: str
    kind: str = "macosx"
    install: bool = False
    default: bool = False

    @property
    def id(self) -> int:
        return (int(self.install) << 31) | (KIND_CODES[self.kind] << 24) | self.index


def parse_options(value: bytes) -> dict[int, bytes]:
    """BSDP sub-options of option 43 (code, length, value; no pad or end)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(value):
        code = value[i]
        if code in (0, 255):  # some clients pad or end the encapsulated options
            i += 1
            continue
        if i + 1 >= len(value) or i + 2 + value[i + 1] > len(value):
            raise BsdpError("truncated BSDP option")
        out[code] = value[i + 2:i + 2 + value[i + 1]]
        i += 2 + value[i + 1]
    return out


def build_options(items) -> bytes:
    out = bytearray()
    for code, value in items:
        if len(value) > 255:
            raise BsdpError(f"BSDP option {code} longer than 255 bytes")
        out += bytes((code, len(value))) + value
    return bytes(out)


def image_list(images) -> bytes:
    out = bytearray()
    for image in images:
        name = image.name.encode()[:255]
        out += struct.pack("!IB", image.id, len(name)) + name
    return bytes(out)


def is_bsdp(request: Message) -> bool:
    return request.message_type == MessageType.INFORM and request.options.get(
        Opt.VENDOR_CLASS_ID, b"").startswith(VENDOR_CLASS)


def answer(request: Message, images, ctx: ServerContext, priority: int = 32768) -> Reply | Ignore:
    """The ACK to a BSDP INFORM[LIST] or INFORM[SELECT]."""
    try:
        opts = parse_options(request.options.get(Opt.VENDOR_SPECIFIC, b""))
    except BsdpError as exc:
        return Ignore("malformed", str(exc))
    kind = opts.get(1, b"\0")[0] if opts.get(1) else 0
    images = sorted(images, key=lambda i: i.index)
    if request.ciaddr == ZERO_IP:
        return Ignore("malformed", "BSDP INFORM without ciaddr")
    port = ctx.client_port
    if len(opts.get(5, b"")) == 2:
        port = struct.unpack("!H", opts[5])[0]
    reply_opts = {Opt.MESSAGE_TYPE: bytes((MessageType.ACK,)),
                  Opt.SERVER_ID: codec.ip_bytes(ctx.server_ip),
                  Opt.VENDOR_CLASS_ID: VENDOR_CLASS}
    siaddr, file = ZERO_IP, b""
    if kind == LIST:
        if not images:
            return Ignore("no_subnet", "no NetBoot images in the inventory")
        default = next((i for i in images if i.default), images[0])
        bsdp = [(1, bytes((LIST,))), (2, VERSION_1_1), (3, codec.ip_bytes(ctx.server_ip)),
                (4, struct.pack("!H", priority)), (7, struct.pack("!I", default.id)),
                (9, image_list(images))]
    elif kind == SELECT:
        server = opts.get(3)
        if server is not None and server != codec.ip_bytes(ctx.server_ip):
            return Ignore("other_server", "the client selected another BSDP server")
        wanted = struct.unpack("!I", opts[8])[0] if len(opts.get(8, b"")) == 4 else None
        chosen = next((i for i in images if i.id == wanted), None)
        if chosen is None:
            bsdp = [(1, bytes((FAILED,)))]
        else:
            bsdp = [(1, bytes((SELECT,))), (8, struct.pack("!I", chosen.id))]
            siaddr, file = ctx.server_ip, chosen.boot_file.encode()[:128]
            reply_opts[ROOT_PATH] = chosen.root_path.encode()
    else:
        return Ignore("unsupported_type", f"BSDP message type {kind}")
    reply_opts[Opt.VENDOR_SPECIFIC] = build_options(bsdp)
    message = Message(op=codec.Op.BOOTREPLY, htype=request.htype, hlen=request.hlen,
                      xid=request.xid, ciaddr=request.ciaddr, siaddr=siaddr,
                      giaddr=request.giaddr, chaddr=request.chaddr, file=file,
                      options=reply_opts)
    if request.giaddr != ZERO_IP:
        return Reply(message, Destination(request.giaddr, ctx.server_port))
    return Reply(message, Destination(request.ciaddr, port))
