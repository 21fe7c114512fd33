"""OFFERs and ACKs encoded from a template: ``codec.encode(policy.decide(...))``, byte for byte,
for a fraction of the work.

The options, ``siaddr``, ``sname`` and ``file`` of an OFFER or ACK that grants a lease depend only
on the subnet, the interface's context, the lease time, the host's name, the boot choice and four
things in the request: whether its parameter request list asks for option 67, whether its vendor
class starts with ``PXEClient``, its relay agent information (echoed) and its maximum message
size. The other header fields (xid, flags, ciaddr, yiaddr, giaddr, chaddr, htype, hlen) are the
packet's own. So the first reply for one such combination is built by ``decide`` and ``encode``
as any other, its encoded parts are kept, and the next replies with the same combination only
pack a header in front of them. Every other reply (NAK, INFORM, BSDP, proxyDHCP) is built the
ordinary way. ``tests/dhcp/test_replies.py`` checks the bytes against ``encode(decide(...))``.
"""

from __future__ import annotations

from services.dhcp import codec, policy
from services.dhcp.codec import FLAG_BROADCAST, ZERO_IP, Message, MessageType, Opt
from services.dhcp.policy import BootChoice, Destination, Lease, ServerContext
from shared.schema import Host, Profile, Subnet

TEMPLATES = 4096  # combinations kept (a handful per subnet and boot choice in practice)


class ReplyEncoder:
    def __init__(self, limit: int = TEMPLATES) -> None:
        self.limit = limit
        # key -> (subnet, ctx, siaddr bytes, sname + file + cookie, options to the end)
        self._templates: dict[tuple, tuple] = {}

    def lease_reply(self, request: Message, host: Host | None, profile: Profile | None,
                    subnet: Subnet, lease: Lease, ctx: ServerContext, mac: str,
                    boot: BootChoice | None) -> tuple[bytes, Destination, int]:
        """(packet, destination, reply type) of the OFFER (DISCOVER) or ACK (REQUEST) granting
        ``lease``, for a request ``policy.screen`` passed; ``boot`` is ``choose_boot``'s answer."""
        mtype = request.message_type
        reply_type = MessageType.OFFER if mtype == MessageType.DISCOVER else MessageType.ACK
        options = request.options
        key = (mtype, id(subnet), id(ctx), lease.lease_time, host.hostname if host else None,
               (boot.file, boot.reason, boot.http) if boot is not None else None,
               Opt.BOOTFILE_NAME in options.get(Opt.PARAMETER_REQUEST_LIST, b""),
               options.get(Opt.VENDOR_CLASS_ID, b"").startswith(b"PXEClient"),
               options.get(Opt.RELAY_AGENT_INFO), options.get(Opt.MAX_MESSAGE_SIZE))
        template = self._templates.get(key)
        if template is None or template[0] is not subnet or template[1] is not ctx:
            reply = policy.decide(request, host, profile, subnet, lease, ctx, mac, boot,
                                  screened=True)
            if not isinstance(reply, policy.Reply) or reply.message.message_type != reply_type:
                raise ValueError(f"decide() gave {reply!r} for a granted lease")  # a bug
            packet = codec.encode(reply.message, policy.reply_size_limit(request))
            if len(self._templates) >= self.limit:
                self._templates.clear()
            self._templates[key] = (subnet, ctx, packet[20:24], packet[44:codec.MIN_LEN],
                                    packet[codec.MIN_LEN:])
            return packet, reply.destination, reply_type
        _, _, siaddr, middle, tail = template
        ciaddr = request.ciaddr if mtype != MessageType.DISCOVER else ZERO_IP
        ip = codec.ip_bytes
        head = codec.HEADER_TO_CHADDR.pack(
            codec.Op.BOOTREPLY, request.htype, request.hlen, 0, request.xid, 0,
            request.flags & FLAG_BROADCAST, ip(ciaddr), ip(lease.ip), siaddr, ip(request.giaddr),
            request.chaddr)
        return (head + middle + tail,
                policy.destination(request, reply_type, lease.ip, ctx), reply_type)
