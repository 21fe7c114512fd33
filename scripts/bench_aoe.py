"""make bench-aoe: bootyard's AoE target against vblade, read by the same QEMU guest through
Linux's ``aoe`` driver (root; the lab's network namespaces and QEMU TCG).

    python scripts/bench_aoe.py [--size-mb 64] [--rounds 3] [--mtus 1500,9000] [--workdir DIR]
                                [--sanboot-mb 32] [--capture DIR] [--buffer-count N]

For each MTU: the segment's links get that MTU; bootyard's block export service serves e1.1 and
vblade (default, buffered) e2.1 and vblade -s (O_SYNC) e3.1, each on its own copy of the same
image; one guest boots with ``aoetest.mtu=<MTU>`` and, alternating between the targets round by
round, reads the whole disk with ``dd bs=1M`` (buffered, caches dropped first) and with
``iflag=direct``, then writes it with ``conv=fsync``. Times come from the guest's /proc/uptime.
Medians over the rounds are printed per target, mode and MTU; the last line is

    RESULT aoe mbps_1500=<ours> vblade_1500=<theirs> ratio_1500=<r> mbps_9000=... ratio_9000=...

(buffered reads; MB = 10^6 bytes). Each target's CPU seconds over an MTU's run are printed too
(they all served the same requests). ``--capture DIR`` keeps a tcpdump of the AoE frames per
MTU and of the sanboot run (``scripts/bench/aoe_pattern.py`` reads it: the guest's window and
sizes, each target's answer times). The guest's own limit is printed as ``guest-ram``: a read of
a RAM disk (brd) of the same size in the same guest. Then iPXE ``sanboot`` MB/s for both: SeaBIOS
+ iPXE ROM boot a disk (``--sanboot-mb``) whose boot sector reads all of it through INT 13h
(lab/sanbench.py), from bootyard and from vblade, alternating (each first in every other
round); a capture of the AoE headers says how much of each exchange was the target's (request
to reply on the wire) and how much the guest's (reply to its next request). The bootyard
service's writes per sync (its /metrics) are printed per MTU.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "blockexport"),
                str(REPO / "scripts" / "bench")]

import aoe_pattern  # noqa: E402
from serviceproc import BlockexportProcess  # noqa: E402

from harness.dhcpkit import UnixRedis  # noqa: E402
from harness.netlab import Lab  # noqa: E402
from lab import aoeguest, sanbench  # noqa: E402
from lab.assets import ensure_assets  # noqa: E402
from lab.qemu import BIOS  # noqa: E402
from lab.runner import BootLab  # noqa: E402

TARGETS = {"e1.1": "bootyard", "e2.1": "vblade", "e3.1": "vblade-s"}
NAMES = {**TARGETS, "ram0": "guest-ram"}  # ram0: the guest's own limit (brd RAM disk)
MAC = "52:54:00:ae:b0:01"
METRICS_PORT = 9104

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /etc/aoe-functions
ROUNDS=$(cmdline_value aoetest.rounds)
TARGETS=$(cmdline_value aoetest.targets | tr , ' ')
load_modules
for t in $TARGETS; do wait_aoe "$t"; done
now() { cut -d' ' -f1 /proc/uptime; }
# the guest's own limit: reading a RAM disk of the same size through the same block layer
if [ -b /dev/ram0 ]; then
    bytes=$(( $(cat /sys/block/etherd!e1.1/size) * 512 ))
    dd if=/dev/zero of=/dev/ram0 bs=1M count=$((bytes / 1048576)) 2>/dev/null
    echo 3 > /proc/sys/vm/drop_caches
    s=$(now); dd if=/dev/ram0 of=/dev/null bs=1M count=$((bytes / 1048576)) 2>/dev/null; e=$(now)
    echo "AOEBENCH round=0 target=ram0 mode=buffered bytes=$((bytes / 1048576 * 1048576)) start=$s end=$e"
fi
r=0
while [ $r -lt "$ROUNDS" ]; do
    r=$((r + 1))
    for t in $TARGETS; do
        bytes=$(( $(cat /sys/block/etherd!$t/size) * 512 ))
        echo 3 > /proc/sys/vm/drop_caches
        s=$(now); dd if=/dev/etherd/$t of=/dev/null bs=1M 2>/dev/null; e=$(now)
        echo "AOEBENCH round=$r target=$t mode=buffered bytes=$bytes start=$s end=$e"
        s=$(now)
        if dd if=/dev/etherd/$t of=/dev/null bs=1M iflag=direct 2>/dev/null; then
            e=$(now); echo "AOEBENCH round=$r target=$t mode=direct bytes=$bytes start=$s end=$e"
        fi
        s=$(now); dd if=/dev/zero of=/dev/etherd/$t bs=1M count=$((bytes / 1048576)) \
            conv=fsync 2>/dev/null; e=$(now)
        echo "AOEBENCH round=$r target=$t mode=write bytes=$((bytes / 1048576 * 1048576)) start=$s end=$e"
    done
done
echo "AOEBENCH-DONE"
poweroff -f
sleep 60
"""
LINE = re.compile(r"AOEBENCH round=(\d+) target=(\S+) mode=(\S+) bytes=(\d+) start=([\d.]+) "
                  r"end=([\d.]+)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def user_system(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def write_batching(ns) -> tuple[int, int]:
    """(write frames answered, syncs) of the bench export, from the service's /metrics."""
    text = ns.run("curl", "-s", f"http://127.0.0.1:{METRICS_PORT}/metrics", check=False).stdout
    found = dict.fromkeys(("write", "sync"), 0.0)
    for line in text.splitlines():
        if line.startswith('bootyard_blockexport_operations_total{export="bench",op="write"}'):
            found["write"] = float(line.split()[-1])
        elif line.startswith('bootyard_blockexport_syncs_total{export="bench"}'):
            found["sync"] = float(line.split()[-1])
    return int(found["write"]), int(found["sync"])


def set_mtu(seg, taps: list[str], mtu: int) -> None:
    for ns in (seg.switch,):
        links = ns.run("ip", "-o", "link", "show").stdout
        for name in re.findall(r"^\d+: ([^:@]+)", links, re.M):
            if name != "lo":
                ns.run("ip", "link", "set", "dev", name, "mtu", str(mtu))
    seg.server.run("ip", "link", "set", "dev", "eth0", "mtu", str(mtu))


def run_mtu(lab, work: Path, redis: UnixRedis, images: dict[str, Path], kernel: Path,
            initrd: Path, mtu: int, rounds: int, size_mb: int, capture_to: Path | None = None,
            settings: dict[str, str] | None = None) -> dict[tuple[str, str], list[float]]:
    seg = lab.segment()
    tap = seg.add_tap()
    set_mtu(seg, [tap], mtu)
    client = redis.client()
    client.flushall()
    client.hset("bootyard:export:bench", mapping={"kind": "aoe", "backing": str(images["e1.1"]),
                                                   "aoe_shelf": "1", "aoe_slot": "1"})
    service = BlockexportProcess(seg.server, redis.url, work / f"blockexport-{mtu}.log",
                                 metrics_port=str(METRICS_PORT),  # the namespace's own port
                                 **(settings or {}))
    vblades = [seg.server.popen("vblade", "2", "1", "eth0", str(images["e2.1"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
               seg.server.popen("vblade", "-s", "3", "1", "eth0", str(images["e3.1"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    vm = aoeguest.KernelVM(seg.switch, tap, MAC, work / f"vm-{mtu}", kernel=kernel,
                           initrd=initrd, memory_mb=512,
                           append=f"console=ttyS0 quiet panic=-1 aoetest.mtu={mtu} "
                                  f"aoetest.ramkb={size_mb * 1024} "
                                  f"aoetest.rounds={rounds} aoetest.targets={','.join(TARGETS)}")
    capture = None
    if capture_to is not None:  # the guest's request pattern, for docs/benchmarks.md
        capture = seg.server.popen("tcpdump", "-i", "eth0", "-s", "64", "-w",
                                   str(capture_to / f"aoe-{mtu}.pcap"), "ether proto 0x88a2",
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = cpu_seconds(service.proc.pid)  # its start-up (imports, Redis) is not the bench's
    split = user_system(service.proc.pid)
    try:
        vm.start()
        vm.wait_for("AOEBENCH-DONE", timeout=3600)
        # each target served the same reads and writes: its process's CPU time says what a
        # request cost it (the rest of the time is the guest's)
        cpu = {"e1.1": cpu_seconds(service.proc.pid) - started, "e2.1": cpu_seconds(vblades[0].pid),
               "e3.1": cpu_seconds(vblades[1].pid)}
        print(f"bench-aoe: MTU {mtu}: target CPU seconds over the run: " + ", ".join(
            f"{TARGETS[t]} {s:.2f}" for t, s in cpu.items()), flush=True)
        user, system = user_system(service.proc.pid)
        print(f"bench-aoe: MTU {mtu}: bootyard's CPU seconds: user {user - split[0]:.2f}, "
              f"system {system - split[1]:.2f}", flush=True)
        writes, syncs = write_batching(seg.server)
        print(f"bench-aoe: MTU {mtu}: bootyard wrote {writes} frames with {syncs} syncs "
              f"({writes / max(syncs, 1):.1f} writes per sync)", flush=True)
    finally:
        vm.stop()
        service.stop()
        for proc in vblades + ([capture] if capture else []):
            proc.terminate()
    out: dict[tuple[str, str], list[float]] = {}
    for line in vm.lines:
        m = LINE.search(line.text)
        if m:
            _, target, mode, nbytes, start, end = m.groups()
            seconds = max(float(end) - float(start), 0.01)
            out.setdefault((target, mode), []).append(int(nbytes) / 1e6 / seconds)
    return out


def run_sanboot(work: Path, size_mb: int, rounds: int,
                capture_to: Path | None = None) -> dict[str, list[float]]:
    """iPXE sanboot (SeaBIOS + iPXE ROM, bootyard DHCP and HTTP) of a disk whose boot sector
    reads all of it through INT 13h; from bootyard (e1.1) and from vblade (e2.1), alternating."""
    out: dict[str, list[float]] = {}
    with Lab() as lab:
        boot = BootLab(lab, work / "sanboot", stack="bootyard", assets=ensure_assets())
        try:
            hosts = {"bootyard": boot.plan.add_host("sbours"),
                     "vblade": boot.plan.add_host("sbvblade")}
            boot.start()
            ours, theirs = work / "sanboot-bootyard.img", work / "sanboot-vblade.img"
            nbytes = sanbench.make_disk(ours, size_mb)
            sanbench.make_disk(theirs, size_mb)
            # vblade's disk is an inventory export too (so HTTP renders its sanboot line), with a
            # backing bootyard cannot open: bootyard reports it and leaves e2.1 to vblade
            for name, shelf, backing in (("bootyard", 1, ours),
                                         ("vblade", 2, work / "served-by-vblade.img")):
                boot.stack.cli("blockexport", "add", f"sb-{name}", "--kind", "aoe",
                               "--backing", str(backing), "--aoe-shelf", str(shelf),
                               "--aoe-slot", "1")
                boot.stack.cli("profile", "set", hosts[name].name, "--export", f"sb-{name}")
                boot.stack.cli("host", "set", hosts[name].mac, "--boot-mode", "sanboot")
            service = BlockexportProcess(boot.server, boot.stack.redis_url,
                                         work / "blockexport-sanboot.log")
            vblade = boot.server.popen("vblade", "2", "1", "eth0", str(theirs),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # always captured (headers only): where each exchange's time went, target or guest
            pcap = (capture_to or work) / "aoe-sanboot.pcap"
            capture = boot.server.popen("tcpdump", "-i", "eth0", "-s", "64", "-w", str(pcap),
                                        "ether proto 0x88a2", stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            try:
                for r in range(rounds):  # each target first in every other round
                    for name in (list(hosts) if r % 2 == 0 else list(hosts)[::-1]):
                        result = boot.boot(hosts[name], BIOS, pattern=sanbench.END,
                                           timeout=1800)
                        start = result.vm.find(sanbench.START)
                        seconds = max(result.marker.t - start.t, 0.01)
                        out.setdefault(name, []).append(nbytes / 1e6 / seconds)
            finally:
                service.stop()
                vblade.terminate()
                capture.terminate()
                capture.wait(10)
        finally:
            boot.stop()
    for shelf, name in ((1, "bootyard"), (2, "vblade")):
        got = aoe_pattern.exchanges(str(pcap)).get(shelf)
        if got:
            print(f"bench-aoe: sanboot {name}: {got['requests']:.0f} ATA requests, the target "
                  f"answered in a median {got['target_us']:.0f} us ({got['target_s']:.2f} s in "
                  f"all), the guest sent the next after a median {got['guest_us']:.0f} us "
                  f"({got['guest_s']:.2f} s in all)", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mtus", default="1500,9000")
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "bench-aoe")
    parser.add_argument("--capture", type=Path, default=None,
                        help="directory: tcpdump of the AoE frames (64 bytes each) per MTU")
    parser.add_argument("--buffer-count", type=int, default=0,
                        help="bootyard's blockexport.buffer_count (0: its default)")
    parser.add_argument("--sanboot-mb", type=int, default=32,
                        help="disk read through iPXE sanboot (INT 13h); 0: skip")
    args = parser.parse_args(argv)
    if shutil.which("vblade") is None:
        print("bench-aoe: vblade missing: run scripts/install-debian-packages.sh", file=sys.stderr)
        return 1
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = bytes(range(256)) * 4096  # 1 MiB
    images = {}
    for target in TARGETS:
        images[target] = work / f"{TARGETS[target]}.img"
        with open(images[target], "wb") as f:
            for _ in range(args.size_mb):
                f.write(source)
    kernel, initrd = aoeguest.build(work / "guest", INIT, modules=aoeguest.MODULES + ("brd",))
    redis = UnixRedis(work / "redis")
    redis.start()
    results: dict[int, dict[tuple[str, str], list[float]]] = {}
    t0 = time.monotonic()
    try:
        for mtu in (int(m) for m in args.mtus.split(",") if m):
            with Lab() as lab:  # a fresh segment per MTU
                results[mtu] = run_mtu(
                    lab, work, redis, images, kernel, initrd, mtu, args.rounds, args.size_mb,
                    args.capture, {"buffer_count": str(args.buffer_count)}
                    if args.buffer_count else None)
        sanboot = run_sanboot(work, args.sanboot_mb, args.rounds, args.capture) if args.sanboot_mb else {}
    finally:
        redis.stop()
    print(f"bench-aoe: {args.size_mb} MiB, {args.rounds} round(s) per target, "
          f"{time.monotonic() - t0:.0f} s; MB/s (10^6 bytes), median over rounds")
    fields = []
    for mtu, found in results.items():
        for (target, mode), values in sorted(found.items()):
            print(f"  MTU {mtu:>5}  {NAMES[target]:<9} {mode:<9} "
                  f"{statistics.median(values):8.2f}  ({', '.join(f'{v:.2f}' for v in values)})")
        ours = statistics.median(found.get(("e1.1", "buffered"), [0.0]))
        theirs = statistics.median(found.get(("e2.1", "buffered"), [0.0]))
        ratio = ours / theirs if theirs else 0.0
        fields += [f"mbps_{mtu}={ours:.2f}", f"vblade_{mtu}={theirs:.2f}",
                   f"ratio_{mtu}={ratio:.2f}"]
    for name, values in sanboot.items():
        print(f"  iPXE sanboot (INT 13h, {args.sanboot_mb} MiB)  {name:<9} "
              f"{statistics.median(values):8.2f}  ({', '.join(f'{v:.2f}' for v in values)})")
    print("RESULT aoe " + " ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
