"""DHCP benchmark: perfdhcp DORA exchanges/s at under 1% loss, bootyard vs Kea vs dnsmasq.

Run by ``make bench-dhcp`` (as root: it builds a network namespace lab). One lab segment; the
server namespace has 198.18.N.1/24 and 198.19.0.1/16 on eth0; perfdhcp runs in a client
namespace as a relay at 198.19.0.5, so every server hands out the same pool
(198.19.1.0-198.19.160.255, 40,960 addresses, one-hour leases) of the same /16 to the same
client. Each trial starts the server afresh with empty lease state, runs perfdhcp at a fixed
rate for a few seconds, and counts loss as 1 - ACKs received / DISCOVERs sent. A server's search
climbs by x1.5 until a trial loses 1% or more, then bisects; the three servers' searches run in
alternation (one trial each in turn). A failed trial is run a second time before it counts (the
machine is shared, and a burst of other load can sink one trial of any server). A search ends
when the highest passing and lowest failing rates are within 5% of each other, or after
``--max-trials`` trials (13: enough for the 5% at these rates; with 9, bootyard and Kea both
ended between 11,389 and 14,236/s on 2026-11-29, a tie the finer search undoes). Rates are at
most 20,000/s, each trial ``--seconds`` long.

bootyard runs with its leases persisted in a redis-server with AOF (appendfsync everysec),
events on (the default), log level info (the default) unless ``--log-level`` says otherwise.
Kea 2.2 uses its memfile backend (persisted CSV), dnsmasq ``--no-ping`` (its 3 s ping check
loses most exchanges under load; docs/benchmarks.md).

``--profile FILE`` instead runs bootyard once under cProfile at ``--rate`` and writes the stats;
``--py-spy FILE`` samples the running service with py-spy (no tracing overhead: the shares are
the real ones), writes the collapsed stacks to FILE and prints where the time went.
The last line of a benchmark run is
``RESULT dhcp dora_per_s=<ours> kea=<kea> dnsmasq=<dnsmasq> ratio_kea=<ours/kea> cpu_us=<ours>
kea_cpu_us=<kea> cpu_ratio=<ours/kea>``: the cpu figures are user+system µs per acknowledged
exchange in the trial of each server's highest passing rate, bootyard's service and its Redis
together. ``--pure`` runs bootyard's pure-Python packet path even where it is compiled
(``BOOTYARD_DHCP_NATIVE=0``, services/dhcp/__init__.py), for A/B runs with ``--fixed``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness.netlab import Lab, wait_for  # noqa: E402

POOL = ("198.19.1.0", "198.19.160.255")
RELAY = "198.19.0.5"
SERVER_EXTRA = "198.19.0.1"
WORKERS: int | None = None
EVENTS: str | None = None
PURE = False


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "777", "--dir", str(self.dir), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--logfile", str(self.dir / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", 10, what="redis")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def cli(self, *args: str) -> str:
        res = subprocess.run(["redis-cli", "-s", str(self.socket), *args], capture_output=True,
                             text=True)
        return res.stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Server:
    """One DHCP server under test, started afresh per trial."""

    name = ""

    def __init__(self, ns, workdir: Path) -> None:
        self.ns = ns
        self.dir = workdir
        self.proc = None

    def start(self) -> None:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        """The processes whose CPU time a trial reports."""
        return {self.name: self.proc.pid} if self.proc is not None else {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Bootyard(Server):
    name = "bootyard"

    def __init__(self, ns, workdir, redis: Redis, network: str, log_level: str,
                 profile: Path | None = None) -> None:
        super().__init__(ns, workdir)
        self.redis = redis
        self.network = network
        self.log_level = log_level
        self.profile = profile

    def start(self) -> None:
        self.redis.cli("FLUSHALL")
        self.redis.cli("HSET", "bootyard:subnet:lab", "network", self.network)
        self.redis.cli("HSET", "bootyard:subnet:bench", "network", "198.19.0.0/16",
                       "ranges", f"{POOL[0]}-{POOL[1]}", "relays", RELAY, "lease_time", "3600")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        env.update({"BOOTYARD_REDIS_URL": self.redis.url, "BOOTYARD_DHCP__INTERFACES": "eth0",
                    "BOOTYARD_DHCP__METRICS_HOST": "127.0.0.1", "BOOTYARD_LOG__LEVEL":
                    self.log_level, "PYTHONPATH": str(REPO)})
        if WORKERS:
            env["BOOTYARD_DHCP__BATCHES_IN_FLIGHT"] = str(WORKERS)
        if EVENTS:
            env["BOOTYARD_DHCP__EVENTS"] = EVENTS
        if PURE:
            env["BOOTYARD_DHCP_NATIVE"] = "0"
        log = (self.dir / "bootyard.log").open("w")
        if self.profile:
            code = ("import cProfile, time, services.dhcp.__main__ as m; "
                    "p = cProfile.Profile(time.process_time); "  # CPU time, not waiting
                    f"p.runcall(m.main, []); p.dump_stats({str(self.profile)!r})")
            argv = [sys.executable, "-c", code]
        else:
            argv = [sys.executable, "-m", "services.dhcp"]
        self.proc = self.ns.popen(*argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  cwd=str(REPO))
        wait_for(lambda: "event=serving" in (self.dir / "bootyard.log").read_text()
                 or self.proc.poll() is not None, 60, what="bootyard dhcp")
        if self.proc.poll() is not None:
            raise RuntimeError((self.dir / "bootyard.log").read_text()[-2000:])


    def pids(self) -> dict[str, int]:
        return {**super().pids(), "redis": self.redis.proc.pid}


class Kea(Server):
    name = "kea"

    def start(self) -> None:
        leases = self.dir / "kea-leases.csv"
        for f in self.dir.glob("kea-leases*"):
            f.unlink()
        config = {"Dhcp4": {
            "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "name": str(leases), "persist": True,
                               "lfc-interval": 0},
            "valid-lifetime": 3600,
            "subnet4": [{"id": 1, "subnet": "198.19.0.0/16",
                         "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                         "relay": {"ip-addresses": [RELAY]}}],
            "loggers": [{"name": "kea-dhcp4", "severity": "INFO",
                         "output_options": [{"output": str(self.dir / "kea.log")}]}],
        }}
        path = self.dir / "kea.json"
        path.write_text(json.dumps(config))
        env = dict(os.environ, KEA_LOCKFILE_DIR=str(self.dir), KEA_PIDFILE_DIR=str(self.dir))
        self.proc = self.ns.popen("kea-dhcp4", "-c", str(path), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ns.run("ss", "-lun").stdout.count(":67 ") > 0
                 or self.proc.poll() is not None, 20, what="kea")
        if self.proc.poll() is not None:
            raise RuntimeError("kea-dhcp4 exited")


class Dnsmasq(Server):
    name = "dnsmasq"

    def start(self) -> None:
        leases = self.dir / "dnsmasq.leases"
        leases.unlink(missing_ok=True)
        self.proc = self.ns.popen(
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
            "--bind-interfaces", "--no-ping", "--dhcp-authoritative", "--quiet-dhcp",
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,1h", "--dhcp-lease-max=100000",
            f"--dhcp-leasefile={leases}", f"--pid-file={self.dir / 'dnsmasq.pid'}",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ns.run("ss", "-lun").stdout.count(":67 ") > 0
                 or self.proc.poll() is not None, 20, what="dnsmasq")
        if self.proc.poll() is not None:
            raise RuntimeError("dnsmasq exited")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process so far (zeros if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")


@contextlib.contextmanager
def same_receive_buffers():
    """Every server's DHCP socket gets the receive buffer bootyard's asks for.

    bootyard sets SO_RCVBUF to 4 MiB (the kernel doubles it: 8 MiB); Kea and dnsmasq have no
    setting for it and get ``net.core.rmem_default`` (208 KiB here), so a short stall of the
    machine drops their packets in the kernel while ours wait in the buffer. For the run the
    default is raised to the same 8 MiB (a kernel-wide setting: only sockets created meanwhile
    get it, and nothing else benchmarks while the lock is held); restored afterwards."""
    from services.dhcp.transport import RCVBUF

    before = RMEM_DEFAULT.read_text().strip()
    RMEM_DEFAULT.write_text(str(2 * RCVBUF))
    try:
        yield
    finally:
        RMEM_DEFAULT.write_text(before)


def receive_buffer(ns) -> int:
    """The receive buffer (bytes) of the socket listening on UDP port 67 in ``ns``."""
    out = ns.run("ss", "-lumnH", "sport = :67").stdout
    found = re.search(r"rb(\d+)", out)
    return int(found.group(1)) if found else 0


def udp_receive_drops(ns) -> int:
    """Datagrams the kernel dropped in ``ns`` because a socket's receive buffer was full."""
    lines = [ln.split() for ln in ns.run("cat", "/proc/net/snmp").stdout.splitlines()
             if ln.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"]) if len(lines) >= 2 else 0


def perfdhcp(ns, target: str, rate: int, seconds: float, trial: int,
             pids: dict[str, int] | None = None, server_ns=None) -> dict:
    """One bounded perfdhcp run; returns sent discovers, received acks, achieved rate, delays,
    and the CPU time per acknowledged exchange of each process in ``pids`` and of perfdhcp."""
    pids = pids or {}
    count = int(rate * seconds)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    drops = udp_receive_drops(server_ns) if server_ns is not None else 0
    rcvbuf = receive_buffer(server_ns) if server_ns is not None else 0
    mac = f"mac=02:{trial % 256:02x}:00:00:00:00"
    res = ns.run("timeout", str(int(seconds) + 15), "perfdhcp", "-4", "-l", RELAY,
                 "-r", str(rate), "-n", str(count), "-p", str(int(seconds) + 5),
                 "-R", str(count + 1), "-d", "1", "-W", "500000", "-b", mac, target,
                 check=False, timeout=seconds + 30)
    if server_ns is not None:
        drops = udp_receive_drops(server_ns) - drops
    used = {}
    for name, pid in pids.items():
        user, system = cpu_seconds(pid)
        used[name] = (user - before[name][0], system - before[name][1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used["perfdhcp"] = (after.ru_utime - children.ru_utime, after.ru_stime - children.ru_stime)
    out = res.stdout
    sent = [int(x) for x in re.findall(r"sent packets: (\d+)", out)]
    received = [int(x) for x in re.findall(r"received packets: (\d+)", out)]
    delays = re.findall(r"avg delay: ([\d.]+) ms", out)
    rate_line = re.search(r"Rate: ([\d.]+) 4-way", out)
    if len(sent) < 2 or len(received) < 2:
        return {"discovers": count, "acks": 0, "loss": 1.0, "rate": 0.0, "raw": out[-800:]}
    discovers, acks = sent[0], received[1]
    # "user+system" microseconds of CPU per acknowledged exchange
    cpu = ({name: f"{u / acks * 1e6:.0f}+{s / acks * 1e6:.0f}" for name, (u, s) in used.items()}
           if acks else {})
    # the server's own CPU per exchange, its Redis included (not perfdhcp's)
    server_cpu = (sum(u + s for name, (u, s) in used.items() if name != "perfdhcp") / acks * 1e6
                  if acks else 0.0)
    return {"discovers": discovers, "acks": acks, "cpu_us_per_dora": cpu, "server_cpu_us": server_cpu,
            "server_socket_drops": drops, "rcvbuf": rcvbuf,
            "loss": 1 - acks / discovers if discovers else 1.0,
            "rate": float(rate_line.group(1)) if rate_line else 0.0,
            "offer_ms": float(delays[0]) if delays else None,
            "ack_ms": float(delays[1]) if len(delays) > 1 else None}


def py_spy_run(server: Bootyard, loader, target: str, rate: int, seconds: float,
               out: Path) -> dict:
    """perfdhcp at ``rate`` while py-spy samples the service (idle samples dropped)."""
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy_bin).exists():
        raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy (PyPI)")
    spy = subprocess.Popen([spy_bin, "record", "-p", str(server.proc.pid), "-f", "raw",
                            "-r", "250", "-d", str(int(seconds) + 1), "-o", str(out),
                            "--nonblocking", "--gil"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    result = perfdhcp(loader, target, rate, seconds, 1, server.pids(), server.ns)
    spy.wait(seconds + 30)
    print(spy_summary(out))
    return result


def spy_summary(path: Path, top: int = 25) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if frames and "select" in frames[-1] and "selectors" in frames[-1]:
            continue  # idle in epoll
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    lines = [f"busy samples: {total}", "self:"]
    lines += [f"  {v / total * 100:5.1f}%  {k}" for k, v in
              sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines.append("inclusive:")
    lines += [f"  {v / total * 100:5.1f}%  {k}" for k, v in
              sorted(incl.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def codec_timings(rounds: int = 2000) -> str:
    """Decode/encode time per packet, our codec vs scapy, on a PXE DISCOVER and its OFFER."""
    import dataclasses
    import ipaddress
    import timeit

    from scapy.layers.dhcp import BOOTP, DHCP

    from services.dhcp import codec, policy
    from services.dhcp.policy import Lease, ServerContext
    from shared.records import Host, Subnet

    discover = bytes(BOOTP(op=1, xid=7, chaddr=bytes.fromhex("525400000001") + bytes(10)) / DHCP(
        options=[("message-type", "discover"), ("vendor_class_id", b"PXEClient:Arch:00000"),
                 (93, b"\x00\x00"), ("param_req_list", [1, 3, 6, 42, 43, 60, 66, 67]), "end"]))
    msg = codec.decode(discover)
    subnet = Subnet("b", ipaddress.IPv4Network("198.19.0.0/16"), router="198.19.0.1")
    ctx = ServerContext("198.19.0.1", "http://198.19.0.1:8080")
    offer = policy.decide(msg, None, None, subnet, Lease("198.19.1.1", 3600), ctx,
                          "52:54:00:00:00:01").message
    optioned = Host("52:54:00:00:00:01", options={"ntp-servers": "198.19.0.5",
                                                  "tftp-server-name": "boot.example"})
    subnet_options = dataclasses.replace(subnet, options={"domain-name-servers": "198.19.0.2"})
    per = {
        "codec.decode": timeit.timeit(lambda: codec.decode(discover), number=rounds),
        "scapy decode": timeit.timeit(lambda: BOOTP(discover), number=rounds // 10) * 10,
        "policy.decide": timeit.timeit(lambda: policy.decide(
            msg, None, None, subnet, Lease("198.19.1.1", 3600), ctx, "52:54:00:00:00:01"),
            number=rounds),
        # a host with two custom options and a subnet with one (docs/dhcp.md "Custom options")
        "policy.decide+options": timeit.timeit(lambda: policy.decide(
            msg, optioned, None, subnet_options, Lease("198.19.1.1", 3600), ctx,
            "52:54:00:00:00:01"), number=rounds),
        "codec.encode": timeit.timeit(lambda: codec.encode(offer), number=rounds),
        "scapy build": timeit.timeit(lambda: bytes(BOOTP(op=2, yiaddr="198.19.1.1") / DHCP(
            options=[("message-type", "offer"), ("server_id", "198.19.0.1"),
                     ("lease_time", 3600), ("router", "198.19.0.1"), "end"])),
            number=rounds // 10) * 10,
    }
    return "  ".join(f"{k}={v / rounds * 1e6:.1f}us" for k, v in per.items())


def search(start: int, max_trials: int):
    """Yields rates to try; send() back whether the trial passed (loss < 1%)."""
    best, worst, rate = 0, None, start
    for _ in range(max_trials):
        passed = yield rate
        if passed:
            best = rate
        else:
            worst = rate
        if worst is None:
            rate = min(int(rate * 1.5), 20000)
            if rate == best:
                return
        else:
            if worst - best <= max(50, best // 20):
                return
            rate = (best + worst) // 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each trial")
    parser.add_argument("--max-trials", type=int, default=13)
    parser.add_argument("--servers", default="bootyard,kea,dnsmasq")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--workers", type=int, default=None,
                        help="bootyard dhcp.batches_in_flight (formerly dhcp.workers)")
    parser.add_argument("--events", choices=("all", "leases", "none"), default=None,
                        help="bootyard dhcp.events (default: the service's, leases; 'none' is "
                             "for finding what the timeline costs, not how we deploy)")
    parser.add_argument("--profile", help="write a cProfile of bootyard at --rate to this file")
    parser.add_argument("--py-spy", dest="py_spy",
                        help="sample bootyard with py-spy at --rate; collapsed stacks to FILE")
    parser.add_argument("--pure", action="store_true",
                        help="bootyard's pure-Python packet path even if compiled")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--start", type=int, default=1000,
                        help="the rate bootyard's and Kea's searches start at (dnsmasq's: "
                             "a tenth of it); near their limits, a shorter run")
    parser.add_argument("--fixed", type=int, default=0, metavar="N",
                        help="instead of the search: N rounds of one trial per server at --rate "
                             "(CPU time per exchange is steadier than the pass/fail limit)")
    args = parser.parse_args()
    global WORKERS, EVENTS, PURE
    WORKERS, EVENTS, PURE = args.workers, args.events, args.pure
    if os.geteuid() != 0:
        print("bench-dhcp needs root (network namespaces)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import services.dhcp as package
    print("bootyard packet path: " + ("pure Python (--pure)" if args.pure else "compiled (mypyc)"
          if package.NATIVE else f"pure Python ({package.NATIVE_REASON})"), flush=True)
    print(f"per packet: {codec_timings()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bootyard-bench-dhcp-"))
    redis = Redis(work / "redis")
    try:
        with Lab() as lab, same_receive_buffers():
            seg = lab.segment()
            loader = seg.add_client(seg.address(5) + "/24")
            seg.server.run("ip", "addr", "add", f"{SERVER_EXTRA}/16", "dev", "eth0")
            loader.run("ip", "addr", "add", f"{RELAY}/16", "dev", "eth0")
            target = SERVER_EXTRA
            if args.py_spy:
                ours = Bootyard(seg.server, work, redis, seg.network, args.log_level)
                ours.start()
                result = py_spy_run(ours, loader, target, args.rate, args.seconds,
                                    Path(args.py_spy).resolve())
                ours.stop()
                print(f"py-spy at {args.rate}/s: {result}; stacks in {args.py_spy}")
                return 0
            if args.profile:
                ours = Bootyard(seg.server, work, redis, seg.network, args.log_level,
                                Path(args.profile).resolve())
                ours.start()
                result = perfdhcp(loader, target, args.rate, args.seconds, 1, ours.pids(),
                                  ours.ns)
                ours.stop()
                print(f"profile at {args.rate}/s: {result}; stats in {args.profile}")
                return 0
            makers = {"bootyard": lambda: Bootyard(seg.server, work, redis, seg.network,
                                                   args.log_level),
                      "kea": lambda: Kea(seg.server, work),
                      "dnsmasq": lambda: Dnsmasq(seg.server, work)}
            starts = {"bootyard": args.start, "kea": args.start,
                      "dnsmasq": max(100, args.start // 10)}
            names = [n for n in args.servers.split(",") if n]
            servers = {n: makers[n]() for n in names}
            if args.fixed:
                fixed_cpu: dict[str, list[float]] = {n: [] for n in names}
                for round_ in range(args.fixed):
                    for name, server in servers.items():
                        server.start()
                        try:
                            result = perfdhcp(loader, target, args.rate, args.seconds,
                                              round_ * len(servers) + names.index(name),
                                              server.pids(), server.ns)
                        finally:
                            server.stop()
                        print(f"{name:9s} rate={args.rate:6d}/s "
                              f"achieved={result['rate']:8.1f}/s "
                              f"loss={result['loss'] * 100:6.2f}% "
                              f"offer={result.get('offer_ms')}ms ack={result.get('ack_ms')}ms "
                              f"cpu_us/dora={result.get('cpu_us_per_dora')} "
                              f"drops={result.get('server_socket_drops')} "
                              f"rcvbuf={result.get('rcvbuf')}", flush=True)
                        if result.get("server_cpu_us"):
                            fixed_cpu[name].append(result["server_cpu_us"])
                print("FIXED median server CPU per exchange (us, Redis included): " + " ".join(
                    f"{n}={statistics.median(v):.1f}" for n, v in fixed_cpu.items() if v))
                return 0
            searches = {n: search(starts[n], args.max_trials) for n in names}
            pending = {n: next(searches[n]) for n in names}
            best: dict[str, float] = {n: 0.0 for n in names}
            best_cpu: dict[str, float] = {n: 0.0 for n in names}  # at the highest passing rate
            trial = 0
            while pending:
                for name in list(pending):
                    rate = pending[name]
                    trial += 1
                    server = servers[name]
                    for attempt in (1, 2):  # a failed trial is run once more (noisy machine)
                        server.start()
                        try:
                            result = perfdhcp(loader, target, rate, args.seconds, trial,
                                              server.pids(), server.ns)
                        finally:
                            server.stop()
                        passed = result["loss"] < 0.01
                        if passed or attempt == 2:
                            break
                        trial += 1
                        print(f"{name:9s} rate={rate:6d}/s loss={result['loss'] * 100:6.2f}% "
                              "(first attempt; running it again)", flush=True)
                    if passed and rate >= best[name]:  # the rate perfdhcp initiated
                        best[name] = float(rate)  # exchanges at, answered in full
                        best_cpu[name] = result.get("server_cpu_us", 0.0)
                    print(f"{name:9s} rate={rate:6d}/s achieved={result['rate']:8.1f}/s "
                          f"loss={result['loss'] * 100:6.2f}% "
                          f"offer={result.get('offer_ms')}ms ack={result.get('ack_ms')}ms "
                          f"cpu_us/dora={result.get('cpu_us_per_dora')} "
                          f"drops={result.get('server_socket_drops')} "
                          f"rcvbuf={result.get('rcvbuf')} "
                          f"{'pass' if passed else 'FAIL'}", flush=True)
                    try:
                        pending[name] = searches[name].send(passed)
                    except StopIteration:
                        del pending[name]
            ours, kea, dnsmasq = (best.get(n, 0.0) for n in ("bootyard", "kea", "dnsmasq"))
            ratio = ours / kea if kea else 0.0
            cpu, kea_cpu = best_cpu.get("bootyard", 0.0), best_cpu.get("kea", 0.0)
            print("CPU per acknowledged exchange at each server's highest passing rate (us, "
                  "user+system, bootyard's Redis included): " + " ".join(
                      f"{n}={best_cpu[n]:.1f}@{best[n]:.0f}/s" for n in names))
            print(f"RESULT dhcp dora_per_s={ours:.0f} kea={kea:.0f} dnsmasq={dnsmasq:.0f} "
                  f"ratio_kea={ratio:.2f} cpu_us={cpu:.0f} kea_cpu_us={kea_cpu:.0f} "
                  f"cpu_ratio={cpu / kea_cpu if kea_cpu else 0.0:.2f}")
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
