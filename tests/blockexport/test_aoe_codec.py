"""The AoE codec: round trips, the specification's error cases, hypothesis, and a cross-check of
the header, ATA and Query Config layouts against scapy's independent AoE layer (scapy's Mac Mask
and Reserve layers spell their counts as 16-bit fields, where the spec, tcpdump and vblade have one
byte, so those two are checked against hand-built bytes instead)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st
from scapy.contrib.aoe import AOE, IssueATACommand, QueryConfigInformation
from scapy.layers.l2 import Ether

from services.blockexport import codec
from services.blockexport.codec import (
    Ata,
    AtaCommand,
    Command,
    Config,
    ConfigCommand,
    DecodeError,
    Directive,
    DirectiveCommand,
    Flag,
    Frame,
    Header,
    MacMask,
    MaskCommand,
    Reserve,
    ReserveCommand,
    Unknown,
)

TARGET = bytes.fromhex("020000000001")
HOST = bytes.fromhex("525400abcdef")


def header(command, **kw) -> Header:
    fields = dict(dst=TARGET, src=HOST, major=7, minor=3, command=command, tag=0x18AE0001)
    fields.update(kw)
    return Header(**fields)


def test_decode_scapy_ata_read():
    data = bytes(Ether(dst=TARGET, src=HOST) / AOE(major=7, minor=3, cmd=0, tag=0x1234, i_ata_cmd=IssueATACommand(
                     flags=0x40, sector_count=2, cmd_status=0x24, lba0=0x10, lba1=0x20,
                     lba2=0x30, lba3=0x40, lba4=0x50, lba5=0x60)))
    frame = codec.decode(data)
    h = frame.header
    assert (h.dst, h.src, h.major, h.minor, h.command, h.tag) == (TARGET, HOST, 7, 3, 0, 0x1234)
    assert h.version == 1 and not h.is_response
    ata = frame.body
    assert isinstance(ata, Ata)
    assert ata.extended and not ata.write
    assert ata.count == 2 and ata.command == AtaCommand.READ_SECTORS_EXT
    assert ata.lba == 0x605040302010 and ata.address == 0x605040302010


def test_lba28_address_drops_the_device_register_bits():
    ata = Ata(aflags=0, command=AtaCommand.READ_SECTORS, lba=0xE1234567 | (0x55 << 32))
    assert ata.address == 0x01234567


def test_decode_scapy_query_config():
    data = bytes(Ether(dst=codec.BROADCAST_MAC, src=HOST) / AOE(cmd=1, tag=9, q_conf_info=QueryConfigInformation(
                     ccmd=2, config=b"root-")))
    frame = codec.decode(data)
    assert frame.header.major == codec.BROADCAST_SHELF and frame.header.minor == 0xFF
    assert frame.body == Config(aoe_version=0, ccmd=ConfigCommand.TEST_PREFIX, config=b"root-")


def test_encode_read_by_scapy():
    reply = Frame(header(Command.QUERY_CONFIG, flags=Flag.RESPONSE, dst=HOST, src=TARGET),
                  Config(buffer_count=64, firmware=0x0001, sectors=17, ccmd=0, config=b"hello"))
    pkt = Ether(codec.encode(reply))
    aoe = pkt[AOE]
    assert pkt.type == codec.ETHERTYPE and aoe.version == 1 and int(aoe.flags) == 0x8
    assert (aoe.major, aoe.minor, aoe.cmd, aoe.tag) == (7, 3, 1, 0x18AE0001)
    cfg = aoe[QueryConfigInformation]
    assert (cfg.buffer_count, cfg.firmware, cfg.sector_count, cfg.aoe) == (64, 1, 17, 1)
    assert cfg.config == b"hello"
    data = bytes(range(256)) * 4
    ata = Frame(header(Command.ATA, flags=Flag.RESPONSE),
                Ata(aflags=0x40, count=2, command=0x40, lba=5, data=data))
    got = Ether(codec.encode(ata))[IssueATACommand]
    assert got.cmd_status == 0x40 and got.sector_count == 2 and got.lba0 == 5
    assert got.data == data


def test_mask_and_reserve_layout_bytes():
    mask = Frame(header(Command.MAC_MASK),
                 MacMask(mcmd=MaskCommand.EDIT, directives=(
                     Directive(DirectiveCommand.ADD, HOST),
                     Directive(DirectiveCommand.DELETE, TARGET))))
    data = codec.encode(mask)
    assert data[24:] == bytes([0, 1, 0, 2, 0, 1]) + HOST + bytes([0, 2]) + TARGET
    assert codec.decode(data) == mask
    reserve = Frame(header(Command.RESERVE), Reserve(ReserveCommand.SET, (HOST, TARGET)))
    data = codec.encode(reserve)
    assert data[24:] == bytes([1, 2]) + HOST + TARGET
    assert codec.decode(data) == reserve


def test_header_bytes():
    data = codec.encode(Frame(header(Command.ATA, flags=Flag.RESPONSE | Flag.ERROR, error=2),
                              Ata()))
    assert data[:14] == TARGET + HOST + b"\x88\xa2"
    assert data[14:24] == bytes([0x1C, 2, 0, 7, 3, 0]) + struct.pack("!I", 0x18AE0001)
    assert len(data) == codec.ATA_HEADER_LEN == 36


@pytest.mark.parametrize("mtu,sectors", [(1500, 2), (9000, 17), (1024, 1), (36, 0), (20, 0)])
def test_sectors_per_frame(mtu, sectors):
    assert codec.sectors_per_frame(mtu) == sectors


def test_padding_after_a_query_config_is_ignored():
    frame = Frame(header(Command.QUERY_CONFIG), Config(config=b"abc"))
    data = codec.encode(frame) + bytes(30)
    assert codec.decode(data) == frame


def test_unknown_command_and_other_versions_keep_their_bytes():
    frame = codec.decode(codec.encode(Frame(header(0x42), Unknown(b"xyz"))))
    assert frame.body == Unknown(b"xyz") and frame.header.command == 0x42
    frame = codec.decode(codec.encode(Frame(header(Command.ATA, version=2), Unknown(b"\x01"))))
    assert frame.header.version == 2 and frame.body == Unknown(b"\x01")


@pytest.mark.parametrize("data,reason", [
    (b"", "shorter than the 24-byte AoE header"),
    (TARGET + HOST + b"\x08\x00" + bytes(20), "is not AoE"),
    (TARGET + HOST + b"\x88\xa2\x10\x00\x00\x01\x01\x00" + bytes(4) + bytes(11),
     "ATA command needs 12 bytes"),
    (TARGET + HOST + b"\x88\xa2\x10\x00\x00\x01\x01\x01" + bytes(4) + bytes(7),
     "Query Config needs 8 bytes"),
    (TARGET + HOST + b"\x88\xa2\x10\x00\x00\x01\x01\x01" + bytes(4) + bytes(6) + b"\x04\x01",
     "config string length 1025 is over"),
    (TARGET + HOST + b"\x88\xa2\x10\x00\x00\x01\x01\x01" + bytes(4) + bytes(6) + b"\x00\x05abc",
     "runs past the frame"),
    (TARGET + HOST + b"\x88\xa2\x10\x00\x00\x01\x01\x02" + bytes(4) + b"\x00\x01\x00\x02" +
     bytes(8), "says 2 directives"),
    (TARGET + HOST + b"\x88\xa2\x10\x00\x00\x01\x01\x03" + bytes(4) + b"\x01\x01" + bytes(5),
     "says 1 MAC addresses"),
])
def test_decode_errors(data, reason):
    with pytest.raises(DecodeError, match=reason):
        codec.decode(data)


def test_encode_refuses_an_oversized_config_string():
    with pytest.raises(ValueError, match="over 1024"):
        codec.encode(Frame(header(Command.QUERY_CONFIG), Config(config=bytes(1025))))


# -- hypothesis ---------------------------------------------------------------------------------
macs = st.binary(min_size=6, max_size=6)
headers = st.builds(Header, dst=macs, src=macs, major=st.integers(0, 0xFFFF),
                    minor=st.integers(0, 0xFF), command=st.just(0), tag=st.integers(0, 2**32 - 1),
                    flags=st.integers(0, 15), error=st.integers(0, 255))
bodies = st.one_of(
    st.builds(Ata, aflags=st.integers(0, 255), feature=st.integers(0, 255),
              count=st.integers(0, 255), command=st.integers(0, 255),
              lba=st.integers(0, 2**48 - 1), data=st.binary(max_size=1100)),
    st.builds(Config, buffer_count=st.integers(0, 0xFFFF), firmware=st.integers(0, 0xFFFF),
              sectors=st.integers(0, 255), aoe_version=st.integers(0, 15),
              ccmd=st.integers(0, 15), config=st.binary(max_size=1024)),
    st.builds(MacMask, mcmd=st.integers(0, 255), merror=st.integers(0, 255),
              directives=st.lists(st.builds(Directive, st.integers(0, 255), macs),
                                  max_size=40).map(tuple)),
    st.builds(Reserve, rcmd=st.integers(0, 255),
              macs=st.lists(macs, max_size=40).map(tuple)),
)
COMMAND_OF = {Ata: 0, Config: 1, MacMask: 2, Reserve: 3}


@given(headers, bodies)
@settings(max_examples=300)
def test_round_trip(h, body):
    import dataclasses
    frame = Frame(dataclasses.replace(h, command=COMMAND_OF[type(body)]), body)
    assert codec.decode(codec.encode(frame)) == frame


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_decode_raises_only_decode_error(tail):
    for command in range(5):
        data = TARGET + HOST + b"\x88\xa2" + bytes([0x10, 0, 0, 1, 1, command, 0, 0, 0, 1]) + tail
        try:
            codec.decode(data)
        except DecodeError:
            pass


@given(st.binary(max_size=80))
def test_decode_of_any_bytes_raises_only_decode_error(data):
    try:
        codec.decode(data)
    except DecodeError:
        pass
