"""Templated OFFERs and ACKs (services/dhcp/replies.py) are byte-identical to
``codec.encode(policy.decide(...))`` for any mix of requests (without option 82 when the reply
does not fit with it)."""

from __future__ import annotations

import dataclasses
import ipaddress

from hypothesis import given, settings, strategies as st

from services.dhcp import codec, policy
from services.dhcp.codec import Message, MessageType, Opt
from services.dhcp.policy import Lease, ServerContext
from services.dhcp.replies import ReplyEncoder
from shared.records import Host, Profile, Subnet

LAB = Subnet(name="lab", network=ipaddress.IPv4Network("198.18.0.0/24"),
             ranges=(("198.18.0.100", "198.18.0.199"),), router="198.18.0.254",
             dns=("198.18.0.53",), domain="lab.example", lease_time=600)
REMOTE = Subnet(name="remote", network=ipaddress.IPv4Network("198.18.5.0/24"),
                ranges=(("198.18.5.100", "198.18.5.110"),), relays=("198.18.5.1",),
                boot_file_bios="remote.kpxe", next_server="198.18.5.2")
CTXS = (ServerContext(server_ip="198.18.0.1", http_base_url="http://198.18.0.1:8080"),
        ServerContext(server_ip="198.18.5.1", http_base_url="http://boot.example:8080",
                      ipxe_bios="other.kpxe"))
PROFILE = Profile(name="custom", vars={"boot_file_bios": "profile.kpxe"})
HOSTS = {  # mac -> (host, profile)
    "52:54:00:00:00:01": (Host(mac="52:54:00:00:00:01", hostname="web1", profile="custom"),
                          PROFILE),
    "52:54:00:00:00:03": (Host(mac="52:54:00:00:00:03", vars={"boot_file_uefi": "own.efi"}),
                          None),
    "52:54:00:00:00:09": (None, None),
}
ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
maybe = st.one_of(st.none(), st.just("0.0.0.0"), ips)

requests = st.fixed_dictionaries({
    "mtype": st.sampled_from([MessageType.DISCOVER, MessageType.REQUEST]),
    "mac": st.sampled_from(sorted(HOSTS)),
    "arch": st.sampled_from([None, 0, 6, 7, 9, 11, 16, 19, 42]),
    "vendor": st.sampled_from([None, b"PXEClient:Arch:00000:UNDI:002001", b"HTTPClient",
                               b"MSFT 5.0"]),
    "user_class": st.sampled_from([None, b"iPXE"]),
    "prl": st.sampled_from([None, bytes((1, 3, 6, 67)), bytes((1, 3, 6, 66))]),
    "relay_info": st.sampled_from([None, b"\x01\x04eth0", b"\x02\x06" + bytes(6),
                                   b"\x01\xfe" + bytes(254) + b"\x02\xfe" + bytes(254)]),
    "max_size": st.sampled_from([None, b"\x02\x40", b"\x05\xdc", b"\x01\x00"]),
    "flags": st.sampled_from([0, codec.FLAG_BROADCAST]),
    "xid": st.integers(0, 2**32 - 1),
    "ciaddr": st.sampled_from(["0.0.0.0", "198.18.0.150"]),
    "giaddr": st.sampled_from(["0.0.0.0", "198.18.5.1"]),
    "lease_ip": ips,
    "lease_time": st.sampled_from([600, 3600]),
    "subnet": st.sampled_from([LAB, REMOTE]),
    "ctx": st.sampled_from(CTXS),
})


def build(r) -> Message:
    options = {Opt.MESSAGE_TYPE: bytes([r["mtype"]])}
    for code, value in ((Opt.CLIENT_SYSTEM_ARCH, r["arch"] is not None
                         and r["arch"].to_bytes(2, "big")),
                        (Opt.VENDOR_CLASS_ID, r["vendor"]), (Opt.USER_CLASS, r["user_class"]),
                        (Opt.PARAMETER_REQUEST_LIST, r["prl"]),
                        (Opt.RELAY_AGENT_INFO, r["relay_info"]),
                        (Opt.MAX_MESSAGE_SIZE, r["max_size"])):
        if value:
            options[code] = value
    chaddr = bytes.fromhex(r["mac"].replace(":", "")) + bytes(10)
    return Message(op=1, xid=r["xid"], flags=r["flags"], ciaddr=r["ciaddr"],
                   giaddr=r["giaddr"], chaddr=chaddr, options=options)


HEADER_ONLY = ("xid", "flags", "ciaddr", "giaddr", "lease_ip")  # not part of a template


OTHER = ("mtype", "mac", "arch", "vendor", "user_class", "prl", "relay_info", "max_size",
         "lease_time", "subnet", "ctx")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(requests, st.sampled_from(("same", "new") + OTHER)), min_size=1,
                max_size=12))
def test_templated_replies_are_byte_identical_to_decide_and_encode(batch):
    encoder = ReplyEncoder()
    first = batch[0][0]
    hits = 0
    for drawn, how in batch:
        # A request like the first but for its per-packet header fields ("same": from the
        # first's template), or for those and one other field, or a new one altogether.
        r = drawn if how == "new" else dict(first, **{k: drawn[k] for k in HEADER_ONLY})
        if how in OTHER:
            r[how] = drawn[how]
        known = len(encoder._templates)
        msg = build(r)
        host, profile = HOSTS[r["mac"]]
        lease = Lease(r["lease_ip"], r["lease_time"])
        boot = policy.choose_boot(msg, host, profile, r["subnet"], r["ctx"], r["mac"])
        expected = policy.decide(msg, host, profile, r["subnet"], lease, r["ctx"], r["mac"],
                                 boot, screened=True)
        template = encoder.template(msg, host, profile, r["subnet"], lease.lease_time, r["ctx"],
                                    r["mac"], boot)
        packet, destination = encoder.pack(msg, template, lease.ip, r["ctx"])
        # the same from the request's own bytes (what the server passes: its datagram)
        assert encoder.pack(msg, template, lease.ip, r["ctx"], codec.encode(msg, 65535)) == (
            packet, destination)
        limit = policy.reply_size_limit(msg)
        try:
            assert packet == codec.encode(expected.message, limit)
            assert not template.relay_info_dropped
        except codec.TooBig:  # a 510-byte option 82 and no option 57: answered without it
            options = dict(expected.message.options)
            del options[Opt.RELAY_AGENT_INFO]
            assert packet == codec.encode(dataclasses.replace(expected.message, options=options),
                                          limit)
            assert template.relay_info_dropped
        assert destination == expected.destination
        assert template.reply_type == expected.message.message_type
        hits += len(encoder._templates) == known
    assert hits >= sum(1 for _, how in batch[1:] if how == "same")


def test_a_template_is_reused_and_dropped_with_its_subnet():
    # (observed through the templates handed out, not by patching policy.decide: compiled
    # modules call each other directly, services/dhcp/__init__.py)
    templates = []
    encoder = ReplyEncoder()
    ctx = CTXS[0]

    def offer(xid, subnet):
        msg = build({"mtype": MessageType.DISCOVER, "mac": "52:54:00:00:00:09", "arch": 0,
                     "vendor": b"PXEClient", "user_class": None, "prl": None,
                     "relay_info": None, "max_size": None, "flags": 0, "xid": xid,
                     "ciaddr": "0.0.0.0", "giaddr": "0.0.0.0", "lease_ip": "", "lease_time": 0})
        template = encoder.template(msg, None, None, subnet, 600, ctx, "52:54:00:00:00:09",
                                    policy.choose_boot(msg, None, None, subnet, ctx,
                                                       "52:54:00:00:00:09"))
        templates.append(template)
        packet, _ = encoder.pack(msg, template, "198.18.0.10" + str(xid), ctx)
        return codec.decode(packet)

    first, second = offer(1, LAB), offer(2, LAB)
    assert templates[1] is templates[0]  # the second came from the template
    assert (first.xid, first.yiaddr, second.xid, second.yiaddr) == (
        1, "198.18.0.101", 2, "198.18.0.102")
    assert second.options == first.options and second.file == b"undionly.kpxe"
    changed = Subnet(name="lab", network=LAB.network, ranges=LAB.ranges, router="198.18.0.253",
                     lease_time=600)  # the inventory changed: a new Subnet object
    third = offer(3, changed)
    assert templates[2] is not templates[0] and third.ip_option(Opt.ROUTER) == "198.18.0.253"
