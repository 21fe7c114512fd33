#!/usr/bin/env python3
"""make bench-tftp: bootyard's TFTP against tftpd-hpa, dnsmasq and atftpd (issue 7).

Everything runs inside one private network namespace (its loopback only), made and removed
here with the test harness's Lab. The same client (atftp) fetches the same file from each
server, servers in alternation within each round; the median of the rounds is reported.

  - one client, 64 MiB, blksize 512 and 1468: bootyard, tftpd-hpa, dnsmasq
  - one client, 64 MiB, blksize 1468 + windowsize 16: bootyard, atftpd (Debian's dnsmasq 2.90
    predates windowsize and tftpd-hpa ignores it)
  - 50 concurrent clients, 16 MiB each, blksize 1468: aggregate MB/s per server
    (bootyard runs with its default tftp.workers, one per CPU; ``--workers N`` adds bootyard
    with tftp.workers=N, as ``bootyard-wN``, to this round only;
    ``--concurrent-rounds`` repeats it, servers alternating)
  - the same 50-client round under a fixed background load (issue 19): ``--load-procs`` (default
    1) busy-loop processes, unpinned, started before each server's turn and stopped after it
    (each also ends by itself after ``--load-max-s``), the same for every server

Placement: a lock-step transfer is one round trip per block, and its speed depends mostly on
whether client and server share a CPU (no cross-CPU wake-up: ~3x faster here) or not. Left to
the scheduler, that is a coin toss per transfer, and a median of 3 compared coin tosses (a run on
2026-11-29 measured tftpd-hpa at 84 MB/s and bootyard at 32 in the same round). So with 2+ CPUs
the one-client rounds pin every server to CPU 0 and the client to CPU 1 (``--placement cross``,
like a client on another machine), or both to CPU 0 (``same``), or leave it (``free``); the
concurrent rounds run with the clients unpinned and every server back where it placed itself
(bootyard's workers pin themselves: ``tftp.pin_workers``).

atftpd conflicts with tftpd-hpa as a package: it is unpacked with apt-get download + dpkg -x
into --cache. Run as root, wrapped in flock /tmp/bootyard-bench.lock (the make target does).
Last line: RESULT tftp mbps_1468=<ours> tftpd_hpa=<theirs> ratio_tftpd_hpa=<r>
ratio_windowed_atftpd=<r2> ratio_50=<ours/tftpd-hpa, 50 clients, quiet>
ratio_50_loaded=<the same under the background load>; with --workers also RESULT tftp_workers ...
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness.netlab import Lab, wait_for  # noqa: E402

PORTS = {"bootyard": 6969, "tftpd-hpa": 1069, "dnsmasq": 69, "atftpd": 2069}
ADDRESS = "127.0.0.1"


def atftpd_binary(cache: Path) -> Path:
    binary = cache / "atftpd" / "usr/sbin/atftpd"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "atftpd"], cwd=cache, check=True,
                       capture_output=True)
        deb = max(cache.glob("atftpd_*.deb"), key=lambda p: p.stat().st_mtime)
        subprocess.run(["dpkg", "-x", str(deb), str(cache / "atftpd")], check=True)
    return binary


def start_servers(ns, root: Path, work: Path, cache: Path, python: str,
                  workers: int = 0) -> dict:
    procs = {}
    sock = work / "redis.sock"
    ns.popen("redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
             "--appendonly", "no", "--dir", str(work), stdout=subprocess.DEVNULL)
    wait_for(sock.exists, 10, what="redis-server")
    env = dict(os.environ, BOOTYARD_REDIS_URL=f"unix://{sock}", BOOTYARD_TFTP__ROOT=str(root),
               BOOTYARD_TFTP__BIND=ADDRESS, BOOTYARD_TFTP__PORT=str(PORTS["bootyard"]),
               BOOTYARD_TFTP__METRICS_HOST=ADDRESS, BOOTYARD_TFTP__METRICS_PORT="9102",
               BOOTYARD_LOG__LEVEL="warning", PYTHONPATH=str(REPO))
    procs["bootyard"] = ns.popen(python, "-m", "services.tftp", env=env, cwd=REPO,
                                 stdout=(work / "bootyard.log").open("wb"),
                                 stderr=subprocess.STDOUT)
    if workers > 0:  # the same service with tftp.workers=N, for the many-client round
        name = f"bootyard-w{workers}"
        PORTS[name] = PORTS["bootyard"] + 100
        wenv = dict(env, BOOTYARD_TFTP__PORT=str(PORTS[name]), BOOTYARD_TFTP__METRICS_PORT="9103",
                    BOOTYARD_TFTP__WORKERS=str(workers))
        procs[name] = ns.popen(python, "-m", "services.tftp", env=wenv, cwd=REPO,
                               stdout=(work / f"{name}.log").open("wb"),
                               stderr=subprocess.STDOUT)
    procs["tftpd-hpa"] = ns.popen("in.tftpd", "-4", "-L", "-s", str(root), "-u", "root",
                                  "-a", f"{ADDRESS}:{PORTS['tftpd-hpa']}",
                                  "-P", str(work / "tftpd.pid"), stdout=subprocess.DEVNULL)
    procs["dnsmasq"] = ns.popen("dnsmasq", "--keep-in-foreground", "--port=0",
                                "--enable-tftp", f"--tftp-root={root}", "--tftp-max=200",
                                f"--listen-address={ADDRESS}", "--bind-interfaces",
                                f"--pid-file={work / 'dnsmasq.pid'}", "--user=root",
                                "--conf-file=/dev/null", "--quiet-tftp",
                                stdout=subprocess.DEVNULL)
    procs["atftpd"] = ns.popen(str(atftpd_binary(cache)), "--daemon", "--no-fork",
                               "--port", str(PORTS["atftpd"]), "--bind-address", ADDRESS,
                               "--user", "root.root", "--logfile", "/dev/null",
                               "--pidfile", str(work / "atftpd.pid"), "--maxthread", "200",
                               str(root), stdout=subprocess.DEVNULL)
    time.sleep(2)
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise SystemExit(f"bench-tftp: {name} did not start (exit {proc.returncode})")
    for name in [n for n in procs if n.startswith("bootyard")]:
        wait_ready(ns, name, procs[name])
    return procs


def wait_ready(ns, server: str, proc, timeout: float = 120) -> None:
    """bootyard's workers (one per CPU) take a while to start on a busy machine: wait until
    each has bound the listener port (the kernel hashes requests over the bound ones only), at
    most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench-tftp: {server} exited (status {proc.returncode})")
        workers = len(descendants(proc.pid)) - 1
        if workers < 1 or listeners(ns, PORTS[server]) >= max(1, workers):
            return
        time.sleep(0.2)
    raise SystemExit(f"bench-tftp: {server} not listening after {timeout:.0f} s")


def listeners(ns, port: int) -> int:
    """UDP sockets bound to ``port`` in the namespace (one per worker once they listen)."""
    out = ns.run("ss", "-Hun", "state", "all", f"sport = :{port}", check=False).stdout
    return len([line for line in out.splitlines() if line.strip()])


CLIENT_CPU: str | None = None   # set by --placement: taskset -c for the one-client rounds


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (bootyard's tftp.workers, started before pinning)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                pass
    return out


def pin(procs: dict, cpus: str | None) -> dict[int, set[int]]:
    """Pin every server (all its threads and processes; children forked later inherit it)
    to ``cpus``; returns each thread's CPU set as it was, for :func:`unpin`."""
    saved: dict[int, set[int]] = {}
    if cpus is None:
        return saved
    wanted = {int(cpu) for part in cpus.split(",") for cpu in (
        range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))}
    for proc in procs.values():
        for pid in descendants(proc.pid):
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    saved[int(task.name)] = os.sched_getaffinity(int(task.name))
                    os.sched_setaffinity(int(task.name), wanted)
                except OSError:
                    pass  # gone meanwhile
    return saved


def unpin(saved: dict[int, set[int]]) -> None:
    """Give every thread :func:`pin` moved its own CPU set back: bootyard's workers pin
    themselves (``tftp.pin_workers``), and the many-client rounds measure the service as it
    places itself, not as the one-client rounds left it (before 2026-12-06 10:00 they ran with
    the workers unpinned)."""
    for tid, cpus in saved.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def atftp(server: str, remote: str, local: str, blksize: int, window: int | None,
          cpu: str | None = None) -> list[str]:
    argv = (["taskset", "-c", cpu] if cpu else []) + [
        "atftp", "--tftp-timeout", "1", "--option", f"blksize {blksize}"]
    if window:
        argv += ["--option", f"windowsize {window}"]
    return argv + ["-g", "-r", remote, "-l", local, ADDRESS, str(PORTS[server])]


def fetch_time(ns, server, remote, blksize, window=None, local="/dev/null") -> float:
    started = time.monotonic()
    result = ns.run(*atftp(server, remote, local, blksize, window, CLIENT_CPU), check=False,
                    timeout=300)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"bench-tftp: atftp from {server} failed: {result.stderr[-500:]}")
    return elapsed


BUSY_LOOP = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\n" \
    "while time.monotonic() < end:\n    pass\n"


def background_load(procs: int, max_s: float) -> list[subprocess.Popen]:
    """``procs`` busy loops (unpinned, nice 0), each ending by itself after ``max_s``."""
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(max_s)])
            for _ in range(procs)]


def stop_load(load: list[subprocess.Popen]) -> None:
    for proc in load:
        proc.kill()
        proc.wait()


METRICS_PORTS = {"bootyard": 9102, "bootyard-w": 9103}  # BOOTYARD_TFTP__METRICS_PORT of each
SHARING = ("bootyard_tftp_handovers_total", "bootyard_tftp_moved_total")
BETWEEN = "between_blocks"  # of the moves: those between two blocks (the rest at a first ACK)


def sharing(ns, server: str) -> dict[str, float]:
    """How bootyard's workers have shared the clients so far: the ``sent`` side of its hand-over
    and move counters (docs/metrics.md), read from its /metrics, the moves between blocks also
    on their own (``BETWEEN``); {} for the other servers."""
    port = METRICS_PORTS.get("bootyard-w" if server.startswith("bootyard-w") else server)
    if port is None:
        return {}
    text = ns.run("curl", "-s", f"http://{ADDRESS}:{port}/metrics", check=False).stdout
    totals = dict.fromkeys(SHARING + (BETWEEN,), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals and sample.labels.get("direction") == "sent":
                totals[sample.name] += sample.value
                if sample.labels.get("at") == BETWEEN:
                    totals[BETWEEN] += sample.value
    return totals


def concurrent(ns, server, remote, size, clients, blksize) -> float:
    started = time.monotonic()
    errors = [tempfile.TemporaryFile() for _ in range(clients)]  # atftp's reason, if it fails
    procs = [ns.popen(*atftp(server, remote, "/dev/null", blksize, None),
                      stdout=subprocess.DEVNULL, stderr=errors[i])
             for i in range(clients)]
    reasons: list[str] = []
    for proc, error in zip(procs, errors):
        try:
            status = proc.wait(max(1, started + 600 - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = "timed out"
        if status != 0:
            error.seek(0)
            lines = error.read().decode(errors="replace").strip().splitlines()
            reasons.append(f"{status}: {lines[-1] if lines else 'no message'}")
        error.close()
    elapsed = time.monotonic() - started
    if reasons:
        print(f"  warning: {len(reasons)} of {clients} clients of {server} failed "
              f"(exit status: atftp's last line): {'; '.join(sorted(set(reasons)))}")
    return (clients - len(reasons)) * size / elapsed / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=str(REPO / "build/debs"))
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--concurrent-size-mib", type=int, default=16)
    parser.add_argument("--placement", choices=("cross", "same", "free"), default="cross",
                        help="one-client rounds: server CPU 0 and client CPU 1 (cross), both "
                        "on CPU 0 (same), or the scheduler's choice (free)")
    parser.add_argument("--workers", type=int, default=0,
                        help="also run bootyard with tftp.workers=N (as bootyard-wN; bootyard "
                        "itself has the default, one per CPU) in the many-client rounds; the "
                        "one-client rounds are unchanged")
    parser.add_argument("--concurrent-rounds", type=int, default=1,
                        help="rounds of the many-client round, servers alternating (median)")
    parser.add_argument("--load-procs", type=int, default=1,
                        help="busy-loop processes during the loaded many-client round (0: no "
                        "loaded round)")
    parser.add_argument("--load-max-s", type=float, default=120.0,
                        help="each busy loop ends by itself after this many seconds")
    parser.add_argument("--many", default="bootyard,tftpd-hpa,dnsmasq,atftpd",
                        help="servers of the many-client rounds (comma-separated; bootyard and "
                        "tftpd-hpa are needed for ratio_50; bootyard-wN is added with --workers)")
    parser.add_argument("--skip-one-client", action="store_true",
                        help="only the many-client rounds (and the windowed one-client round "
                        "for ratio_windowed_atftpd)")
    args = parser.parse_args()
    global CLIENT_CPU
    cpus = os.cpu_count() or 1
    placement = args.placement if cpus >= 2 else "free"
    CLIENT_CPU = {"cross": "1", "same": "0", "free": None}[placement]
    server_cpu = None if placement == "free" else "0"
    if os.geteuid() != 0:
        raise SystemExit("bench-tftp: needs root (network namespace, port 69 for dnsmasq)")
    size = args.size_mib << 20
    small = args.concurrent_size_mib << 20
    with tempfile.TemporaryDirectory(prefix="bootyard-bench-") as tmp, Lab() as lab:
        work = Path(tmp)
        os.chmod(work, 0o755)
        root = work / "root"
        root.mkdir(mode=0o755)
        (root / "bench.bin").write_bytes(os.urandom(size))
        (root / "small.bin").write_bytes(os.urandom(small))
        for f in root.iterdir():
            f.chmod(0o644)
        ns = lab.namespace("bench")
        # tftpd-hpa resolves its -a address with AI_ADDRCONFIG, which fails (exit 66) in a
        # namespace that has only a loopback address: give it one more (unused) address
        ns.run("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        ns.run("ip", "addr", "add", "198.18.254.1/24", "dev", "veth0")
        ns.run("ip", "link", "set", "veth0", "up")
        ns.run("ip", "link", "set", "veth1", "up")
        procs = start_servers(ns, root, work, Path(args.cache), sys.executable, args.workers)
        saved = pin({k: v for k, v in procs.items() if k in ("bootyard", "tftpd-hpa", "dnsmasq",
                                                             "atftpd")}, server_cpu)
        want = hashlib.sha256((root / "bench.bin").read_bytes()).hexdigest()
        for server in PORTS:  # correctness first: every server hands out the same bytes
            out = work / f"check-{server}"
            windows = server.startswith("bootyard") or server == "atftpd"
            fetch_time(ns, server, "bench.bin", 1468, 16 if windows else None, local=str(out))
            if hashlib.sha256(out.read_bytes()).hexdigest() != want:
                raise SystemExit(f"bench-tftp: {server} returned different bytes")
            out.unlink()
        print(f"bench-tftp: {args.size_mib} MiB file, atftp client, loopback in a namespace, "
              f"{args.rounds} rounds, servers alternating, placement {placement}; "
              f"MB/s (median)")
        runs: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for blksize in (512, 1468) if not args.skip_one_client else (1468,):
                for server in ("bootyard", "tftpd-hpa") + (
                        ("dnsmasq",) if not args.skip_one_client else ()):
                    t = fetch_time(ns, server, "bench.bin", blksize)
                    runs.setdefault((server, f"blksize {blksize}"), []).append(size / t / 1e6)
            for server in ("bootyard", "atftpd"):
                t = fetch_time(ns, server, "bench.bin", 1468, 16)
                runs.setdefault((server, "blksize 1468 windowsize 16"), []).append(
                    size / t / 1e6)
                t = fetch_time(ns, server, "bench.bin", 1468)
                runs.setdefault((server, "blksize 1468"), []).append(size / t / 1e6)
        unpin(saved)  # the many-client rounds: every server placed as it placed itself
        wanted = set(args.many.split(","))
        many = [s for s in PORTS if s.startswith("bootyard-w") or s in wanted]
        many.sort(key=lambda s: (not s.startswith("bootyard"), list(PORTS).index(s)))
        label = f"{args.clients} clients x {args.concurrent_size_mib} MiB, blksize 1468, aggregate"
        loaded = f"{label}, + {args.load_procs} busy loop(s)"
        for _ in range(args.concurrent_rounds):
            for server in many:
                before = sharing(ns, server)
                rate = concurrent(ns, server, "small.bin", small, args.clients, 1468)
                runs.setdefault((server, label), []).append(rate)
                if before:  # a low round next to a high one: did the workers share differently?
                    after = sharing(ns, server)
                    print(f"  {server} quiet round: {rate:.1f} MB/s, new requests handed over "
                          f"{after[SHARING[0]] - before[SHARING[0]]:.0f}, transfers moved to "
                          f"their client's CPU {after[SHARING[1]] - before[SHARING[1]]:.0f} "
                          f"(between blocks {after[BETWEEN] - before[BETWEEN]:.0f})")
        for _ in range(args.concurrent_rounds if args.load_procs > 0 else 0):
            for server in many:
                load = background_load(args.load_procs, args.load_max_s)
                try:
                    rate = concurrent(ns, server, "small.bin", small, args.clients, 1468)
                finally:
                    stop_load(load)
                runs.setdefault((server, loaded), []).append(rate)
        med = {key: statistics.median(values) for key, values in runs.items()}
        configs = list(dict.fromkeys(config for _, config in runs))
        servers = many
        print(f"{'configuration':72} " + " ".join(f"{s:>10}" for s in servers))
        for config in configs:
            cells = [f"{med[(s, config)]:10.1f}" if (s, config) in med else f"{'-':>10}"
                     for s in servers]
            print(f"{config:72} " + " ".join(cells))
        if args.concurrent_rounds > 1:
            for config in (label, loaded) if args.load_procs > 0 else (label,):
                print(f"{config}, rounds in order: " + "; ".join(
                    f"{s} " + " / ".join(f"{v:.1f}" for v in runs[(s, config)])
                    for s in servers))
        ours = med[("bootyard", "blksize 1468")]
        theirs = med[("tftpd-hpa", "blksize 1468")]
        windowed = med[("bootyard", "blksize 1468 windowsize 16")] / \
            med[("atftpd", "blksize 1468 windowsize 16")]
        print(f"bootyard windowsize 16 vs its own lock-step: "
              f"{med[('bootyard', 'blksize 1468 windowsize 16')] / ours:.2f}x")
        ratio_50 = med[("bootyard", label)] / med[("tftpd-hpa", label)]
        ratio_50_loaded = (f"{med[('bootyard', loaded)] / med[('tftpd-hpa', loaded)]:.2f}"
                           if args.load_procs > 0 else "-")
        print(f"RESULT tftp mbps_1468={ours:.1f} tftpd_hpa={theirs:.1f} "
              f"ratio_tftpd_hpa={ours / theirs:.2f} ratio_windowed_atftpd={windowed:.2f} "
              f"ratio_50={ratio_50:.2f} ratio_50_loaded={ratio_50_loaded}")
        if args.workers > 0:
            config = label
            print(f"RESULT tftp_workers workers={args.workers} "
                  f"mbps_{args.clients}_clients={med[(f'bootyard-w{args.workers}', config)]:.1f} "
                  f"default_workers={med[('bootyard', config)]:.1f} "
                  f"tftpd_hpa={med[('tftpd-hpa', config)]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
