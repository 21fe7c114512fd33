"""Memory and limits at fleet size: 20,000 hosts, 1M events, 10,000 leases.

Fills a private Redis (append-only file on, as deployed) in a lab namespace, then measures what
an operator pays for that size: Redis memory after each step, each service's start time (until
it logs that it serves) and resident memory once started, and the CLI's ``host list`` and
``validate`` times. ``sudo .venv/bin/python scripts/fleet_size.py [--hosts N] [--events N]
[--leases N]``; the last line is ``RESULT fleet ...``. Bounded; the namespaces go away after.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.dhcpkit import UnixRedis  # noqa: E402
from harness.labservice import LabService  # noqa: E402
from harness.netlab import Lab, wait_for  # noqa: E402

KINDS = ("dhcp.discover", "dhcp.offer", "dhcp.ack", "tftp.transfer", "http.script")


def mac(n: int) -> str:
    return "52:54:%02x:%02x:%02x:%02x" % (n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)


def fill(client, hosts: int, events: int, leases: int) -> dict:
    out = {}
    client.hset("bootyard:subnet:fleet", mapping={
        "network": "10.64.0.0/16", "ranges": "10.64.0.10-10.64.63.255", "lease_time": "3600"})
    for name in ("debian12", "rocky9", "live"):
        client.hset(f"bootyard:profile:{name}", mapping={
            "kernel": f"{name}/vmlinuz", "initrd": f"{name}/initrd.img",
            "cmdline": "console=ttyS0"})
    out["redis_empty_mib"] = used(client)
    pipe = client.pipeline(transaction=False)
    for n in range(hosts):
        pipe.hset(f"bootyard:host:{mac(n)}", mapping={
            "hostname": f"node{n:05d}", "ip": f"10.64.{128 + n // 250}.{n % 250 + 1}",
            "profile": ("debian12", "rocky9", "live")[n % 3], "tags": f"rack{n // 40}"})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()
    out["redis_hosts_mib"] = used(client)
    now = int(time.time())
    for n in range(leases):
        ip = f"10.64.{n // 250}.{n % 250 + 10}"
        pipe.hset(f"bootyard:lease:{ip}", mapping={
            "mac": mac(1_000_000 + n), "state": "bound", "expires": str(now + 3600),
            "subnet": "fleet", "hostname": ""})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()
    out["redis_leases_mib"] = used(client)
    per_host = max(events // max(hosts, 1), 1)
    for n in range(min(hosts, events)):
        for k in range(per_host):
            fields = {"ts": f"{now}.{k:03d}", "service": "dhcp", "kind": KINDS[k % len(KINDS)],
                      "mac": mac(n), "ip": f"10.64.{128 + n // 250}.{n % 250 + 1}"}
            # each event goes to the global stream and the host's own, capped as EventLog caps
            pipe.xadd("bootyard:events", fields, maxlen=100_000, approximate=True)
            pipe.xadd(f"bootyard:events:{mac(n)}", fields, maxlen=1_000, approximate=True)
        if n % 50 == 49:
            pipe.execute()
    pipe.execute()
    out["events_written"] = min(hosts, events) * per_host
    out["global_stream_len"] = client.xlen("bootyard:events")
    out["redis_events_mib"] = used(client)
    return out


def used(client) -> float:
    return round(client.info("memory")["used_memory"] / 2**20, 1)


class Service(LabService):
    def __init__(self, name, ns, url, logfile, **settings):
        self.service = name
        super().__init__(ns, url, logfile, **settings)

    def _serving(self) -> bool:  # started; main() waits for the inventory (longer than 20 s)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.service} exited: {self.log()[-2000:]}")
        return True


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1)


def timed(argv: list[str], env: dict) -> float:
    """Seconds ``argv`` took (its exit status is not the point: validate exits 1 on warnings)."""
    started = time.monotonic()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    return round(time.monotonic() - started, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--leases", type=int, default=10_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bootyard-fleet-"))
    result: dict = {}
    redis = UnixRedis(work / "redis")
    redis.start()
    try:
        client = redis.client()
        started = time.monotonic()
        result.update(fill(client, args.hosts, args.events, args.leases))
        result["fill_s"] = round(time.monotonic() - started, 1)
        with Lab() as lab:
            seg = lab.segment()
            (work / "tftp").mkdir()
            for name, settings in (
                    ("dhcp", {"interfaces": "eth0", "metrics_host": "127.0.0.1"}),
                    ("tftp", {"root": str(work / "tftp"), "metrics_host": "127.0.0.1"}),
                    ("http", {"host": "127.0.0.1", "metrics_host": "127.0.0.1",
                              "images_root": str(work), "token_secret": "fleet-size-0123456789"})):
                t0 = time.monotonic()
                service = Service(name, seg.server, redis.url, work / f"{name}.log", **settings)
                try:
                    wait_for(lambda s=service: "inventory_loaded" in s.log() and
                             re.search(r"event=(serving|listening)", s.log()), 180,
                             what=f"{name} to load the inventory and serve")
                    result[f"{name}_start_s"] = round(time.monotonic() - t0, 2)
                    result[f"{name}_rss_mib"] = rss_mib(service.proc.pid)
                finally:
                    service.stop()
        env = {"BOOTYARD_REDIS_URL": redis.url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
        cli = [sys.executable, "-m", "cli"]
        result["cli_host_list_s"] = timed(cli + ["host", "list"], env)
        result["cli_validate_s"] = timed(cli + ["validate"], env)
        result["redis_final_mib"] = used(client)
    finally:
        redis.stop()
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    print("RESULT fleet " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
