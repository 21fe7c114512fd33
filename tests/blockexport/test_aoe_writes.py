"""The AoE write fast path (services/blockexport/aoe_writes.py) and the replies of queued I/O
(aoe_batch.py): the fast decision equals the full path's (codec.decode + policy.decide) for any
write frame, the reply bytes built from the wire fields equal the policy's reply frames (done and
failed), and a batch answers each request as soon as it is done, writes only after their sync."""

from __future__ import annotations

import os

from aoefakes import Sent, Server
from hypothesis import given, settings, strategies as st

from services.blockexport import codec, policy
from services.blockexport.aoe_batch import run_batch
from services.blockexport.aoe_writes import DirectWrites
from services.blockexport.codec import Ata, Frame, Header
from services.blockexport.policy import Flush, Read, State, Target, Write
from services.blockexport.server import Pending, Served
from services.blockexport.storage import PlainDisk
from shared.records import Export

US = bytes.fromhex("020000000001")
HOST = bytes.fromhex("525400000001")
OTHER = bytes.fromhex("525400000002")
TARGET = Target(name="root", shelf=7, slot=3, sectors=4096, mac=US, max_sectors=17)


def write_frame(count: int, lba: int, data: bytes, aflags: int = 0x41, src: bytes = HOST,
                major: int = 7, minor: int = 3, command: int = 0x34,
                tag: int = 0x18AE0005) -> Frame:
    return Frame(Header(dst=US, src=src, major=major, minor=minor, command=0, tag=tag),
                 Ata(aflags=aflags, count=count, command=command, lba=lba, data=data))


@given(count=st.integers(0, 255), lba=st.integers(0, (1 << 48) - 1),
       aflags=st.sampled_from([0, 0x01, 0x11, 0x41, 0x51, 0x53]),
       command=st.sampled_from([0x30, 0x34]), src=st.sampled_from([HOST, OTHER]),
       major=st.sampled_from([7, 8, 0xFFFF]), minor=st.sampled_from([3, 4, 0xFF]),
       masked=st.booleans(), reserved=st.booleans(), readonly=st.booleans(),
       tag=st.integers(0, 0xFFFFFFFF), sectors=st.integers(0, 18), extra=st.integers(0, 40))
@settings(max_examples=600)
def test_direct_write_decides_and_answers_as_the_full_path(count, lba, aflags, command, src,
                                                           major, minor, masked, reserved,
                                                           readonly, tag, sectors, extra):
    payload = os.urandom(sectors * 512 + extra)
    frame = write_frame(count, lba, payload, aflags, src, major, minor, command, tag)
    data = codec.encode(frame)
    target = Target(name="root", shelf=7, slot=3, sectors=4096, mac=US, max_sectors=17,
                    readonly=readonly)
    state = State(masks=(HOST,) if masked else (), reserved=(HOST,) if reserved else ())
    peek = codec.peek_write(data)
    assert peek is not None
    p_src, p_major, p_minor, p_tag, p_aflags, p_count, p_lba = peek
    assert (p_src, p_major, p_minor, p_tag, p_aflags, p_count) == (src, major, minor, tag,
                                                                    aflags, count)
    step = policy.direct_write(target, state, p_src, p_major, p_minor, p_aflags, p_count,
                               int.from_bytes(p_lba, "little"), len(data) - 36)
    new, outcome = policy.decide(target, state, codec.decode(data))
    assert new == state
    if step is None:
        assert not isinstance(outcome, Write)
        return
    assert isinstance(outcome, Write)
    offset, length = step
    assert (outcome.offset, outcome.data) == (offset, data[36:36 + length])
    for ok in (True, False):
        full = policy.io_done(target, outcome) if ok else policy.io_failed(target, outcome)
        assert policy.io_head(target, p_src, p_tag, p_aflags, p_count, p_lba, Write, ok) == \
            codec.encode(full.frame)


@given(count=st.integers(1, 17), lba=st.integers(0, 4000), aflags=st.sampled_from([0, 0x40, 0x50]),
       tag=st.integers(0, 0xFFFFFFFF))
@settings(max_examples=200)
def test_io_head_of_reads_and_flushes_equals_the_policy_reply(count, lba, aflags, tag):
    read = Frame(Header(dst=US, src=HOST, major=7, minor=3, command=0, tag=tag),
                 Ata(aflags=aflags, count=count, command=0x24, lba=lba))
    outcome = policy.decide(TARGET, State(), read)[1]
    assert isinstance(outcome, Read)
    lba6 = lba.to_bytes(6, "little")
    data = os.urandom(outcome.length)
    assert policy.io_head(TARGET, HOST, tag, aflags, count, lba6, Read, True) + data == \
        codec.encode(policy.io_done(TARGET, outcome, data).frame)
    assert policy.io_head(TARGET, HOST, tag, aflags, count, lba6, Read, False) == \
        codec.encode(policy.io_failed(TARGET, outcome).frame)
    flush = Frame(Header(dst=US, src=HOST, major=7, minor=3, command=0, tag=tag),
                  Ata(aflags=aflags, count=count, command=0xEA, lba=lba))
    outcome = policy.decide(TARGET, State(), flush)[1]
    assert isinstance(outcome, Flush)
    assert policy.io_head(TARGET, HOST, tag, aflags, count, lba6, Flush, False) == \
        codec.encode(policy.io_failed(TARGET, outcome).frame)


def test_peek_write_takes_only_version_1_write_requests():
    write = write_frame(2, 8, bytes(1024))
    assert codec.peek_write(codec.encode(write)) is not None
    read = Frame(write.header, Ata(aflags=0x40, count=2, command=0x24, lba=8))
    response = Frame(Header(dst=US, src=HOST, major=7, minor=3, command=0, tag=1, flags=0x08),
                     write.body)
    version2 = Frame(Header(dst=US, src=HOST, major=7, minor=3, command=0, tag=1, version=2),
                     write.body)
    for frame in (read, response, version2):
        assert codec.peek_write(codec.encode(frame)) is None
    assert codec.peek_write(codec.encode(write)[:35]) is None


def test_fast_writes_are_queued_and_answered_after_their_sync(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(64 * 4096))
    disk = PlainDisk(str(path))
    served = Served(record=Export(name="write-test", kind="aoe", backing=str(path)),
                    target=TARGET, disk=disk)
    server = Server(served)
    writes = DirectWrites(server)
    payload = os.urandom(1024)
    frame = write_frame(2, 8, payload + b"padding")
    try:
        assert writes.take(codec.encode(frame), 1.0)
        assert not writes.take(codec.encode(write_frame(2, 4095, payload)), 1.0)  # past the end
        assert not writes.take(codec.encode(write_frame(2, 8, payload, major=9)), 1.0)
        [pending] = server.queued
        assert server.touched == [HOST]
        assert pending.outcome == Write(None, 8 * 512, payload)
        sent = Sent()
        synced = []
        real_write = disk.write

        def write(extents, sync=True):
            real_write(extents, sync)
            synced.append(len(sent.frames))  # replies sent before the sync returned

        disk.write = write
        read = Pending(Read(None, 0, 1024), 1.0, HOST, (9, 0x40, 2, bytes(6)))
        failures = run_batch(served, [pending, read], sent.send_parts)
        assert failures == [None, None]
        assert synced == [1]  # the read was answered first, the write only after its sync
        outcome = policy.decide(TARGET, State(), frame)[1]
        assert sent.frames[1] == codec.encode(policy.io_done(TARGET, outcome).frame)
        assert path.read_bytes()[8 * 512:10 * 512] == payload
    finally:
        disk.close()
