"""make bench-iscsi: bootyard's iSCSI target against tgtd (rdwr backing), same client, same
machine, loopback TCP, alternating round by round.

    python scripts/bench/iscsi.py [--seconds 10] [--rounds 3] [--size-mb 256] [--workdir DIR]

Each target serves its own copy of the same image (random data). Per round, for 1 and 4
sessions (4 client processes, their rates summed), in alternating target order:

- ``seq_read``: libiscsi's ``iscsi-perf -m 32 -b 256`` (128 KiB sequential reads, QD 32);
- ``rand_read``: ``iscsi-perf -m 32 -b 8 -r`` (4 KiB random reads, QD 32);
- ``seq_write``: ``iscsi_write`` (scripts/bench/iscsi_write.c, built here with libiscsi-dev:
  iscsi-perf only reads): 128 KiB sequential WRITE(10), QD 32. Both answer from the page cache
  (bootyard's export has the default ``write_cache: yes``, WCE 1, docs/blockexport.md; tgtd's
  rdwr backing says WCE 1 too).

Each run lasts ``--seconds``; the target's CPU time (utime + stime of its process, all threads)
over the run divided by the I/Os is its CPU per I/O. Medians over the rounds are printed per
case; the last line is (1 session; MB = 10^6 bytes)

    RESULT iscsi seq_mbps=<ours> tgtd_seq_mbps=<theirs> ratio_seq=<r> rand_iops=<ours> \
        tgtd_rand_iops=<theirs> ratio_rand=<r>      (one line)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "blockexport")]

from iscsiclient import LoopbackService, free_port  # noqa: E402

from harness.dhcpkit import UnixRedis  # noqa: E402
from harness.netlab import stop_process, wait_for  # noqa: E402

OURS_IQN = "iqn.2026-11.org.bootyard:bench"
TGT_IQN = "iqn.2026-11.org.bootyard:bench-tgtd"
CASES = {"seq_read": ("read", 256, False), "rand_read": ("read", 8, True),
         "seq_write": ("write", 256, False)}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def build_writer(workdir: Path) -> Path:
    out = workdir / "iscsi_write"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(out),
                    str(REPO / "scripts" / "bench" / "iscsi_write.c"), "-liscsi"],
                   check=True, timeout=120)
    return out


class Tgtd:
    def __init__(self, workdir: Path, image: Path) -> None:
        self.port = free_port()
        self.log = (workdir / "tgtd.log").open("w")
        for attempt in range(20):  # its own control socket (-C, at most 32767), not in use
            self.control = str(2000 + (os.getpid() + attempt * 997) % 28000)
            self.proc = subprocess.Popen(["tgtd", "-f", "-C", self.control, "--iscsi",
                                          f"portal=127.0.0.1:{self.port}"],
                                         stdout=self.log, stderr=subprocess.STDOUT)
            try:
                wait_for(self._ready, 20, what="tgtd to answer tgtadm")
                break
            except RuntimeError:
                continue
        else:
            raise RuntimeError(f"tgtd did not start: {(workdir / 'tgtd.log').read_text()}")
        adm = ["tgtadm", "-C", self.control, "--lld", "iscsi"]
        for argv in (["--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN],
                     ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
                      "-b", str(image), "--bstype", "rdwr"],
                     ["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"]):
            subprocess.run(adm + argv, check=True, timeout=30)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("tgtd exited")
        return subprocess.run(["tgtadm", "-C", self.control, "--lld", "iscsi", "--op", "show",
                               "--mode", "target"], capture_output=True,
                              timeout=10).returncode == 0

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def run_client(kind: str, url: str, blocks: int, random: bool, seconds: float,
               writer: Path) -> subprocess.Popen:
    if kind == "write":
        argv = [str(writer), url, str(blocks), "32", str(seconds)]
    else:
        argv = ["iscsi-perf", "-m", "32", "-b", str(blocks)] + (["-r"] if random else []) + [url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ios_of(kind: str, output: str, seconds: float) -> float:
    """I/Os per second one client reached."""
    if kind == "write":
        m = re.search(r"WRITE ios=(\d+) bytes=\d+ seconds=([\d.]+) failed=0", output)
        if not m:
            raise RuntimeError(f"iscsi_write: {output[-500:]}")
        return int(m.group(1)) / float(m.group(2))
    found = re.findall(r"iops average (\d+)", output)
    if not found:
        raise RuntimeError(f"iscsi-perf: {output[-500:]}")
    return float(found[-1])


def measure(case: str, url: str, pid: int, sessions: int, seconds: float,
            writer: Path) -> tuple[float, float]:
    """(I/Os per second, target CPU microseconds per I/O) of one run."""
    kind, blocks, random = CASES[case]
    before = cpu_seconds(pid)
    procs = [run_client(kind, url, blocks, random, seconds, writer) for _ in range(sessions)]
    if kind == "read":
        time.sleep(seconds)
        for p in procs:
            p.send_signal(signal.SIGINT)
    outputs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
    used = cpu_seconds(pid) - before
    rate = sum(ios_of(kind, out.replace("\r", "\n"), seconds) for out in outputs)
    return rate, used / max(rate * seconds, 1) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--sessions", default="1,4")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-iscsi-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sessions = [int(s) for s in args.sessions.split(",")]
    writer = build_writer(workdir)
    ours_img, tgt_img = workdir / "ours.img", workdir / "tgtd.img"
    subprocess.run(["dd", "if=/dev/urandom", f"of={ours_img}", "bs=1M",
                    f"count={args.size_mb}", "status=none"], check=True)
    shutil.copyfile(ours_img, tgt_img)
    redis = UnixRedis(workdir / "redis")
    redis.start()
    service = tgtd = None
    results: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    try:
        redis.client().hset("bootyard:export:bench", mapping={
            "kind": "iscsi", "backing": str(ours_img), "iqn": OURS_IQN})
        service = LoopbackService(redis.url, workdir / "blockexport.log",
                                  overlay_root=str(workdir / "overlays"))
        tgtd = Tgtd(workdir, tgt_img)
        targets = {"bootyard": (f"iscsi://127.0.0.1:{service.port}/{OURS_IQN}/0",
                                service.proc.pid),
                   "tgtd": (f"iscsi://127.0.0.1:{tgtd.port}/{TGT_IQN}/1", tgtd.proc.pid)}
        for rnd in range(args.rounds):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for n in sessions:
                for case in CASES:
                    for name in order:
                        url, pid = targets[name]
                        rate, cpu = measure(case, url, pid, n, args.seconds, writer)
                        results.setdefault((case, n, name), []).append((rate, cpu))
                        size = CASES[case][1] * 512
                        print(f"round={rnd + 1} case={case} sessions={n} target={name} "
                              f"iops={rate:.0f} mbps={rate * size / 1e6:.1f} "
                              f"cpu_us_per_io={cpu:.1f}", flush=True)
    finally:
        if service is not None:
            service.stop()
        if tgtd is not None:
            tgtd.stop()
        redis.stop()

    def median(case: str, n: int, name: str) -> tuple[float, float]:
        runs = results[(case, n, name)]
        return (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))

    print("\ncase        sessions  target    IOPS      MB/s   CPU us/IO")
    for case in CASES:
        size = CASES[case][1] * 512
        for n in sessions:
            for name in ("bootyard", "tgtd"):
                rate, cpu = median(case, n, name)
                print(f"{case:<11} {n:>8}  {name:<8} {rate:>7.0f} {rate * size / 1e6:>8.1f} "
                      f"{cpu:>10.1f}")
    seq, tseq = (median("seq_read", 1, t)[0] * 128 * 1024 / 1e6 for t in ("bootyard", "tgtd"))
    rand, trand = (median("rand_read", 1, t)[0] for t in ("bootyard", "tgtd"))
    print(f"RESULT iscsi seq_mbps={seq:.1f} tgtd_seq_mbps={tseq:.1f} "
          f"ratio_seq={seq / tseq:.2f} rand_iops={rand:.0f} tgtd_rand_iops={trand:.0f} "
          f"ratio_rand={rand / trand:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
