"""Boot storm: N machines powering on at once against bootyard and against dnsmasq + nginx.

Run by ``make bench-storm`` (as root: network namespaces). For each stack, a fresh segment: a
bridge namespace, a server namespace (eth0 198.19.0.1/20) running the stack, and one client
namespace whose eth0 carries one macvlan per machine (its own MAC: the server's DHCP, ARP and TCP
all see the machine). scripts/bench/storm_client.py runs the machines, ``--workers`` asyncio
processes of about 250 machines each: firmware DHCP, TFTP of iPXE, iPXE's DHCP, the per-host
script, kernel and initrd over HTTP, every file checked (see that module's docstring for the
retries and timeouts, taken from the PXE spec, OVMF and iPXE). Half the machines are BIOS
(arch 0: undionly.kpxe), half UEFI (arch 7: ipxe.efi); each powers on at a uniformly random time
in ``[0, spread]`` seconds. The stacks run in turn, the order flipped every round
(``--rounds``): bootyard, dnsmasq with its defaults (tftp-max 50, the ping check), dnsmasq with
``tftp-max`` raised to the storm's size, and that with ``no-ping``, iPXE's no-pxedhcp option and
an 8 MiB receive buffer too; nginx for HTTP in all three (scripts/bench/storm_stacks.py).
``--env BOOTYARD_X__Y=V`` gives bootyard's services a setting (A/B runs).

For each run: machines finished and failed (by stage and reason), the time from the first
power-on slot to the last machine's initrd, p50/p99 of each stage, retransmissions, the CPU
seconds of every server process (Redis and worker processes included; how much in user space)
and of the clients, and Redis's memory. The last line is
``RESULT storm clients=N bootyard_s=<t> classic_s=<t> ratio=<ours/theirs> failures=<n>``, where
classic_s is the best-configured classic run that ran (classic-tuned, else classic-raised; every
classic run's time and failures are printed above it), times are medians over the rounds and
failures are bootyard's over all rounds. ``--json FILE`` writes every run's summary (tests/storm
reads it). SIGTERM unwinds like an error: namespaces, processes and kernel limits are put back.

Bounds: every machine gives up after its firmware's retries, and the whole storm after
``--deadline`` seconds. With more than 200 machines the kernel's neighbour-table limits
(``net.ipv4.neigh.default.gc_thresh2/3``, one table for all namespaces: the server and the
machines hold ~2N entries) and ``net.core.netdev_max_backlog`` (a broadcast reaches every
macvlan at once) are raised for the run and restored afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storm_stacks import Bootyard, Classic, StormPlan, cpu_seconds  # noqa: E402

from harness.netlab import Lab  # noqa: E402

SERVER = "198.19.0.1"
NETWORK = "198.19.0.0/20"
POOL = ("198.19.1.0", "198.19.14.255")
STAGES = ("dhcp", "tftp", "ipxe_dhcp", "script", "kernel", "initrd")
STACKS = ("bootyard", "classic", "classic-raised", "classic-tuned")
CLIENT = Path(__file__).resolve().parent / "storm_client.py"
FILES_PER_MACHINE = 4  # the iPXE binary, the script, the kernel, the initrd
MISMATCH = re.compile(r"differ|sha256|not this machine's|tsize|bytes received")  # bad content


def mac_of(i: int) -> str:
    return f"52:54:5e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


# -- kernel settings for big storms ---------------------------------------------------------------
class Sysctls:
    """Raise global kernel limits for the run; put back what was there."""

    def __init__(self, wanted: dict[str, int]) -> None:
        self.saved: dict[str, str] = {}
        for key, value in wanted.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            old = path.read_text().strip()
            if int(old) < value:
                self.saved[key] = old
                path.write_text(str(value))

    def restore(self) -> None:
        for key, old in self.saved.items():
            (Path("/proc/sys") / key.replace(".", "/")).write_text(old)


def kernel_limits(n: int) -> Sysctls | None:
    if n <= 200:
        return None
    return Sysctls({"net.ipv4.neigh.default.gc_thresh2": 2 * n + 1024,
                    "net.ipv4.neigh.default.gc_thresh3": 2 * n + 2048,
                    "net.core.netdev_max_backlog": 4 * n + 1000})


# -- the segment ----------------------------------------------------------------------------------
def build_segment(lab: Lab, macs: list[str], workdir: Path):
    sw = lab.namespace("storm-sw")
    sw.run("ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0")
    sw.run("ip", "link", "set", "br0", "type", "bridge", "stp_state", "0", "ageing_time", "60000")
    sw.run("ip", "link", "set", "br0", "up")
    srv = lab.namespace("storm-srv")
    cli = lab.namespace("storm-cli")
    for ns in (srv, cli):  # no IPv6 chatter (router solicitations, DAD) from 1,000 interfaces
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
    # one address per machine interface: answer ARP only for that interface's own address
    cli.run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
    lab._wire(sw, srv, f"{SERVER}/{NETWORK.split('/')[1]}")
    lab._wire(sw, cli, None)
    batch = workdir / "macvlans.batch"
    with batch.open("w") as f:
        for i, mac in enumerate(macs):
            f.write(f"link add link eth0 name m{i} address {mac} type macvlan mode private "
                    f"bcqueuelen {max(1000, 4 * len(macs))}\nlink set m{i} up\n")
    cli.run("ip", "-batch", str(batch), timeout=300)
    return srv, cli


# -- one storm ------------------------------------------------------------------------------------
def run_storm(stack_name: str, args, files: dict[str, Path], assets, workroot: Path) -> dict:
    from lab.assets import populate

    n = args.clients
    macs = [mac_of(i) for i in range(n)]
    rng = random.Random(args.seed)
    delays = [rng.uniform(0, args.spread) for _ in range(n)]
    workdir = Path(tempfile.mkdtemp(prefix=f"{stack_name}-", dir=workroot))
    with Lab() as lab:
        srv, cli = build_segment(lab, macs, workdir)
        plan = StormPlan(SERVER, NETWORK, POOL, workdir, macs)
        populate(assets, plan.www_root, plan.tftp_root)
        if stack_name == "bootyard":
            stack = Bootyard(plan, srv, workdir, dict(kv.split("=", 1) for kv in args.env),
                             profile_http=args.profile_http)
        else:
            stack = Classic(plan, srv, workdir,
                            None if stack_name == "classic" else args.tftp_max or n,
                            tuned=stack_name == "classic-tuned")
        stack.start()
        try:
            pids = stack.pids()
            cpu0 = cpu_seconds(pids)
            workers = args.workers or max(1, math.ceil(n / 250))
            t0 = time.monotonic() + 2.0 + 0.5 * workers  # every worker ready before the first slot
            procs = []
            for w in range(workers):
                spec = {"lower": "eth0", "t0": t0, "deadline": args.deadline,
                        "verify": args.verify, "seed": args.seed * 1000 + w,
                        "files": {k: str(v) for k, v in files.items()},
                        "clients": [{"mac": macs[i], "arch": 7 if i % 2 else 0,
                                     "ifname": f"m{i}", "delay": delays[i]}
                                    for i in range(w, n, workers)]}
                spec_path = workdir / f"spec{w}.json"
                spec_path.write_text(json.dumps(spec))
                log = open(workdir / f"client{w}.log", "w")
                procs.append(cli.popen(sys.executable, str(CLIENT), str(spec_path),
                                       str(workdir / f"results{w}.json"), stdout=log,
                                       stderr=subprocess.STDOUT,
                                       env={**os.environ, "PYTHONPATH": str(REPO)}))
            for w, proc in enumerate(procs):
                try:
                    proc.wait(max(5.0, t0 + args.deadline + 60 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.returncode != 0:
                    raise RuntimeError(f"client worker {w} exited with {proc.returncode}: "
                                       f"{(workdir / f'client{w}.log').read_text()[-1500:]}")
            cpu1 = cpu_seconds(stack.pids())
            redis = stack.redis_memory()
        finally:
            stack.stop()
    results, client_cpu = [], 0.0
    for w in range(len(procs)):
        data = json.loads((workdir / f"results{w}.json").read_text())
        results += data["results"]
        client_cpu += data["cpu_s"]
    summary = summarise(stack_name, results, t0, args)
    summary["client_cpu_s"] = round(client_cpu, 2)
    summary["cpu_s"] = {name: round(cpu1[name][0] - cpu0.get(name, (0, 0))[0], 2)
                        for name in cpu1}
    summary["cpu_user_s"] = {name: round(cpu1[name][1] - cpu0.get(name, (0, 0))[1], 2)
                             for name in cpu1}
    summary["redis"] = redis
    summary["workdir"] = str(workdir)
    if not args.keep and summary["failed"] == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def summarise(stack: str, results: list[dict], t0: float, args) -> dict:
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    reasons: dict[str, int] = {}
    for r in failed:
        key = f"{r.get('stage')}: {re.sub(r'[0-9]+', 'N', r.get('reason', ''))}"
        reasons[key] = reasons.get(key, 0) + 1
    stages = {}
    for i, stage in enumerate(STAGES):
        start_key = "power_on" if i == 0 else STAGES[i - 1]
        values = [r["t"][stage] - r["t"][start_key] for r in results
                  if stage in r["t"] and start_key in r["t"]]
        stages[stage] = {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99), "n": len(values)}
    totals = [r["t"]["initrd"] - r["t"]["power_on"] for r in ok]
    stages["boot"] = {"p50": _pct(totals, 0.5), "p99": _pct(totals, 0.99), "n": len(totals)}
    last = max((r["t"]["initrd"] for r in ok), default=t0) - t0
    retries: dict[str, int] = {}
    for r in results:
        for key, value in r.get("retries", {}).items():
            retries[key] = retries.get(key, 0) + value
    verified = sum(r.get("verified", 0) for r in results)
    retries["naks"] = sum(r.get("naks", 0) for r in results)
    return {"stack": stack, "clients": len(results), "finished": len(ok), "failed": len(failed),
            "reasons": reasons, "time_to_last_s": round(last, 3), "stages": stages,
            "retries": retries, "files_verified": verified,
            # every finished machine checked its 4 files, and no machine failed on a bad byte
            "all_files_verified": all(r.get("verified") == FILES_PER_MACHINE for r in ok) and
            not any(MISMATCH.search(r.get("reason", "")) for r in failed),
            "verify": args.verify, "spread": args.spread}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_summary(s: dict) -> None:
    print(f"== {s['stack']}: {s['finished']}/{s['clients']} finished, {s['failed']} failed, "
          f"last machine at {s['time_to_last_s']:.2f} s (spread {s['spread']} s); "
          f"{s['files_verified']} files verified ({s['verify']}), all: {s['all_files_verified']}")
    for reason, count in sorted(s["reasons"].items(), key=lambda kv: -kv[1]):
        print(f"   failed {count:5d}  {reason}")
    print("   stage       p50 s     p99 s      n")
    for stage, v in s["stages"].items():
        print(f"   {stage:10s} {_fmt(v['p50']):>8s} {_fmt(v['p99']):>9s} {v['n']:6d}")
    cpu = s["cpu_s"]
    print(f"   retransmissions/retries: {s['retries']}")
    print(f"   server CPU {sum(cpu.values()):.2f} s: " +
          ", ".join(f"{k} {v:.2f} ({s['cpu_user_s'][k]:.2f} user)"
                    for k, v in sorted(cpu.items())) +
          f"; the clients' CPU {s['client_cpu_s']:.2f} s")
    if s["redis"]:
        print(f"   Redis memory: used {s['redis']['used'] / 2**20:.1f} MiB, peak "
              f"{s['redis']['peak'] / 2**20:.1f} MiB, rss {s['redis']['rss'] / 2**20:.1f} MiB")
    sys.stdout.flush()


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=0.0,
                    help="power-on window in seconds (0 = all at once; 10, 60 ...)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stacks", default=",".join(STACKS),
                    help=f"comma separated, of {', '.join(STACKS)}")
    ap.add_argument("--tftp-max", type=int, default=None,
                    help="dnsmasq's tftp-max in the classic-raised run (default: --clients)")
    ap.add_argument("--workers", type=int, default=None,
                    help="client processes (default: one per 250 machines)")
    ap.add_argument("--deadline", type=float, default=240.0,
                    help="seconds after the first power-on slot the storm is given up")
    ap.add_argument("--verify", choices=("compare", "sha256"), default="compare",
                    help="check TFTP/HTTP files byte for byte against the served files "
                         "(compare) or by their SHA-256")
    ap.add_argument("--env", action="append", default=[], metavar="BOOTYARD_X__Y=VALUE",
                    help="a setting for bootyard's services (A/B runs); repeatable")
    ap.add_argument("--profile-http", type=Path, default=None, metavar="PSTATS",
                    help="run bootyard's HTTP service under cProfile (CPU time; the profiler "
                         "about doubles it) and write its stats here")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--json", type=Path, default=None, help="write the runs' summaries here")
    ap.add_argument("--keep", action="store_true", help="keep every run's directory and logs")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench-storm: needs root (network namespaces)", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (timeout, make's interrupt) unwinds like an error: namespaces, processes and
        # the raised kernel limits are put back by the finally blocks
        signal.signal(signal.SIGTERM, _terminated)
    stacks = [s for s in args.stacks.split(",") if s]
    unknown = set(stacks) - set(STACKS)
    if unknown or not stacks:
        ap.error(f"--stacks: unknown {sorted(unknown)}; choose from {', '.join(STACKS)}")
    if args.clients < 1 or args.clients > 3000:
        ap.error("--clients is 1 to 3000 (the pool holds 3,584 addresses)")

    from lab.assets import ensure_assets
    assets = ensure_assets()
    files = {"undionly.kpxe": assets.tftp / "undionly.kpxe", "ipxe.efi": assets.tftp / "ipxe.efi",
             "vmlinuz": assets.kernel, "initrd.img": assets.initrd}
    workroot = Path(tempfile.mkdtemp(prefix="bootyard-storm-"))
    limits = kernel_limits(args.clients)
    runs: list[dict] = []
    try:
        print(f"storm: {args.clients} machines (half BIOS, half UEFI), spread {args.spread} s, "
              f"{args.rounds} round(s), stacks {', '.join(stacks)}; files: " +
              ", ".join(f"{k} {v.stat().st_size} B" for k, v in files.items()))
        if limits is not None and limits.saved:
            print(f"storm: raised for the run: {', '.join(limits.saved)}")
        for rnd in range(args.rounds):
            order = stacks if rnd % 2 == 0 else list(reversed(stacks))
            for name in order:
                summary = run_storm(name, args, files, assets, workroot)
                summary["round"] = rnd
                runs.append(summary)
                print_summary(summary)
    finally:
        if limits is not None:
            limits.restore()
        if args.json is not None:
            args.json.write_text(json.dumps(runs, indent=1))
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    return report(runs, args)


def report(runs: list[dict], args) -> int:
    def median_time(stack: str) -> float | None:
        values = [r["time_to_last_s"] for r in runs if r["stack"] == stack]
        return statistics.median(values) if values else None

    def failures(stack: str) -> int | None:
        values = [r["failed"] for r in runs if r["stack"] == stack]
        return sum(values) if values else None

    ours = median_time("bootyard")
    described = {"classic": "dnsmasq's defaults (tftp-max 50, ping check)",
                 "classic-raised": f"tftp-max {args.tftp_max or args.clients}",
                 "classic-tuned": f"tftp-max {args.tftp_max or args.clients}, no-ping, "
                                  "iPXE no-pxedhcp"}
    for name, words in described.items():
        if median_time(name) is not None:
            print(f"classic with {words}: last machine at {median_time(name):.2f} s, "
                  f"{failures(name)} failed")
    # the classic figure: its best-configured run that ran (the strictest comparison)
    used = next((name for name in ("classic-tuned", "classic-raised", "classic")
                 if median_time(name) is not None), None)
    theirs = median_time(used) if used else None
    if used:
        print(f"classic_s below: {used} ({described[used]})")
    ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
    print(f"RESULT storm clients={args.clients} bootyard_s={_fmt(ours)} classic_s={_fmt(theirs)} "
          f"ratio={ratio} failures={failures('bootyard') if ours is not None else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
