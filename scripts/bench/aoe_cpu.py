"""The AoE target's CPU per read request, A/B: a raw-socket initiator keeps a window of reads
outstanding, as Linux's ``aoe`` driver does, against the block export service of one or more
source trees (and vblade), alternating round by round (root; lab network namespaces).

    python scripts/bench/aoe_cpu.py [--code DIR ...] [--vblade] [--mtu 1500] [--window 64]
                                    [--seconds 5] [--rounds 3] [--size-mb 64] [--op read|write]

``--code`` names a checkout whose ``services.blockexport`` is run (default: this one); give it
twice to compare old and new code on the same machine at the same time. Per round and target:
the service starts in the server namespace of a fresh segment, the initiator (client
namespace) reads the export sequentially, ``--window`` frames in flight, each of the sectors a
frame carries at ``--mtu`` (``--op write``: WRITE SECTORS EXT of as many, each answered when
durable), for ``--seconds``; the initiator's round trip per request (send to reply, median and
p90: with ``--window 1`` the latency iPXE sees, one command at a time); the target process's CPU time (utime + stime,
all threads, /proc) over the run divided by the replies is its CPU per request. The figures
survive a loaded machine better than MB/s (the initiator competes for the same cores).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "blockexport")]

from aoeclient import raw_socket_in  # noqa: E402

from harness.dhcpkit import UnixRedis  # noqa: E402
from harness.netlab import Lab, stop_process, wait_for  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
METRICS_PORT = 9104  # in the server namespace (its own)
HEADER = struct.Struct("!6s6sHBBHBBIBBBB6s2x")  # Ethernet + AoE + ATA arguments (36 bytes)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def syncs(ns) -> int:
    """The bench export's syncs so far (the service's /metrics)."""
    text = ns.run("curl", "-s", f"http://127.0.0.1:{METRICS_PORT}/metrics", check=False).stdout
    for line in text.splitlines():
        if line.startswith('bootyard_blockexport_syncs_total{export="bench"}'):
            return int(float(line.split()[-1]))
    return 0


def set_mtu(seg, mtu: int) -> None:
    for ns in [seg.switch, seg.server, *seg.clients]:
        for line in ns.run("ip", "-o", "link", "show").stdout.splitlines():
            name = line.split(": ")[1].split("@")[0]
            if name != "lo":
                ns.run("ip", "link", "set", "dev", name, "mtu", str(mtu))


def discover(sock: socket.socket, mac: bytes, shelf: int, slot: int) -> tuple[bytes, int]:
    """(target MAC, sectors per frame) of shelf.slot."""
    query = struct.pack("!6s6sHBBHBBIHHBBH", b"\xff" * 6, mac, 0x88A2, 0x10, 0, shelf, slot,
                        1, 7, 0, 0, 0, 0x10, 0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sock.send(query)
        end = time.monotonic() + 0.5
        while (left := end - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(10000)
            if len(data) >= 32 and data[14] & 0x08 and data[19] == 1 and \
                    struct.unpack_from("!HB", data, 16) == (shelf, slot):
                return data[6:12], data[28]
    raise TimeoutError(f"no Query Config answer from e{shelf}.{slot}")


def load(sock: socket.socket, mac: bytes, target: bytes, shelf: int, slot: int, sectors: int,
         disk_sectors: int, window: int, seconds: float, write: bool = False,
         rtts: list[float] | None = None) -> tuple[int, int]:
    """Sequential reads (``write``: writes), ``window`` in flight, for ``seconds``: (replies,
    retransmits); each reply's round trip is appended to ``rtts``."""
    tag = 0x10000
    lba = 0
    outstanding: dict[int, int] = {}  # tag -> lba
    sent: dict[int, float] = {}  # tag -> when
    frame = bytearray(HEADER.size + (sectors * 512 if write else 0))
    aflags, command = (0x41, 0x34) if write else (0x40, 0x24)
    clock = time.perf_counter

    def send(at: int) -> None:
        nonlocal tag
        tag += 1
        HEADER.pack_into(frame, 0, target, mac, 0x88A2, 0x10, 0, shelf, slot, 0, tag, aflags, 0,
                         sectors, command, at.to_bytes(6, "little"))
        sent[tag] = clock()
        sock.send(frame)
        outstanding[tag] = at

    def next_lba() -> int:
        nonlocal lba
        at = lba
        lba += sectors
        if lba + sectors > disk_sectors:
            lba = 0
        return at

    for _ in range(window):
        send(next_lba())
    replies = resent = 0
    end = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            data = sock.recv(10000)
        except TimeoutError:
            for at in list(outstanding.values()):  # lost: resend with new tags (as Linux)
                resent += 1
                send(at)
            outstanding = {t: a for t, a in outstanding.items() if t > tag - window}
            continue
        if len(data) < 36 or not data[14] & 0x08:
            continue
        got = int.from_bytes(data[20:24], "big")
        if outstanding.pop(got, None) is None:
            continue
        if rtts is not None:
            rtts.append(clock() - sent.pop(got))
        sent.pop(got - 4 * window, None)  # bounded: tags of lost requests
        replies += 1
        send(next_lba())
    return replies, resent


def start_ours(seg, code: Path, redis_url: str, image: Path, logfile: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({"BOOTYARD_REDIS_URL": redis_url, "PYTHONPATH": str(code),
                "BOOTYARD_BLOCKEXPORT__INTERFACE": "eth0",
                "BOOTYARD_BLOCKEXPORT__ISCSI_PORT": "0",
                "BOOTYARD_BLOCKEXPORT__METRICS_HOST": "127.0.0.1",
                "BOOTYARD_BLOCKEXPORT__METRICS_PORT": str(METRICS_PORT)})
    handle = logfile.open("w")
    profile = ["-m", "cProfile", "-o", os.environ["AOE_PROFILE"]] if "AOE_PROFILE" in os.environ \
        else []
    proc = seg.server.popen(sys.executable, *profile, "-m", "services.blockexport", stdout=handle,
                            stderr=subprocess.STDOUT, env=env, cwd=str(code))
    wait_for(lambda: "event=serving" in logfile.read_text() or proc.poll() is not None, 30,
             what="blockexport to serve")
    if proc.poll() is not None:
        raise RuntimeError(logfile.read_text())
    return proc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, action="append")
    parser.add_argument("--vblade", action="store_true",
                        help="vblade as a target too (with --op write: vblade -s too)")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--op", choices=("read", "write"), default="read")
    args = parser.parse_args(argv)
    write = args.op == "write"
    codes = args.code or [REPO]
    targets = [(f"code{i}:{c}", c) for i, c in enumerate(codes)]
    if args.vblade:
        targets.append(("vblade", None))
        if write:  # its synchronous mode: writes durable when answered, as ours
            targets.append(("vblade-s", None))
    results: dict[str, list[tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="aoe-cpu-") as tmp:
        work = Path(tmp)
        image = work / "disk.img"
        with image.open("wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1 << 20))
        subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)  # cached
        redis = UnixRedis(work / "redis")
        redis.start()
        try:
            client = redis.client()
            client.hset("bootyard:export:bench", mapping={
                "kind": "aoe", "backing": str(image), "aoe_shelf": "1", "aoe_slot": "1"})
            for r in range(args.rounds):
                order = targets if r % 2 == 0 else targets[::-1]
                for name, code in order:
                    with Lab() as lab:
                        seg = lab.segment()
                        client_ns = seg.add_client()
                        set_mtu(seg, args.mtu)
                        if code is None:
                            sync = ["-s"] if name == "vblade-s" else []
                            proc = seg.server.popen("vblade", *sync, "1", "1", "eth0", str(image),
                                                    stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)
                        else:
                            proc = start_ours(seg, code, redis.url, image, work / "be.log")
                        sock = raw_socket_in(client_ns.name)
                        try:
                            mac = bytes(sock.getsockname()[4])
                            dst, sectors = discover(sock, mac, 1, 1)
                            disk = args.size_mb * 2048
                            load(sock, mac, dst, 1, 1, sectors, disk, args.window, 0.5)  # warm
                            time.sleep(0.3)
                            perf = None
                            if "AOE_PERF" in os.environ and code is not None:
                                perf = subprocess.Popen(
                                    ["perf", "record", "-q", "-g", "-p", str(proc.pid), "-o",
                                     os.environ["AOE_PERF"]], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
                            synced = syncs(seg.server) if write and code is not None else 0
                            before = cpu_seconds(proc.pid)
                            t0 = time.monotonic()
                            rtts: list[float] = []
                            replies, resent = load(sock, mac, dst, 1, 1, sectors, disk,
                                                   args.window, args.seconds, write, rtts)
                            wall = time.monotonic() - t0
                            cpu = cpu_seconds(proc.pid) - before
                            if write and code is not None:
                                synced = syncs(seg.server) - synced
                                print(f"  {replies / max(synced, 1):.1f} writes per sync",
                                      flush=True)
                            if perf is not None:
                                perf.send_signal(2)
                                perf.wait()
                        finally:
                            sock.close()
                            stop_process(proc)
                    rate = replies * sectors * 512 / 1e6 / wall
                    us = cpu / max(replies, 1) * 1e6
                    rtts.sort()
                    rtt = (rtts[len(rtts) // 2] * 1e6, rtts[len(rtts) * 9 // 10] * 1e6) \
                        if rtts else (0.0, 0.0)
                    results.setdefault(name, []).append((us, rate, resent, *rtt))
                    print(f"round {r + 1} {name}: {replies} replies, {rate:.1f} MB/s, "
                          f"{us:.1f} us CPU/request, round trip median {rtt[0]:.1f} us "
                          f"(p90 {rtt[1]:.1f}), {resent} resent", flush=True)
        finally:
            redis.stop()
    print(f"{args.op}s, MTU {args.mtu}, window {args.window}: median over {args.rounds} rounds")
    for name, values in results.items():
        print(f"  {name:<40} {statistics.median(v[0] for v in values):7.1f} us CPU/request "
              f"{statistics.median(v[1] for v in values):7.1f} MB/s  round trip "
              f"{statistics.median(v[3] for v in values):6.1f} us "
              f"(p90 {statistics.median(v[4] for v in values):6.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
