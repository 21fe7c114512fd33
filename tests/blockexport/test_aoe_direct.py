"""The AoE read fast path (services/blockexport/aoe_direct.py): its decision and reply bytes
equal the full path's (codec.decode + policy.decide + policy.io_done + codec.encode) for any
frame, its storage reads equal Disk.read and never wait for the device, and the server takes it
only when its export's I/O thread is idle and the host's first read is behind it."""

from __future__ import annotations

import dataclasses
import os

from aoefakes import Server
from hypothesis import given, settings, strategies as st

from services.blockexport import codec, policy
from services.blockexport.aoe_direct import DirectReads
from services.blockexport.codec import Ata, Frame, Header
from services.blockexport.policy import Read, State, Target
from services.blockexport.server import Served
from services.blockexport.storage import PlainDisk
from services.blockexport.storage_cow import CowDisk
from shared.records import Export

US = bytes.fromhex("020000000001")
HOST = bytes.fromhex("525400000001")
OTHER = bytes.fromhex("525400000002")
TARGET = Target(name="root", shelf=7, slot=3, sectors=4096, mac=US, max_sectors=17)


def read_frame(count: int, lba: int, aflags: int = 0x40, src: bytes = HOST, major: int = 7,
               minor: int = 3, command: int = 0x24, tag: int = 0x18AE0005) -> Frame:
    return Frame(Header(dst=US, src=src, major=major, minor=minor, command=0, tag=tag),
                 Ata(aflags=aflags, count=count, command=command, lba=lba))


@given(count=st.integers(0, 255), lba=st.integers(0, (1 << 48) - 1),
       aflags=st.sampled_from([0, 0x10, 0x40, 0x50, 0x53]), command=st.sampled_from([0x20, 0x24]),
       src=st.sampled_from([HOST, OTHER]), major=st.sampled_from([7, 8, 0xFFFF]),
       minor=st.sampled_from([3, 4, 0xFF]), masked=st.booleans(), reserved=st.booleans(),
       tag=st.integers(0, 0xFFFFFFFF), padding=st.binary(max_size=30))
@settings(max_examples=600)
def test_direct_read_decides_and_answers_as_the_full_path(count, lba, aflags, command, src,
                                                          major, minor, masked, reserved, tag,
                                                          padding):
    frame = read_frame(count, lba, aflags, src, major, minor, command, tag)
    data = codec.encode(frame) + padding
    state = State(masks=(HOST,) if masked else (), reserved=(HOST,) if reserved else ())
    peek = codec.peek_read(data)
    assert peek is not None
    p_src, p_major, p_minor, p_tag, p_aflags, p_count, p_lba = peek
    assert (p_src, p_major, p_minor, p_tag, p_aflags, p_count) == (src, major, minor, tag,
                                                                    aflags, count)
    step = policy.direct_read(TARGET, state, p_src, p_major, p_minor, p_aflags, p_count,
                              int.from_bytes(p_lba, "little"))
    new, outcome = policy.decide(TARGET, state, codec.decode(data))
    assert new == state
    if step is None:
        assert not isinstance(outcome, Read)
        return
    assert isinstance(outcome, Read) and (outcome.offset, outcome.length) == step
    disk = os.urandom(outcome.length)
    full = codec.encode(policy.io_done(TARGET, outcome, disk).frame)
    assert policy.read_done_head(TARGET, p_src, p_tag, p_aflags, p_count, p_lba) + disk == full


@given(st.binary(min_size=0, max_size=80))
@settings(max_examples=400)
def test_peek_read_takes_only_version_1_read_requests(tail):
    data = US + HOST + b"\x88\xa2" + tail
    peek = codec.peek_read(data)
    if peek is None:
        return
    frame = codec.decode(data)
    h, body = frame.header, frame.body
    assert h.version == 1 and h.flags == 0 and h.command == 0 and h.error == 0
    assert isinstance(body, Ata) and body.command in (0x20, 0x24)


def test_other_frames_take_the_full_path():
    write = Frame(Header(dst=US, src=HOST, major=7, minor=3, command=0, tag=1),
                  Ata(aflags=0x41, count=1, command=0x34, data=bytes(512)))
    response = dataclasses.replace(read_frame(1, 0), header=Header(
        dst=US, src=HOST, major=7, minor=3, command=0, tag=1, flags=0x08))
    version2 = dataclasses.replace(read_frame(1, 0), header=Header(
        dst=US, src=HOST, major=7, minor=3, command=0, tag=1, version=2))
    config = Frame(Header(dst=US, src=HOST, major=7, minor=3, command=1, tag=1), codec.Config())
    for frame in (write, response, version2, config):
        assert codec.peek_read(codec.encode(frame)) is None
    assert codec.peek_read(codec.encode(read_frame(1, 0))[:35]) is None


def uncache(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached(disk, offset: int, length: int) -> bytes | None:
    into = memoryview(bytearray(length))
    return bytes(into) if disk.read_cached(offset, into) else None


def test_plain_read_cached_equals_read_and_never_waits(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(64 * 4096))
    disk = PlainDisk(str(path))
    try:
        uncache(path)
        assert cached(disk, 8192, 1024) is None  # not in the page cache: not read here
        expected = disk.read(8192, 1024)  # the ordinary read brings it in
        assert cached(disk, 8192, 1024) == expected
        assert cached(disk, disk.size - 512, 1024) is None  # past the end: the full path
    finally:
        disk.close()


def test_cow_read_cached_equals_read(tmp_path):
    golden = tmp_path / "golden.img"
    golden.write_bytes(os.urandom(64 * 4096))
    cow = CowDisk(str(golden), str(tmp_path / "overlays"), "root")
    a, b = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
    try:
        view = cow.view(a)
        assert cached(view, 0, 4096) is None  # not looked up yet: the full path looks
        assert view.read(0, 4096) == golden.read_bytes()[:4096]
        assert cached(view, 0, 4096) == golden.read_bytes()[:4096]  # known: no overlay
        view.write([(4096 + 512, b"w" * 1024)])
        expected = view.read(0, 3 * 4096)  # golden, the host's block, golden
        assert expected[4096 + 512:4096 + 1536] == b"w" * 1024
        assert cached(view, 0, 3 * 4096) == expected
        assert cached(cow.view(b), 0, 4096) is None  # another host: not looked up yet
        with cow.lock(a):  # the I/O thread holds the host: no waiting for it
            assert cached(view, 0, 4096) is None
    finally:
        cow.close()


def test_reads_go_direct_only_when_the_export_is_idle_and_the_host_known(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(64 * 4096))
    disk = PlainDisk(str(path))
    disk.read(0, disk.size)  # in the page cache
    served = Served(record=Export(name="direct-test", kind="aoe", backing=str(path)),
                    target=TARGET, disk=disk)
    server = Server(served)
    direct = DirectReads(server)
    data = codec.encode(read_frame(2, 8))
    try:
        assert not direct.serve(data, 0.0)  # the host's first read: the I/O thread (event)
        served.read_by.add(HOST)
        served.queued = 1  # a write is queued: reads keep their order behind it
        assert not direct.serve(data, 0.0)
        served.completed = 1
        served.failing.add(HOST)  # failing: the I/O thread reports the recovery
        assert not direct.serve(data, 0.0)
        served.failing.clear()
        assert direct.serve(data, 0.0)
        outcome = policy.decide(TARGET, State(), codec.decode(data))[1]
        assert server.transport.frames == [codec.encode(policy.io_done(
            TARGET, outcome, disk.read(8 * 512, 1024)).frame)]
        assert set(server.touched) == {HOST}
        before = served.counters["read"]._value.get()
        direct.flush()
        assert served.counters["read"]._value.get() == before + 1
        assert not direct.serve(codec.encode(read_frame(2, 4095)), 0.0)  # past the end: IDNF
    finally:
        disk.close()
