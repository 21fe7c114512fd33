"""The block export service in a network namespace, spoken to by a raw-socket AoE initiator made
here: discovery, IDENTIFY, durable writes read back (plain and copy-on-write), FLUSH CACHE EXT,
bad frames, live export changes from Redis, the boot timeline events, and the refusal to start
without an interface."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from pathlib import Path

import pytest
from aoeclient import Initiator

from harness.netlab import wait_for
from services.blockexport import codec
from services.blockexport.codec import (
    AtaCommand,
    Command,
    Config,
    ConfigCommand,
    Directive,
    DirectiveCommand,
    Flag,
    MacMask,
    MaskCommand,
    Reserve,
    ReserveCommand,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lab
SECTORS = 4096  # 2 MiB disks


def make_disk(path, seed: int) -> bytes:
    data = hashlib.shake_256(str(seed).encode()).digest(SECTORS * 512)
    path.write_bytes(data)
    return data


def test_refuses_to_start_without_an_interface(lab, unix_redis):
    seg = lab.segment()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({"BOOTYARD_REDIS_URL": unix_redis.url, "PYTHONPATH": str(REPO),
                "BOOTYARD_BLOCKEXPORT__ISCSI_PORT": "0"})  # no iSCSI either: nothing to serve
    result = seg.server.run(sys.executable, "-m", "services.blockexport", check=False, env=env,
                            cwd=str(REPO), timeout=30)
    assert result.returncode == 2
    assert "blockexport.interface is empty" in result.stderr


def test_aoe_service(lab, unix_redis, blockexport_process, tmp_path):
    seg = lab.segment()
    client_ns = seg.add_client()
    plain = tmp_path / "plain.img"
    plain_data = make_disk(plain, 1)
    golden = tmp_path / "golden.img"
    golden_data = make_disk(golden, 2)
    golden_sum = hashlib.sha256(golden_data).hexdigest()
    r = unix_redis.client()
    r.hset("bootyard:export:plain", mapping={"kind": "aoe", "backing": str(plain),
                                              "aoe_shelf": "7", "aoe_slot": "3"})
    r.hset("bootyard:export:golden", mapping={"kind": "aoe", "backing": str(golden), "cow": "yes",
                                               "aoe_shelf": "7", "aoe_slot": "4"})
    r.hset("bootyard:export:web1-root", mapping={"kind": "iscsi", "backing": str(plain),
                                                  "iqn": "iqn.2026-11.org.example:web1"})
    service = blockexport_process(seg.server, unix_redis.url, tmp_path / "be.log",
                                  overlay_root=str(tmp_path / "overlays"))
    host = Initiator(client_ns.name)
    try:
        # discovery: both AoE exports answer the broadcast (the iSCSI one is not ours)
        found = {(f.header.major, f.header.minor): f for f in host.discover(2)}
        assert set(found) == {(7, 3), (7, 4)}
        cfg = found[(7, 3)]
        assert cfg.header.flags == Flag.RESPONSE and cfg.body.sectors == 2  # veth MTU 1500
        assert cfg.body.buffer_count == 64
        disk, cow = found[(7, 3)], found[(7, 4)]

        # the diagnostic initiator (scripts/aoe-probe.py, used by make compose-test)
        probe = client_ns.run(sys.executable, str(REPO / "scripts" / "aoe-probe.py"),
                              "--interface", "eth0", "--target", "7.3", "--lba", "3",
                              "--count", "5", timeout=60)
        assert f"md5 {hashlib.md5(plain_data[1536:4096]).hexdigest()} " in probe.stdout
        assert f"size {SECTORS} sectors" in probe.stdout

        ident = host.ata(disk, AtaCommand.IDENTIFY_DEVICE).body.data
        assert int.from_bytes(ident[200:208], "little") == SECTORS

        # plain: an answered write is in the backing file (durable: fdatasync before the reply)
        assert host.read(disk, 10, 2) == plain_data[5120:6144]
        reply = host.write(disk, 10, b"\xaa" * 1024)
        assert reply.body.command == 0x40
        assert plain.read_bytes()[5120:6144] == b"\xaa" * 1024
        assert host.read(disk, 10, 2) == b"\xaa" * 1024
        flush = host.ata(disk, AtaCommand.FLUSH_CACHE_EXT, count=0)
        assert flush.body.command == 0x40 and flush.header.error == 0

        # copy-on-write: the host sees its write, the golden image stays as it was
        assert host.read(cow, 0, 2) == golden_data[:1024]
        assert host.write(cow, 1, b"\xbb" * 512).body.command == 0x40
        assert host.read(cow, 0, 2) == golden_data[:512] + b"\xbb" * 512
        assert hashlib.sha256(golden.read_bytes()).hexdigest() == golden_sum
        mac_dir = codec.format_mac(host.mac).replace(":", "-")
        assert (tmp_path / "overlays" / "golden" / mac_dir / "map").exists()

        # errors: past the end, too many sectors for the frame, a truncated frame
        past = host.ata(disk, 0x24, 1, SECTORS)
        assert past.body.command & 0x01 and past.body.feature == 0x10
        big = host.ata(disk, 0x24, 3, 0)
        assert big.header.error == 2 and big.header.flags & Flag.ERROR
        host.send_raw(codec.encode(codec.Frame(codec.Header(
            dst=disk.header.src, src=host.mac, major=7, minor=3, command=0, tag=5),
            codec.Unknown(b"\x40\x00"))))
        assert host.read(disk, 0, 1) == plain_data[:512]  # still serving

        # live changes: a new export is served, a removed one withdrawn, a bad one reported
        extra = tmp_path / "extra.img"
        make_disk(extra, 3)
        r.hset("bootyard:export:extra", mapping={"kind": "aoe", "backing": str(extra),
                                                  "aoe_shelf": "7", "aoe_slot": "5"})
        wait_for(lambda: "export=extra" in service.log(), 5, what="export extra served")
        assert host.request(Command.QUERY_CONFIG, Config(), 7, 5).header.minor == 5
        r.hset("bootyard:export:broken", mapping={"kind": "aoe",
                                                   "backing": str(tmp_path / "missing.img"),
                                                   "aoe_shelf": "8", "aoe_slot": "1"})
        wait_for(lambda: "key=bootyard:export:broken field=backing" in service.log(), 5,
                 what="the missing backing reported")
        r.hset("bootyard:export:extra", "aoe_slot", "nine")  # invalid: the last good is kept
        wait_for(lambda: "key=bootyard:export:extra field=aoe_slot" in service.log(), 5,
                 what="the invalid record reported")
        assert host.request(Command.QUERY_CONFIG, Config(), 7, 5).header.minor == 5
        r.delete("bootyard:export:extra")
        wait_for(lambda: "event=export_withdrawn export=extra" in service.log(), 5,
                 what="export extra withdrawn")
        tag = host.send(Command.QUERY_CONFIG, Config(), 0xFFFF, 0xFF)
        sentinel = host.send(Command.QUERY_CONFIG, Config(), 7, 3)  # handled after the broadcast
        answered = {f.header.minor for f in host.replies(tag, 2)}
        host.replies(sentinel)
        assert answered == {3, 4}

        # a change that re-opens the disk (read-only now), then back: served again each time
        r.hset("bootyard:export:golden", "readonly", "yes")
        wait_for(lambda: service.log().count("event=export_served export=golden") >= 2, 5,
                 what="golden re-opened read-only")
        refused = host.write(cow, 1, b"\xcc" * 512)
        assert refused.body.command & 0x01 and refused.body.feature == 0x04  # ABRT
        assert host.read(cow, 0, 2) == golden_data[:512] + b"\xbb" * 512  # its overlay still
        r.hset("bootyard:export:golden", "readonly", "no")
        wait_for(lambda: service.log().count("event=export_served export=golden") >= 3, 5,
                 what="golden re-opened read-write")
        assert host.write(cow, 2, b"\xdd" * 512).body.command == 0x40

        # the timeline: attach and first read per host and export, never per I/O
        mac = codec.format_mac(host.mac)
        r.hset(f"bootyard:host:{mac}", mapping={"hostname": "web1"})

        def kinds():
            return [(e[1].get("kind"), e[1].get("export")) for e in r.xrange("bootyard:events")
                    if e[1].get("mac") == mac]
        wait_for(lambda: ("blockexport.first_read", "golden") in kinds(), 5, what="events")
        got = kinds()
        assert got.count(("blockexport.attach", "plain")) == 1
        assert got.count(("blockexport.first_read", "plain")) == 1
        assert ("blockexport.attach", "golden") in got
        # attachments for the CLI's reset
        attached = r.hgetall("bootyard:blockexport:attached:golden")
        assert float(attached[mac]) > time.time()
    finally:
        host.close()
    service.stop()
    assert hashlib.sha256(golden.read_bytes()).hexdigest() == golden_sum



def test_mask_list_and_reserve_on_the_wire(lab, unix_redis, blockexport_process, tmp_path):
    """Mask list edits through the service (vblade 25 leaves a deleted MAC in its list), and the
    list enforced: frames from a MAC not in it are not answered; the config string, mask list and
    reserve list survive a restart of the service."""
    seg = lab.segment()
    ns1, ns2 = seg.add_client(), seg.add_client()
    disk = tmp_path / "disk.img"
    make_disk(disk, 5)
    r = unix_redis.client()
    r.hset("bootyard:export:d", mapping={"kind": "aoe", "backing": str(disk),
                                          "aoe_shelf": "2", "aoe_slot": "9"})
    service = blockexport_process(seg.server, unix_redis.url, tmp_path / "be.log")
    one, two = Initiator(ns1.name), Initiator(ns2.name)
    other = bytes.fromhex("020000000099")
    try:
        (target,) = one.discover(1)
        dst = target.header.src
        reply = one.request(Command.MAC_MASK, MacMask(mcmd=MaskCommand.EDIT, directives=(
            Directive(DirectiveCommand.ADD, one.mac), Directive(DirectiveCommand.ADD, other))),
            2, 9, dst=dst)
        assert [d.mac for d in reply.body.directives] == [one.mac, other]
        reply = one.request(Command.MAC_MASK, MacMask(mcmd=MaskCommand.EDIT, directives=(
            Directive(DirectiveCommand.DELETE, other),)), 2, 9, dst=dst)
        assert reply.body.merror == 0
        reply = one.request(Command.MAC_MASK, MacMask(mcmd=MaskCommand.READ), 2, 9, dst=dst)
        assert [d.mac for d in reply.body.directives] == [one.mac]
        # the second initiator is masked out: its query is not answered (the first one's
        # query, sent after it, is: so the service has handled both)
        masked = two.send(Command.QUERY_CONFIG, Config(), 2, 9, dst=dst)
        one.request(Command.QUERY_CONFIG, Config(), 2, 9, dst=dst)
        assert two.queued(masked) == []
        # reserve: the first initiator reserves, then a write from it works
        reply = one.request(Command.RESERVE, Reserve(ReserveCommand.SET, (one.mac,)), 2, 9,
                            dst=dst)
        assert reply.body.macs == (one.mac,)
        assert one.write(target, 0, b"r" * 512).body.command == 0x40
        reply = one.request(Command.QUERY_CONFIG, Config(ccmd=ConfigCommand.SET,
                                                         config=b"owner=web1"), 2, 9, dst=dst)
        assert reply.body.config == b"owner=web1"
        # all three survive a restart of the service (kept in Redis)
        mac = codec.format_mac(one.mac)
        wait_for(lambda: r.hgetall("bootyard:blockexport:target:d") == {
            "config": b"owner=web1".hex(), "masks": mac, "reserved": mac}, 5,
            what="the target state saved")
        service.stop()
        service = blockexport_process(seg.server, unix_redis.url, tmp_path / "be2.log")
        (target,) = one.discover(1)
        assert target.body.config == b"owner=web1"
        reply = one.request(Command.MAC_MASK, MacMask(mcmd=MaskCommand.READ), 2, 9, dst=dst)
        assert [d.mac for d in reply.body.directives] == [one.mac]
        reply = one.request(Command.RESERVE, Reserve(ReserveCommand.READ), 2, 9, dst=dst)
        assert reply.body.macs == (one.mac,)
        # removed from the inventory: its saved state goes too
        r.delete("bootyard:export:d")
        wait_for(lambda: not r.exists("bootyard:blockexport:target:d"), 5,
                 what="the target state removed")
    finally:
        one.close()
        two.close()


def test_random_frames_never_stop_the_target(lab, unix_redis, blockexport_process, tmp_path):
    seg = lab.segment()
    ns = seg.add_client()
    disk = tmp_path / "disk.img"
    data = make_disk(disk, 6)
    unix_redis.client().hset("bootyard:export:d", mapping={
        "kind": "aoe", "backing": str(disk), "aoe_shelf": "4", "aoe_slot": "4"})
    service = blockexport_process(seg.server, unix_redis.url, tmp_path / "be.log")
    host = Initiator(ns.name)
    rng = random.Random(4)
    try:
        (target,) = host.discover(1)
        dst = target.header.src
        for _ in range(600):
            body = rng.randbytes(rng.randint(0, 1100))
            head = bytes([rng.choice((0x10, 0x18, 0x20, 0x14)), rng.randint(0, 7), 0, 4, 4,
                          rng.randint(0, 5)]) + rng.randbytes(4)
            host.send_raw(dst + host.mac + b"\x88\xa2" + head + body)
        # the target's answers to the burst (and the burst itself) fill this socket's buffer:
        # what the read below must find is its own reply, so the buffer is emptied first, and
        # the read waits as long as the target may need for the burst on a loaded machine
        deadline = time.monotonic() + 60
        while True:
            host.drain()
            try:
                got = host.read(target, 0, 2, timeout=2.0)
                break
            except TimeoutError:  # an initiator retransmits (Linux aoe, iPXE): so does this one
                if time.monotonic() > deadline:
                    raise
        assert got == data[:1024]
        assert service.proc.poll() is None
    finally:
        host.close()


def dropped(ns, port: int) -> dict[str, float]:
    """The service's drop and malformed counters (its /metrics, inside ``ns``)."""
    text = ns.run("curl", "-s", f"http://127.0.0.1:{port}/metrics", check=False).stdout
    out = {}
    for line in text.splitlines():
        for name, key in (('bootyard_blockexport_dropped_total{reason="no_export"}', "no_export"),
                          ('bootyard_blockexport_errors_total{reason="malformed"}', "malformed")):
            if line.startswith(name):
                out[key] = float(line.split()[-1])
    return out


def test_another_targets_frames_are_dropped_on_their_address(lab, unix_redis,
                                                             blockexport_process, tmp_path):
    """Frames for a shelf.slot we do not serve (another target on the segment) are dropped as
    ``no_export`` on their address alone, never decoded: a truncated one is not ``malformed``."""
    seg = lab.segment()
    ns = seg.add_client()
    disk = tmp_path / "disk.img"
    data = make_disk(disk, 7)
    unix_redis.client().hset("bootyard:export:d", mapping={
        "kind": "aoe", "backing": str(disk), "aoe_shelf": "5", "aoe_slot": "1"})
    blockexport_process(seg.server, unix_redis.url, tmp_path / "be.log", metrics_port="9104")
    host = Initiator(ns.name)
    try:
        (target,) = host.discover(1)
        dst = target.header.src
        before = dropped(seg.server, 9104)
        for i in range(40):  # ATA to e6.1: a read, and a write cut off inside its arguments
            head = bytes([0x10, 0, 0, 6, 1, 0]) + i.to_bytes(4, "big")
            host.send_raw(dst + host.mac + b"\x88\xa2" + head + bytes([0x40, 0, 2, 0x24]) +
                          bytes(8))
            host.send_raw(dst + host.mac + b"\x88\xa2" + head + bytes([0x41, 0]))
        wait_for(lambda: dropped(seg.server, 9104).get("no_export", 0)
                 >= before.get("no_export", 0) + 80, 30, what="80 frames dropped as no_export")
        after = dropped(seg.server, 9104)
        assert after.get("malformed", 0) == before.get("malformed", 0)
        host.drain()
        assert host.read(target, 0, 2) == data[:1024]
    finally:
        host.close()
