#!/usr/bin/env python3
"""The boot storm's HTTP stage alone, on loopback: the HTTP service's CPU per machine.

Each simulated machine does what the storm's machines do once iPXE has its lease: one keep-alive
connection from its own address (127.77.x.y, a lease for it in Redis, as DHCP would have written
it), ``GET /boot/ipxe?mac=M`` (its own script, rendered once), then the kernel and the initrd the
script names. ``--old CHECKOUT`` starts a second HTTP service from another checkout of the
repository on the same Redis and alternates the two, round by round, so a change's effect shows
even on a busy machine: the figure is the service process's CPU (``/proc/<pid>/stat``, user +
system) per machine, which load does not change much, not the wall time.

    .venv/bin/python scripts/bench/storm_http.py --machines 300 --rounds 4 [--old /tmp/old]

Each round uses fresh MACs (every script a render-cache miss, as in a storm). The services log
at INFO to files, as deployed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(NEW / "scripts"), str(NEW), str(NEW / "tests")]

import bench_http as bench  # noqa: E402
import redis  # noqa: E402
import yaml  # noqa: E402

from harness.redis_server import RedisServer  # noqa: E402

CMDLINE = "console=ttyS0 quiet panic=-1"
SIZES = {"vmlinuz": 8_200_000, "initrd.img": 1_300_000}


def macs_for(round_no: int, n: int) -> list[str]:
    return [f"52:54:{round_no:02x}:00:{i // 256:02x}:{i % 256:02x}" for i in range(n)]


def ip_for(round_no: int, i: int) -> str:
    return f"127.{77 + round_no}.{i // 250}.{i % 250 + 1}"


def inventory(macs: list[str]) -> dict:
    subnet = {"network": "127.0.0.0/8", "router": "127.0.0.1", "next_server": "127.0.0.1",
              "lease_time": "3600"}
    profile = {"kernel": "vmlinuz", "initrd": ["initrd.img"], "cmdline": CMDLINE,
               "install": "none", "description": "storm_http.py"}
    hosts = {mac: {"hostname": f"storm{i:05d}", "profile": "storm", "boot_mode": "install",
                   "kernel_args": f"storm.host={mac}"} for i, mac in enumerate(macs)}
    return {"subnets": {"storm": subnet}, "profiles": {"storm": profile}, "hosts": hosts}


def write_leases(url: str, round_no: int, macs: list[str]) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    expires = str(int(time.time()) + 3600)
    for i, mac in enumerate(macs):
        pipe.hset(f"bootyard:lease:{ip_for(round_no, i)}",
                  mapping={"mac": mac, "state": "bound", "expires": expires,
                           "subnet": "storm", "hostname": f"storm{i:05d}"})
    pipe.execute()
    client.close()


CPROFILE = """
import cProfile, sys, time
from services.http.__main__ import main
profile = cProfile.Profile(time.thread_time)  # CPU time of the event loop's thread
try:
    profile.runcall(main, [])
finally:
    profile.dump_stats(sys.argv[1])
"""


def start(repo: Path, redis_url: str, tmp: Path, name: str,
          cprofile: Path | None = None) -> tuple[subprocess.Popen, int]:
    port = bench.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({"PYTHONPATH": str(repo), "BOOTYARD_REDIS_URL": redis_url,
                "BOOTYARD_HTTP__HOST": "127.0.0.1", "BOOTYARD_HTTP__PORT": str(port),
                "BOOTYARD_HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
                "BOOTYARD_HTTP__ADMIN_ENABLED": "false",
                "BOOTYARD_HTTP__METRICS_PORT": str(bench.free_port()),
                "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
                "BOOTYARD_HTTP__TOKEN_SECRET": "storm-http-secret",
                "BOOTYARD_HTTP__IMAGES_ROOT": str(tmp / "images"),
                "BOOTYARD_HTTP__UNKNOWN_DELAY": "1",
                "BOOTYARD_HTTP__TEMPLATES_DIR": str(repo / "templates"),
                "BOOTYARD_LOG__LEVEL": "info"})
    log = open(tmp / f"{name}.log", "w")
    command = [sys.executable, "-c", CPROFILE, str(cprofile)] if cprofile else \
        [sys.executable, "-m", "services.http"]
    proc = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    bench.wait_http(f"http://127.0.0.1:{port}/healthz", proc, f"{name} ({repo})")
    return proc, port


def cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / tick, int(fields[12]) / tick


class Machine:
    BUF = 1 << 20

    def __init__(self, port: int, mac: str, ip: str, view: memoryview) -> None:
        self.port, self.mac, self.ip, self.view = port, mac, ip, view
        self.sock: socket.socket | None = None
        self.pending = b""

    async def get(self, path: str) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.sock, (
            f"GET {path} HTTP/1.1\r\nConnection: keep-alive\r\nUser-Agent: iPXE/1.21.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n\r\n").encode())
        head = bytearray(self.pending)
        while b"\r\n\r\n" not in head:
            data = await loop.sock_recv(self.sock, 65536)  # its own buffer: heads are kept
            if not data:
                raise ConnectionError("closed")
            head += data
        raw, _, rest = bytes(head).partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        if lines[0].split(" ")[1] != "200":
            raise RuntimeError(f"{path}: {lines[0]}")
        length = next(int(line.split(":")[1]) for line in lines
                      if line.lower().startswith("content-length:"))
        body = bytearray(rest[:length]) if length < 65536 else None
        got = len(rest[:length])
        self.pending = rest[length:]
        while got < length:
            if body is not None:  # a script: its own buffer
                data = await loop.sock_recv(self.sock, length - got)
                body += data
                n = len(data)
            else:  # a file: counted into the one shared buffer, never read
                n = await loop.sock_recv_into(self.sock, self.view[:min(self.BUF, length - got)])
            if n == 0:
                raise ConnectionError("closed mid-body")
            got += n
        return bytes(body) if body is not None else b""

    async def boot(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.bind((self.ip, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        self.sock = sock
        try:
            text = (await self.get(f"/boot/ipxe?mac={self.mac}")).decode()
            if self.mac not in text:
                raise RuntimeError(f"not {self.mac}'s script: {text[:100]!r}")
            for line in text.splitlines():
                if line.startswith(("kernel ", "initrd ")):
                    url = next(word for word in line.split() if word.startswith("http://"))
                    await self.get(url.split(f":{self.port}", 1)[1])
        finally:
            sock.close()


async def storm(port: int, round_no: int, macs: list[str], concurrency: int) -> float:
    buf = memoryview(bytearray(Machine.BUF))  # one buffer: the bodies are counted, not kept
    machines = [Machine(port, mac, ip_for(round_no, i), buf) for i, mac in enumerate(macs)]
    gate = asyncio.Semaphore(concurrency or len(machines))

    async def boot(machine: Machine) -> None:
        async with gate:
            await machine.boot()

    t0 = time.monotonic()
    results = await asyncio.gather(*(boot(m) for m in machines), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"{len(failed)} machines failed, e.g. {failed[0]!r}")
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machines", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=0,
                    help="machines booting at once (0: all of a round's, as in a storm)")
    ap.add_argument("--old", type=Path, help="another checkout to compare with (A/B)")
    ap.add_argument("--py-spy", type=Path, metavar="SVG",
                    help="record the new service with py-spy through the rounds (idle left out): an "
                         "SVG flame graph, or collapsed stacks for a .txt name")
    ap.add_argument("--cprofile", type=Path, metavar="PSTATS",
                    help="run the new service under cProfile (CPU time of its thread; the "
                         "profiler about doubles it) and write its stats here when it stops")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bootyard-storm-http-"))
    tmp.chmod(0o755)
    (tmp / "images").mkdir()
    for name, size in SIZES.items():
        (tmp / "images" / name).write_bytes(os.urandom(size))
    redis_server = RedisServer(tmp / "redis", unix_socket=True)  # as the storm runs it
    procs: list[subprocess.Popen] = []
    spy_proc = None
    try:
        redis_server.start()
        rounds = [macs_for(r, args.machines) for r in range(args.rounds * (2 if args.old else 1))]
        inv = tmp / "inventory.yaml"
        everything = inventory([mac for macs in rounds for mac in macs])
        inv.write_text(yaml.safe_dump(everything))
        bench.bootyard_cli(redis_server.url, "import", str(inv))
        for r, macs in enumerate(rounds):
            write_leases(redis_server.url, r, macs)
        services = {}
        for name, repo in (("new", NEW),) + ((("old", args.old.resolve()),) if args.old else ()):
            proc, port = start(repo, redis_server.url, tmp, name,
                               args.cprofile if name == "new" else None)
            procs.append(proc)
            services[name] = (proc, port)
        time.sleep(1.0)
        if args.py_spy:
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            spy_proc = subprocess.Popen(
                [spy, "record", "--pid", str(services["new"][0].pid), "--rate", "500",
                 "--nonblocking", "--output", str(args.py_spy),
                 "--format", "raw" if args.py_spy.suffix == ".txt" else "flamegraph"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        per: dict[str, list[float]] = {name: [] for name in services}
        for r, macs in enumerate(rounds):
            order = list(services)
            name = order[(r + r // 2) % len(order)] if args.old else "new"
            proc, port = services[name]
            before = cpu(proc.pid)
            wall = asyncio.run(storm(port, r, macs, args.concurrency))
            time.sleep(0.5)  # events and lease lookups after the last response
            after = cpu(proc.pid)
            user, system = after[0] - before[0], after[1] - before[1]
            ms = (user + system) / len(macs) * 1000
            per[name].append(ms)
            print(f"round {r + 1} {name}: {len(macs)} machines in {wall:.2f} s, service CPU "
                  f"{user + system:.2f} s (user {user:.2f}, sys {system:.2f}): "
                  f"{ms:.2f} ms per machine", flush=True)
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its output on ^C
            spy_proc.wait(60)
        for name, values in per.items():
            print(f"{name}: median {statistics.median(values):.2f} ms of CPU per machine "
                  f"(3 requests) over {len(values)} rounds")
        if args.old:
            print(f"new/old = {statistics.median(per['new']) / statistics.median(per['old']):.2f}")
        return 0
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            print(f"--- {log.name} (last lines)", file=sys.stderr)
            print("\n".join(log.read_text().splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        if spy_proc is not None and spy_proc.poll() is None:
            spy_proc.kill()
        bench.stop_all(procs)
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
