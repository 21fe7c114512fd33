"""The DHCP codec, cross-checked against scapy (an independent decoder/encoder) and hypothesis."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from services.dhcp import codec
from services.dhcp.codec import DecodeError, Message, MessageType, Opt

MAC = bytes.fromhex("525400abcdef")


def scapy_packet(options, **bootp) -> bytes:
    fields = dict(op=1, xid=0x1234, chaddr=MAC + bytes(10), flags=0x8000)
    fields.update(bootp)
    return bytes(BOOTP(**fields) / DHCP(options=options))


def test_decode_scapy_discover():
    data = scapy_packet([("message-type", "discover"), ("client_id", b"\x01" + MAC),
                         ("hostname", b"web1"), ("requested_addr", "198.18.0.50"),
                         ("param_req_list", [1, 3, 6, 67]), ("vendor_class_id", b"PXEClient"),
                         (93, b"\x00\x07"), "end"])
    msg = codec.decode(data)
    assert msg.op == codec.Op.BOOTREQUEST
    assert msg.xid == 0x1234
    assert msg.broadcast
    assert msg.mac == MAC
    assert msg.message_type == MessageType.DISCOVER
    assert msg.options[Opt.HOSTNAME] == b"web1"
    assert msg.ip_option(Opt.REQUESTED_IP) == "198.18.0.50"
    assert msg.options[Opt.PARAMETER_REQUEST_LIST] == bytes([1, 3, 6, 67])
    assert msg.client_arches == (7,)
    assert msg.text_option(Opt.VENDOR_CLASS_ID) == "PXEClient"


def test_encode_read_by_scapy():
    msg = Message(op=2, xid=0xdeadbeef, flags=0x8000, yiaddr="198.18.0.50",
                  siaddr="198.18.0.1", giaddr="198.18.1.1", chaddr=MAC + bytes(10),
                  file=b"undionly.kpxe",
                  options={Opt.MESSAGE_TYPE: bytes([MessageType.OFFER]),
                           Opt.SERVER_ID: codec.ip_bytes("198.18.0.1"),
                           Opt.LEASE_TIME: codec.u32(3600),
                           Opt.ROUTER: codec.ip_list(["198.18.0.1"]),
                           Opt.DNS_SERVERS: codec.ip_list(["9.9.9.9", "1.1.1.1"])})
    data = codec.encode(msg)
    assert len(data) >= codec.BOOTP_MIN_LEN
    pkt = BOOTP(data)
    assert pkt.op == 2 and pkt.xid == 0xdeadbeef and pkt.yiaddr == "198.18.0.50"
    assert pkt.giaddr == "198.18.1.1" and pkt.siaddr == "198.18.0.1"
    assert pkt.file.rstrip(b"\0") == b"undionly.kpxe"
    opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == (2,)
    assert opts["server_id"] == ("198.18.0.1",)
    assert opts["lease_time"] == (3600,)
    assert opts["name_server"] == ("9.9.9.9", "1.1.1.1")
    assert pkt[DHCP].options[0] == ("message-type", 2)  # message type first


def test_long_option_split_and_joined():
    value = bytes(range(256)) * 2  # 512 bytes: three instances
    msg = Message(options={Opt.MESSAGE_TYPE: b"\x05", Opt.VENDOR_SPECIFIC: value})
    data = codec.encode(msg, max_size=1500)
    pkt = BOOTP(data)
    pieces = [o[1] for o in pkt[DHCP].options if isinstance(o, tuple) and o[0] == "vendor_specific"]
    assert [len(p) for p in pieces] == [255, 255, 2]
    assert codec.decode(data).options[Opt.VENDOR_SPECIFIC] == value


def test_repeated_instances_concatenate_rfc3396():
    data = scapy_packet([("message-type", "request"), (43, b"abc"), (12, b"x"), (43, b"def"),
                         "end"])
    assert codec.decode(data).options[43] == b"abcdef"


def test_overload_file_and_sname_decoded():
    # Build by hand: option 52 = 3; file holds hostname, sname holds vendor class.
    file_area = bytes([12, 4]) + b"node" + b"\xff"
    sname_area = bytes([60, 9]) + b"PXEClient" + b"\xff"
    data = scapy_packet([("message-type", "discover"), (52, b"\x03"), "end"],
                        file=file_area, sname=sname_area)
    msg = codec.decode(data)
    assert msg.options[Opt.HOSTNAME] == b"node"
    assert msg.options[Opt.VENDOR_CLASS_ID] == b"PXEClient"
    assert msg.file == b"" and msg.sname == b""
    assert Opt.OVERLOAD not in msg.options


@pytest.mark.parametrize("count, overload", [(12, 1), (13, 3)])
def test_encode_overflows_into_file_and_sname(count, overload):
    big = {Opt.MESSAGE_TYPE: b"\x02"}
    for code in range(200, 200 + count):
        big[code] = bytes([code]) * 30  # 12 * 32 = 384 bytes: more than the 304 left in the options field
    msg = Message(op=2, options=big)
    data = codec.encode(msg)  # default 576-byte limit
    assert len(data) <= 576 - 28
    back = codec.decode(data)
    assert {k: v for k, v in back.options.items()} == big
    # scapy agrees option 52 is there
    opts = {o[0]: o[1] for o in BOOTP(data)[DHCP].options if isinstance(o, tuple)}
    assert opts["dhcp-option-overload"] == overload


@pytest.mark.parametrize("data, reason", [
    (b"", "shorter"),
    (b"\x01" * 239, "shorter"),
    (bytes([3]) + bytes(235) + codec.MAGIC_COOKIE, "op 3"),
    (bytes([1]) + bytes(235) + b"abcd", "magic cookie"),
    (bytes([1]) + bytes(235) + codec.MAGIC_COOKIE + bytes([53, 5, 1]), "claims 5"),
    (bytes([1]) + bytes(235) + codec.MAGIC_COOKIE + bytes([53]), "no length"),
    (bytes([1]) + bytes(235) + codec.MAGIC_COOKIE + bytes([52, 1, 9, 255]), "overload"),
])
def test_malformed_raises_decode_error(data, reason):
    with pytest.raises(DecodeError, match=reason):
        codec.decode(data)


def test_overload_in_file_does_not_loop():
    file_area = bytes([52, 1, 3, 12, 1]) + b"a" + b"\xff"  # a second 52 inside file is ignored
    data = scapy_packet([("message-type", "discover"), (52, b"\x01"), "end"], file=file_area)
    msg = codec.decode(data)
    assert msg.options[Opt.HOSTNAME] == b"a" and Opt.OVERLOAD not in msg.options


def test_missing_end_tolerated_in_options_field():
    data = bytes([1, 1, 6, 0]) + bytes(232) + codec.MAGIC_COOKIE + bytes([53, 1, 1])
    assert codec.decode(data).message_type == 1


def test_user_class_forms():
    rfc = Message(options={Opt.USER_CLASS: b"\x04iPXE\x03foo"})
    assert rfc.user_classes == (b"iPXE", b"foo")
    bare = Message(options={Opt.USER_CLASS: b"iPXE"})
    assert bare.user_classes == (b"iPXE",)


# ---------------------------------------------------------------- properties

ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
option_values = st.dictionaries(
    st.integers(1, 254).filter(lambda c: c not in (52, 53)),
    st.binary(min_size=0, max_size=600), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_decode_random_bytes_only_decode_error(data):
    try:
        codec.decode(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 2))
def test_decode_random_options_only_decode_error(tail, op):
    data = bytes([op, 1, 6, 0]) + bytes(232) + codec.MAGIC_COOKIE + tail
    try:
        codec.decode(data)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(op=st.integers(1, 2), xid=st.integers(0, 2**32 - 1), flags=st.sampled_from([0, 0x8000]),
       ciaddr=ips, yiaddr=ips, giaddr=ips, chaddr=st.binary(min_size=16, max_size=16),
       mtype=st.integers(1, 8), opts=option_values,
       file=st.binary(max_size=128).map(lambda b: b.rstrip(b"\0")))
def test_round_trip_and_scapy_agrees(op, xid, flags, ciaddr, yiaddr, giaddr, chaddr, mtype, opts,
                                     file):
    options = {Opt.MESSAGE_TYPE: bytes([mtype]), **opts}
    msg = Message(op=op, xid=xid, flags=flags, ciaddr=ciaddr, yiaddr=yiaddr, giaddr=giaddr,
                  chaddr=chaddr, file=file, options=options)
    data = codec.encode(msg, max_size=8000)
    back = codec.decode(data)
    assert back == msg
    pkt = BOOTP(data)
    assert (pkt.op, pkt.xid, pkt.flags, pkt.ciaddr, pkt.yiaddr, pkt.giaddr) == (
        op, xid, flags, ciaddr, yiaddr, giaddr)
    # scapy keeps options it has no name for as (code, raw bytes) and does not join RFC 3396
    # instances: join them here and compare those byte for byte.
    joined: dict[int, bytes] = {}
    for item in DHCP(data[codec.MIN_LEN:]).options:
        if isinstance(item, tuple) and isinstance(item[0], int) and len(item) == 2:
            joined[item[0]] = joined.get(item[0], b"") + item[1]
    for code, value in joined.items():
        assert value == opts[code]


@settings(max_examples=100, deadline=None)
@given(opts=option_values)
def test_overflowed_encoding_round_trips(opts):
    msg = Message(op=2, options={Opt.MESSAGE_TYPE: b"\x02", **opts})
    try:
        data = codec.encode(msg)
    except ValueError:
        return  # does not fit 576 bytes even with overload: refused, not truncated
    assert len(data) <= 576 - 28 or len(data) == codec.BOOTP_MIN_LEN
    assert codec.decode(data).options == msg.options


def test_inet_helpers():
    assert codec.ip_list(["1.2.3.4", "5.6.7.8"]) == socket.inet_aton("1.2.3.4") + bytes([5, 6, 7, 8])


@given(st.binary(min_size=6, max_size=16))
def test_chaddr_mac_is_the_canonical_mac(chaddr):
    """The MAC of a chaddr (its first six bytes) in shared.addresses' one canonical form."""
    from shared.addresses import mac_to_bytes, normalise_mac

    mac = codec.chaddr_mac(chaddr)
    assert normalise_mac(mac) == mac and mac_to_bytes(mac) == chaddr[:6]


def test_chaddr_mac_of_a_short_chaddr_is_a_decode_error():
    assert codec.chaddr_mac(bytes.fromhex("525400abcdef") + bytes(10)) == "52:54:00:ab:cd:ef"
    with pytest.raises(DecodeError, match="5 bytes, a MAC needs 6"):
        codec.chaddr_mac(bytes(5))


@given(st.binary(min_size=4, max_size=4))
def test_dotted_is_inet_ntoa(raw):
    assert codec.dotted(raw) == socket.inet_ntoa(raw)
    assert codec.ip_bytes(codec.dotted(raw)) == raw


def test_dotted_refuses_other_lengths():
    with pytest.raises(ValueError, match="4 bytes, not 3"):
        codec.dotted(b"\x01\x02\x03")


def test_ip_bytes_remembers_a_bounded_number_of_addresses():
    for n in range(codec.ADDRESSES_KEPT + 10):
        raw = n.to_bytes(4, "big")
        assert codec.ip_bytes(socket.inet_ntoa(raw)) == raw
    assert len(codec._ADDRESS_BYTES) <= codec.ADDRESSES_KEPT
    assert codec.ip_bytes("0.0.0.0") == bytes(4) and codec.ip_bytes("10.1.2.3") == b"\n\x01\x02\x03"


@given(st.binary(min_size=codec.MIN_LEN - 4, max_size=codec.MIN_LEN - 4))
def test_header_fields_are_those_struct_reads(head):
    """decode reads the header by index: the fields HEADER_TO_CHADDR would unpack."""
    data = bytes((1,)) + head[1:codec.HEADER_LEN] + codec.MAGIC_COOKIE + bytes((255,))
    msg = codec.decode(data)
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr) = codec.HEADER_TO_CHADDR.unpack_from(data)
    assert (msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags, msg.chaddr) == (
        op, htype, hlen, hops, xid, secs, flags, chaddr)
    assert (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr) == tuple(
        socket.inet_ntoa(a) for a in (ciaddr, yiaddr, siaddr, giaddr))
