"""Encoding replies: whether a reply fits the client, and OFFERs and ACKs from templates
(``codec.encode(policy.decide(...))``, byte for byte, for a fraction of the work). Pure code.

Fit (``encode_reply``): a reply whose options do not fit the client's maximum message size even
spread over ``file`` and ``sname`` is sent without the relay agent information (option 82) the
request carried, when that makes it fit (RFC 3046 §2.2 asks for the echo; a relay then forwards
a reply without it or drops it, its choice: the client is not refused for what a relay added). A
reply that does not fit even so is not sent (``Ignore("reply_too_big")``): only the inventory
can make it so large (a very long boot file name or subnet options).

Templates: the options, ``siaddr``, ``sname`` and ``file`` of an OFFER or ACK that grants a lease
depend only on the subnet, the interface's context, the lease time, the host's name, the boot
choice, the custom options it carries (those of the subnet and host that the client asks for)
and four things in the request: whether its parameter request list asks for option 67,
whether its vendor class starts with ``PXEClient``, its relay agent information (echoed) and its
maximum message size. The other header fields (xid, flags, ciaddr, yiaddr, giaddr, chaddr, htype,
hlen) are the packet's own, and never change the reply's size. So ``template`` is called before
the lease step (the server does no lease step for a reply it could not send): the first reply for
one such combination is built by ``decide`` and ``encode_reply`` as any other, its encoded parts
are kept, and ``pack`` puts a header in front of them for each reply. Every other reply (NAK,
INFORM, BSDP, proxyDHCP) goes through ``encode_reply`` alone. ``tests/dhcp/test_replies.py``
checks the bytes against ``encode(decide(...))``.
"""

from __future__ import annotations

import dataclasses

from services.dhcp import codec, policy
from services.dhcp.codec import FLAG_BROADCAST, ZERO_IP, Message, MessageType
from services.dhcp.policy import BootChoice, Destination, Ignore, Lease, ServerContext
from shared.records import Host, Profile, Subnet

TEMPLATES = 4096  # combinations kept (a handful per subnet and boot choice in practice)
# secs (0) and flags (only the broadcast bit echoed) of a reply; ciaddr of an OFFER
_BROADCAST = b"\x00\x00\x80\x00"
_NO_FLAGS = b"\x00\x00\x00\x00"
_ZERO4 = bytes(4)


def encode_reply(message: Message, max_size: int | None) -> tuple[bytes | None, bool]:
    """(packet, whether option 82 was left out to make it fit); packet None: the reply does not
    fit ``max_size`` (``codec.encode``'s) even without option 82."""
    try:
        return codec.encode(message, max_size), False
    except codec.TooBig:
        if codec.OPT_RELAY_AGENT_INFO not in message.options:
            return None, False
    options = {c: v for c, v in message.options.items() if c != codec.OPT_RELAY_AGENT_INFO}
    try:
        return codec.encode(dataclasses.replace(message, options=options), max_size), True
    except codec.TooBig:
        return None, False


def too_big(reply_type: int, request: Message, subnet: Subnet | None,
            boot: BootChoice | None) -> Ignore:
    """The Ignore for a reply ``encode_reply`` could not fit, naming what makes it large."""
    limit = policy.reply_size_limit(request) or codec.DEFAULT_MAX_LEN - codec.IP_UDP_OVERHEAD
    where = f" for subnet {subnet.name}" if subnet is not None else ""
    file = f", boot file of {len(boot.file)} bytes" if boot is not None else ""
    return Ignore("reply_too_big", f"the {MessageType(reply_type).name}{where}{file} does not "
                                   f"fit the client's {limit} bytes even without option 82: "
                                   "shorten the boot file name or the subnet's options")


@dataclasses.dataclass(slots=True)
class Template:
    """The encoded parts of an OFFER or ACK that do not depend on the packet's header fields."""

    subnet: Subnet
    ctx: ServerContext
    reply_type: int
    siaddr: bytes  # packet[20:24]
    middle: bytes  # sname, file and the magic cookie
    tail: bytes  # the options, to the end of the packet
    relay_info_dropped: bool  # option 82 left out: the reply would not fit with it


class ReplyEncoder:
    def __init__(self, limit: int = TEMPLATES) -> None:
        self.limit = limit
        # key -> (subnet, ctx, Template or the Ignore of a reply that does not fit)
        self._templates: dict[tuple, tuple[Subnet, ServerContext, Template | Ignore]] = {}

    def template(self, request: Message, host: Host | None, profile: Profile | None,
                 subnet: Subnet, lease_time: int, ctx: ServerContext, mac: str,
                 boot: BootChoice | None) -> Template | Ignore:
        """The template of the OFFER (DISCOVER) or ACK (REQUEST) that would grant a lease of
        ``lease_time`` to a request ``policy.screen`` passed (``boot``: ``choose_boot``'s answer),
        or ``Ignore("reply_too_big")``. Called before the lease step: whatever address the lease
        step gives, the reply is this size."""
        mtype = request.message_type
        options = request.options
        custom = policy.custom_options(subnet, host)
        key = (mtype, id(subnet), id(ctx), lease_time, host.hostname if host else None,
               policy.custom_sent(request, custom, boot) if custom else None,
               (boot.file, boot.reason, boot.http) if boot is not None else None,
               codec.OPT_BOOTFILE_NAME in options.get(codec.OPT_PARAMETER_REQUEST_LIST, b""),
               options.get(codec.OPT_VENDOR_CLASS_ID, b"").startswith(b"PXEClient"),
               options.get(codec.OPT_RELAY_AGENT_INFO), options.get(codec.OPT_MAX_MESSAGE_SIZE))
        cached = self._templates.get(key)
        if cached is not None and cached[0] is subnet and cached[1] is ctx:
            return cached[2]
        reply_type = codec.OFFER if mtype == codec.DISCOVER else codec.ACK
        reply = policy.decide(request, host, profile, subnet, Lease(ZERO_IP, lease_time), ctx,
                              mac, boot, screened=True)
        if not isinstance(reply, policy.Reply) or reply.message.message_type != reply_type:
            raise ValueError(f"decide() gave {reply!r} for a granted lease")  # a bug
        packet, dropped = encode_reply(reply.message, policy.reply_size_limit(request))
        if packet is None:
            result: Template | Ignore = too_big(reply_type, request, subnet, boot)
        else:
            result = Template(subnet, ctx, reply_type, packet[20:24], packet[44:codec.MIN_LEN],
                              packet[codec.MIN_LEN:], dropped)
        if len(self._templates) >= self.limit:
            self._templates.clear()
        self._templates[key] = (subnet, ctx, result)
        return result

    @staticmethod
    def pack(request: Message, template: Template, ip: str, ctx: ServerContext,
             raw: bytes = b"") -> tuple[bytes, Destination]:
        """(packet, destination) of ``template``'s reply giving address ``ip`` to ``request``;
        ``raw``: the request as received (``decode(raw)`` is ``request``), whose header bytes
        the reply repeats (htype, hlen, xid, giaddr, chaddr) are copied from it instead of
        packed again (a Python call of struct's and three conversions: ~3,000 instructions a
        reply, docs/benchmarks.md, DHCP, eighth round; tests/dhcp/test_replies.py)."""
        if len(raw) >= 44:  # op 2, htype, hlen, hops 0, xid, secs 0, flags' broadcast bit
            return (b"".join((
                b"\x02", raw[1:3], b"\x00", raw[4:8],
                _BROADCAST if raw[10] & 0x80 else _NO_FLAGS,
                raw[12:16] if request.message_type != codec.DISCOVER else _ZERO4,
                codec.ip_bytes(ip), template.siaddr, raw[24:44],  # giaddr, chaddr
                template.middle, template.tail)),
                policy.destination(request, template.reply_type, ip, ctx))
        ciaddr = request.ciaddr if request.message_type != codec.DISCOVER else ZERO_IP
        # codec.ip_bytes called by its name: compiled, a native call (through a local
        # variable it is a Python call, ~1,400 instructions each)
        head = codec.HEADER_TO_CHADDR.pack(
            codec.BOOTREPLY, request.htype, request.hlen, 0, request.xid, 0,
            request.flags & FLAG_BROADCAST, codec.ip_bytes(ciaddr), codec.ip_bytes(ip),
            template.siaddr, codec.giaddr_bytes(request.giaddr), request.chaddr)
        return (head + template.middle + template.tail,
                policy.destination(request, template.reply_type, ip, ctx))
