"""The TFTP codec: round trips, tftpy as an independent codec, and the inputs that kill tftpy."""

from __future__ import annotations

import struct

import pytest
import tftpy.TftpPacketTypes as tp
from hypothesis import given, settings, strategies as st
from tftpy.TftpPacketFactory import TftpPacketFactory

from services.tftp import codec
from services.tftp.codec import Ack, Data, DecodeError, Error, OAck, Opcode, Request


def rrq(name: bytes, mode: bytes = b"octet", *opts: bytes) -> bytes:
    return b"\x00\x01" + name + b"\x00" + mode + b"\x00" + b"".join(o + b"\x00" for o in opts)


# -------------------------------------------------------------------------- decoding basics
def test_rrq_with_options_case_insensitive():
    msg = codec.decode(rrq(b"pxelinux.0", b"OcTeT", b"BLKSIZE", b"1468", b"TSize", b"0",
                           b"windowSIZE", b"16", b"timeout", b"3"))
    assert msg == Request(Opcode.RRQ, "pxelinux.0", "octet",
                          (("blksize", "1468"), ("tsize", "0"), ("windowsize", "16"),
                           ("timeout", "3")))
    assert msg.number("blksize") == 1468 and msg.option("nope") is None


def test_unknown_options_are_kept_for_the_session_to_ignore():
    msg = codec.decode(rrq(b"a", b"octet", b"multicast", b"", b"x-foo", b"bar"))
    assert msg.options == (("multicast", ""), ("x-foo", "bar"))


def test_trailing_padding_after_last_nul_is_ignored():
    assert codec.decode(rrq(b"a") + b"\xff\xff").filename == "a"


@pytest.mark.parametrize("datagram,why", [
    (b"", "shorter"),
    (b"\x00\x04\x00", "shorter"),                       # 3-byte ACK (tftpy: struct.error)
    (b"\x00\x01", "shorter"),
    (rrq("föö".encode()), "not ASCII"),                  # tftpy: UnicodeDecodeError
    (rrq(b"a", "öctet".encode()), "not ASCII"),
    (rrq(b"a", b"octet", "blksizé".encode(), b"512"), "not ASCII"),
    (rrq(b"a", b"octet", b"blksize", "٣".encode()), "not ASCII"),
    (rrq(b"a", b"octet", b"blksize", b"abc"), "decimal"),  # tftpy: ValueError
    (rrq(b"a", b"octet", b"blksize", b"-1"), "decimal"),
    (rrq(b"a", b"octet", b"tsize", b"1" * 30), "decimal"),
    (rrq(b"a", b"octet", b"blksize"), "no value"),
    (rrq(b"a", b"octet", b"blksize", b"512", b"BLKSIZE", b"1024"), "twice"),
    (rrq(b"a", b"octet", b"", b"1"), "empty option"),
    (rrq(b"", b"octet"), "empty file name"),
    (b"\x00\x01abc", "NUL-terminated"),
    (b"\x00\x01abc\x00octet", "NUL-terminated"),
    (b"\x00\x07\x00\x00", "unknown opcode"),
    (b"\xff\xff\x00\x00", "unknown opcode"),
    (b"\x00\x06\xff\x10\x0cet", "OACK without options"),  # found by make fuzz: it decoded to
])                                                          # an OACK that encoded to 2 bytes
def test_malformed_is_decode_error(datagram, why):
    with pytest.raises(DecodeError, match=why):
        codec.decode(datagram)


def test_tftpy_raises_non_tftp_exceptions_where_we_raise_decode_error():
    """The regression cases of issue 7: tftpy's own classes blow up with these."""
    factory = TftpPacketFactory()
    for datagram, exc in [(rrq("föö".encode()), UnicodeDecodeError),
                          (rrq(b"a", b"octet", b"blksize", b"abc"), ValueError),
                          (b"\x00\x04\x00", struct.error)]:
        with pytest.raises(DecodeError):
            codec.decode(datagram)
        try:
            packet = factory.parse(datagram)
            if datagram.endswith(b"abc\x00"):
                int(packet.options["blksize"])  # tftpy's server does this: ValueError
        except Exception as raised:  # what tftpy raises is the point
            assert isinstance(raised, exc), f"tftpy raised {raised!r}, expected {exc.__name__}"
        else:
            pytest.fail("tftpy accepted a datagram we refuse; update the regression list")


def test_long_ack_is_accepted_like_tftpy():
    assert codec.decode(b"\x00\x04\x00\x07\x00") == Ack(7)


# -------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("message", [
    Data(1, b"x" * 512), Data(0, b""), Data(65535, b"abc"), Ack(0), Ack(65535),
    Error(1, "File not found"), Error(8, ""),
    OAck((("blksize", "1468"), ("tsize", "12345"))),
    Request(Opcode.RRQ, "boot/grub/x86_64-efi/core.efi", "octet", (("windowsize", "16"),)),
    Request(Opcode.WRQ, "x", "netascii"),
])
def test_round_trip(message):
    assert codec.decode(codec.encode(message)) == message


# -------------------------------------------------------------------------- cross-check with tftpy
def test_our_rrq_decoded_by_tftpy():
    raw = codec.encode(Request(Opcode.RRQ, "pxelinux.0", "octet",
                               (("blksize", "1468"), ("tsize", "0"))))
    packet = TftpPacketFactory().parse(raw)
    assert isinstance(packet, tp.TftpPacketRRQ)
    assert packet.filename == "pxelinux.0" and packet.mode == "octet"
    assert packet.options == {"blksize": "1468", "tsize": "0"}


def test_tftpy_rrq_decoded_by_us():
    packet = tp.TftpPacketRRQ()
    packet.filename, packet.mode = "ipxe.efi", "octet"
    packet.options = {"blksize": "1428", "tsize": "0", "windowsize": "8"}
    msg = codec.decode(packet.encode().buffer)
    assert msg == Request(Opcode.RRQ, "ipxe.efi", "octet",
                          (("blksize", "1428"), ("tsize", "0"), ("windowsize", "8")))


def test_data_ack_error_oack_match_tftpy():
    factory = TftpPacketFactory()
    d = factory.parse(codec.encode(Data(300, b"payload")))
    assert (d.opcode, d.blocknumber, d.data) == (3, 300, b"payload")
    a = factory.parse(codec.encode(Ack(65535)))
    assert (a.opcode, a.blocknumber) == (4, 65535)
    e = factory.parse(codec.encode(Error(2, "Access violation")))
    assert (e.opcode, e.errorcode) == (5, 2)
    o = factory.parse(codec.encode(OAck((("blksize", "1468"), ("tsize", "99")))))
    assert o.options == {"blksize": "1468", "tsize": "99"}

    tdat = tp.TftpPacketDAT()
    tdat.blocknumber, tdat.data = 9, b"\x00\x01"
    assert codec.decode(tdat.encode().buffer) == Data(9, b"\x00\x01")
    tack = tp.TftpPacketACK()
    tack.blocknumber = 42
    assert codec.decode(tack.encode().buffer) == Ack(42)
    toack = tp.TftpPacketOACK()
    toack.options = {"blksize": "512", "windowsize": "4"}
    assert codec.decode(toack.encode().buffer) == OAck((("blksize", "512"), ("windowsize", "4")))
    terr = tp.TftpPacketERR()
    terr.errorcode = 1
    assert codec.decode(terr.encode().buffer).code == 1


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120))
def test_decode_raises_only_decode_error(datagram):
    try:
        codec.decode(datagram)
    except DecodeError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"blksize", b"tsize", b"TIMEOUT", b"windowsize", b"x", b"1468",
                                 b"abc", b"\xff", b"", b"0"]), max_size=8))
def test_decode_request_option_soup_raises_only_decode_error(parts):
    try:
        codec.decode(rrq(b"f", b"octet", *parts))
    except DecodeError:
        pass
