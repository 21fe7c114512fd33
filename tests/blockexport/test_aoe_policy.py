"""The AoE target's decisions, table by table, without sockets or files; vblade's bugs named in
issue 14 are regression tests here (FLUSH CACHE EXT aborted; mask list edits that corrupt the
list)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from services.blockexport import codec as _codec, policy
from services.blockexport.codec import (
    AFlag,
    Ata,
    AtaCommand,
    AtaError,
    AtaStatus,
    Config,
    ConfigCommand,
    Directive,
    DirectiveCommand,
    Error,
    Flag,
    Frame,
    Header,
    MacMask,
    MaskCommand,
    MaskError,
    Reserve,
    ReserveCommand,
    Unknown,
)
from services.blockexport.policy import Drop, Flush, Read, Reply, State, Target, Write

US = bytes.fromhex("020000000001")
HOST = bytes.fromhex("525400000001")
OTHER = bytes.fromhex("525400000002")
TARGET = Target(name="root", shelf=7, slot=3, sectors=1 << 20, mac=US, max_sectors=2)


def frame(command, body, src=HOST, major=7, minor=3, **kw) -> Frame:
    return Frame(Header(dst=US, src=src, major=major, minor=minor, command=command,
                        tag=0x18AE0005, **kw), body)


def ata(command, count=1, lba=0, data=b"", aflags=AFlag.EXTENDED, **kw) -> Frame:
    return frame(0, Ata(aflags=aflags, count=count, command=command, lba=lba, data=data), **kw)


def decide(f, state=State(), target=TARGET):
    return policy.decide(target, state, f)


def reply_of(outcome) -> Frame:
    assert isinstance(outcome, Reply), outcome
    return outcome.frame


# -- addressing --------------------------------------------------------------------------------
def test_reply_header_is_ours_and_echoes_the_tag():
    _, out = decide(frame(1, Config(), major=0xFFFF, minor=0xFF))
    h = reply_of(out).header
    assert (h.dst, h.src, h.major, h.minor, h.tag) == (HOST, US, 7, 3, 0x18AE0005)
    assert h.flags == Flag.RESPONSE and h.error == 0 and h.command == 1


@pytest.mark.parametrize("major,minor,answered", [
    (7, 3, True), (0xFFFF, 0xFF, True), (7, 0xFF, True), (0xFFFF, 3, True),
    (7, 4, False), (8, 3, False), (0xFFFF, 4, False), (8, 0xFF, False)])
def test_query_config_addressing(major, minor, answered):
    _, out = decide(frame(1, Config(), major=major, minor=minor))
    assert isinstance(out, Reply) == answered
    if not answered:
        assert out == Drop("other_target")


def test_responses_and_broadcast_ata_are_dropped():
    assert decide(frame(1, Config(), flags=Flag.RESPONSE))[1] == Drop("response")
    assert decide(ata(AtaCommand.READ_SECTORS_EXT, major=0xFFFF))[1] == Drop("broadcast_command")
    assert decide(ata(AtaCommand.READ_SECTORS_EXT, minor=0xFF))[1] == Drop("broadcast_command")


def test_other_version_and_unknown_command():
    out = reply_of(decide(frame(0, Unknown(b"xyz"), version=2))[1])
    assert out.header.error == Error.UNSUPPORTED_VERSION and out.header.flags & Flag.ERROR
    out = reply_of(decide(frame(9, Unknown(b"xyz")))[1])
    assert out.header.error == Error.UNRECOGNIZED_COMMAND and out.body == Unknown(b"xyz")


# -- Query Config ------------------------------------------------------------------------------
def test_config_read_fills_the_arguments():
    body = reply_of(decide(frame(1, Config()))[1]).body
    assert body == Config(buffer_count=64, firmware=policy.FIRMWARE, sectors=2, aoe_version=1,
                          ccmd=0, config=b"")
    jumbo = dataclasses.replace(TARGET, max_sectors=17)
    assert reply_of(decide(frame(1, Config()), target=jumbo)[1]).body.sectors == 17


def test_config_set_test_prefix_force():
    state, out = decide(frame(1, Config(ccmd=ConfigCommand.SET, config=b"host=web1")))
    assert state.config == b"host=web1" and reply_of(out).body.config == b"host=web1"
    # set again with the same string (a retransmit): fine; with another: error 4
    state, out = decide(frame(1, Config(ccmd=ConfigCommand.SET, config=b"host=web1")), state)
    assert reply_of(out).header.error == 0
    state2, out = decide(frame(1, Config(ccmd=ConfigCommand.SET, config=b"host=web2")), state)
    assert state2 == state
    r = reply_of(out)
    assert r.header.error == Error.CONFIG_STRING_PRESENT and r.body.config == b"host=web1"
    assert decide(frame(1, Config(ccmd=ConfigCommand.TEST, config=b"host=web1")), state)[1] \
        .frame.body.config == b"host=web1"
    assert decide(frame(1, Config(ccmd=ConfigCommand.TEST, config=b"host=web")), state)[1] == \
        Drop("config_mismatch")
    assert isinstance(decide(frame(1, Config(ccmd=ConfigCommand.TEST_PREFIX,
                                             config=b"host=")), state)[1], Reply)
    assert decide(frame(1, Config(ccmd=ConfigCommand.TEST_PREFIX, config=b"x")), state)[1] == \
        Drop("config_mismatch")
    state, out = decide(frame(1, Config(ccmd=ConfigCommand.FORCE_SET, config=b"y" * 1024)), state)
    assert state.config == b"y" * 1024 and reply_of(out).body.config == b"y" * 1024
    _, out = decide(frame(1, Config(ccmd=7)), state)
    assert reply_of(out).header.error == Error.BAD_ARGUMENT


# -- ATA ---------------------------------------------------------------------------------------
def test_identify_words():
    big = dataclasses.replace(TARGET, sectors=(300 << 30) // 512)  # 300 GiB: past LBA28
    r = reply_of(decide(ata(AtaCommand.IDENTIFY_DEVICE), target=big)[1])
    assert r.body.command == AtaStatus.DRDY and r.body.feature == 0
    data = r.body.data
    assert len(data) == 512
    w = [int.from_bytes(data[i:i + 2], "little") for i in range(0, 512, 2)]
    assert w[49] & 0x0200  # LBA
    assert w[83] & 0x0400 and w[86] & 0x0400  # LBA48: iPXE reads 83, Linux 83 | 86
    assert w[83] & 0x2000 and w[83] & 0x1000  # FLUSH CACHE EXT and FLUSH CACHE
    assert not w[82] & 0x0020  # no write cache
    assert (w[61] << 16 | w[60]) == 0x0FFFFFFF  # LBA28 capacity clamped
    assert sum(w[100 + i] << (16 * i) for i in range(4)) == big.sectors
    swap = lambda b: bytes(b[i ^ 1] for i in range(len(b)))  # noqa: E731
    assert swap(data[54:94]).decode().strip() == "bootyard AoE root"  # model
    assert swap(data[20:40]).decode().strip() == "7.3:root"  # serial
    assert swap(data[46:54]).decode().strip() == policy.FIRMWARE_TEXT
    assert data[510] == 0xA5 and sum(data) % 256 == 0  # integrity word


def test_identify_small_disk_lba28_capacity():
    small = dataclasses.replace(TARGET, sectors=2048)
    data = reply_of(decide(ata(AtaCommand.IDENTIFY_DEVICE, aflags=0), target=small)[1]).body.data
    assert int.from_bytes(data[120:124], "little") == 2048


def test_read_and_write_become_io_steps():
    _, out = decide(ata(AtaCommand.READ_SECTORS_EXT, count=2, lba=10))
    assert out == Read(out.request, 10 * 512, 1024)
    data = bytes(range(256)) * 4
    _, out = decide(ata(AtaCommand.WRITE_SECTORS_EXT, count=2, lba=10, data=data + b"pad",
                        aflags=AFlag.EXTENDED | AFlag.WRITE))
    assert isinstance(out, Write) and out.offset == 5120 and out.data == data
    reply = policy.io_done(TARGET, out).frame
    assert reply.body.command == AtaStatus.DRDY and reply.body.data == b"" and \
        reply.body.count == 2 and reply.body.lba == 10
    _, out = decide(ata(AtaCommand.READ_SECTORS, count=1, lba=5, aflags=0))
    assert isinstance(out, Read) and out.offset == 5 * 512
    reply = policy.io_done(TARGET, out, b"x" * 512).frame
    assert reply.body.data == b"x" * 512 and reply.body.command == AtaStatus.DRDY


def test_lba28_ignores_the_device_register_nibble():
    _, out = decide(ata(AtaCommand.READ_SECTORS, count=1, lba=0xE0000005, aflags=0))
    assert isinstance(out, Read) and out.offset == 5 * 512


@pytest.mark.parametrize("count", [0, 3, 255])
def test_sector_count_past_the_frame_is_a_bad_argument(count):
    _, out = decide(ata(AtaCommand.READ_SECTORS_EXT, count=count))
    assert reply_of(out).header.error == Error.BAD_ARGUMENT


def test_write_with_less_data_than_its_count():
    _, out = decide(ata(AtaCommand.WRITE_SECTORS_EXT, count=2, data=bytes(600)))
    assert reply_of(out).header.error == Error.BAD_ARGUMENT


def test_past_the_end_is_idnf():
    _, out = decide(ata(AtaCommand.READ_SECTORS_EXT, count=2, lba=TARGET.sectors - 1))
    body = reply_of(out).body
    assert body.command == AtaStatus.DRDY | AtaStatus.ERR and body.feature == AtaError.IDNF
    assert isinstance(decide(ata(AtaCommand.READ_SECTORS_EXT, count=2,
                                 lba=TARGET.sectors - 2))[1], Read)


def test_read_only_write_is_aborted():
    ro = dataclasses.replace(TARGET, readonly=True)
    body = reply_of(decide(ata(AtaCommand.WRITE_SECTORS_EXT, data=bytes(512)), target=ro)[1]).body
    assert body.command & AtaStatus.ERR and body.feature == AtaError.ABRT


@pytest.mark.parametrize("command", [AtaCommand.FLUSH_CACHE, AtaCommand.FLUSH_CACHE_EXT])
def test_flush_cache_and_flush_cache_ext_flush(command):
    """vblade answers FLUSH CACHE EXT with an abort (and FLUSH CACHE without flushing)."""
    _, out = decide(ata(command, count=0))
    assert isinstance(out, Flush)
    body = policy.io_done(TARGET, out).frame.body
    assert body.command == AtaStatus.DRDY and body.feature == 0
    body = policy.io_failed(TARGET, out).frame.body
    assert body.command & 0xA9  # the Linux driver's error test


def test_check_power_mode_and_unsupported_commands():
    body = reply_of(decide(ata(AtaCommand.CHECK_POWER_MODE, count=0))[1]).body
    assert body.count == 0xFF and body.command == AtaStatus.DRDY
    for command in (0xC8, 0x25, 0xF8, 0x00, 0xEF):  # DMA read, DMA EXT, max address, NOP, SET FEATURES
        out = decide(ata(command))[1]
        body = reply_of(out).body
        assert body.command == AtaStatus.DRDY | AtaStatus.ERR and body.feature == AtaError.ABRT
        assert out.frame.header.error == 0  # aborted in ATA, not an AoE error


def test_read_error_is_unc():
    _, out = decide(ata(AtaCommand.READ_SECTORS_EXT))
    body = policy.io_failed(TARGET, out).frame.body
    assert body.command & AtaStatus.ERR and body.feature == AtaError.UNC


# -- Mac Mask List -----------------------------------------------------------------------------
def edit(*directives) -> Frame:
    return frame(2, MacMask(mcmd=MaskCommand.EDIT,
                            directives=tuple(Directive(d, m) for d, m in directives)))


def test_mask_list_edits():
    """vblade writes garbage entries into its list on edits and then aborts."""
    state, out = decide(edit((DirectiveCommand.ADD, HOST), (DirectiveCommand.ADD, OTHER),
                             (DirectiveCommand.ADD, HOST)))
    assert state.masks == (HOST, OTHER)
    body = reply_of(out).body
    assert body.merror == 0 and [d.mac for d in body.directives] == [HOST, OTHER]
    assert all(d.dcmd == DirectiveCommand.NONE for d in body.directives)
    state, out = decide(edit((DirectiveCommand.DELETE, OTHER), (DirectiveCommand.DELETE, US)),
                        state)
    assert state.masks == (HOST,)
    _, out = decide(frame(2, MacMask(mcmd=MaskCommand.READ)), state)
    assert [d.mac for d in reply_of(out).body.directives] == [HOST]


def test_mask_list_blocks_other_initiators():
    state = State(masks=(HOST,))
    assert decide(ata(AtaCommand.READ_SECTORS_EXT, src=OTHER), state)[1] == Drop("masked")
    assert decide(frame(1, Config(), src=OTHER), state)[1] == Drop("masked")
    assert isinstance(decide(ata(AtaCommand.READ_SECTORS_EXT), state)[1], Read)


def test_mask_list_errors_leave_the_list_unchanged():
    state = State(masks=(HOST,) + tuple(bytes([2, 0, 0, 0, 0, i])
                                        for i in range(policy.MAX_MASKS - 1)))
    x, y = bytes.fromhex("0200000000f0"), bytes.fromhex("0200000000f1")
    new, out = decide(edit((DirectiveCommand.DELETE, state.masks[1]),
                           (DirectiveCommand.ADD, x), (DirectiveCommand.ADD, y)), state)
    assert new == state  # atomic: the delete and add before the failure are not applied
    body = reply_of(out).body
    assert body.merror == MaskError.LIST_FULL and body.directives[2].mac == y
    new, out = decide(edit((DirectiveCommand.ADD, HOST), (7, OTHER)))
    assert new == State() and reply_of(out).body.merror == MaskError.BAD_DIRECTIVE
    _, out = decide(frame(2, MacMask(mcmd=5)))
    assert reply_of(out).header.error == Error.BAD_ARGUMENT


# -- Reserve / Release -------------------------------------------------------------------------
def test_reserve_and_release():
    state, out = decide(frame(3, Reserve(ReserveCommand.SET, (HOST,))))
    assert state.reserved == (HOST,) and reply_of(out).body.macs == (HOST,)
    # another initiator: ATA refused with error 6 (IDENTIFY allowed), set refused, force works
    out = reply_of(decide(ata(AtaCommand.READ_SECTORS_EXT, src=OTHER), state)[1])
    assert out.header.error == Error.TARGET_RESERVED
    assert isinstance(decide(ata(AtaCommand.IDENTIFY_DEVICE, src=OTHER), state)[1], Reply)
    new, out = decide(frame(3, Reserve(ReserveCommand.SET, (OTHER,)), src=OTHER), state)
    assert new == state and reply_of(out).header.error == Error.TARGET_RESERVED
    assert isinstance(decide(ata(AtaCommand.WRITE_SECTORS_EXT, data=bytes(512)), state)[1],
                      Write)
    _, out = decide(frame(3, Reserve(ReserveCommand.READ), src=OTHER), state)
    assert reply_of(out).body.macs == (HOST,)
    released, _ = decide(frame(3, Reserve(ReserveCommand.SET, ())), state)
    assert released.reserved == ()
    forced, _ = decide(frame(3, Reserve(ReserveCommand.FORCE_SET, (OTHER,)), src=OTHER), state)
    assert forced.reserved == (OTHER,)
    _, out = decide(frame(3, Reserve(9)))
    assert reply_of(out).header.error == Error.BAD_ARGUMENT
    too_many = tuple(bytes([2, 0, 0, 0, 1, i]) for i in range(policy.MAX_RESERVED + 1))
    new, out = decide(frame(3, Reserve(ReserveCommand.SET, too_many)))
    assert new == State() and reply_of(out).header.error == Error.BAD_ARGUMENT


# -- never dies on input -------------------------------------------------------------------------
@given(st.binary(min_size=24, max_size=1200), st.booleans(), st.booleans(), st.booleans())
@settings(max_examples=400)
def test_any_frame_gets_an_outcome_that_encodes(tail, masked, reserved, readonly):
    data = US + HOST + b"\x88\xa2" + tail
    try:
        frame = _codec.decode(data)
    except _codec.DecodeError:
        return
    target = dataclasses.replace(TARGET, readonly=readonly, sectors=4096)
    state = State(config=b"cfg", masks=(HOST,) if masked else (),
                  reserved=(OTHER,) if reserved else ())
    new, out = policy.decide(target, state, frame)
    assert isinstance(new, State)
    if isinstance(out, Reply):
        _codec.encode(out.frame)
    elif isinstance(out, (Read, Write, Flush)):
        _codec.encode(policy.io_done(target, out, bytes(out.length) if isinstance(out, Read)
                                     else b"").frame)
        _codec.encode(policy.io_failed(target, out).frame)
        if isinstance(out, (Read, Write)):
            end = out.offset + (out.length if isinstance(out, Read) else len(out.data))
            assert end <= target.sectors * 512  # never past the disk
    else:
        assert out.reason in policy.DROP_REASONS
