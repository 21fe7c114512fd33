"""What waiting for a Redis replica (``dhcp.replica_acks``) costs a lease exchange.

A master and a replica (Debian's redis-server, AOF as deployed) on loopback; the DHCP service's
lease store runs OFFER then REQUEST steps in batches of ``--batch`` (as the service does), for
``--clients`` new MACs, once with ``wait_replicas=0`` and once with 1 (Redis WAIT on the same
connection, one round trip), rounds alternating. No namespaces, no network: only the lease path.

    .venv/bin/python scripts/bench/lease_wait.py [--clients 4000] [--batch 32] [--rounds 3]

The last line is ``RESULT lease_wait dora_per_s=<no wait> dora_per_s_wait=<wait 1> ratio=<r>``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.netlab import stop_process, wait_for  # noqa: E402
from harness.redis_server import free_port  # noqa: E402
from shared import leases  # noqa: E402

SUBNET = "bench"


def redis(workdir: Path, port: int, replica_of: int | None = None) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    extra = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind",
                             "127.0.0.1", "--dir", str(workdir), "--appendonly", "yes",
                             "--appendfsync", "everysec", "--save", "", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                    text=True).stdout.strip() == "PONG", 10, what="redis")
    return proc


def mac(round_: int, n: int) -> str:
    return "02:%02x:00:%02x:%02x:%02x" % (round_, n >> 16 & 255, n >> 8 & 255, n & 255)


async def one_round(url: str, wait: int, clients: int, batch: int, round_: int) -> float:
    client = leases.connect(url)
    store = leases.LeaseStore(client, wait_replicas=wait, wait_timeout=1.0)
    await client.flushall()
    await store.sync_pool(SUBNET, [("10.80.0.1", "10.80.255.254")])
    now = int(time.time())
    started = time.perf_counter()
    for first in range(0, clients, batch):
        macs = [mac(round_, n) for n in range(first, min(first + batch, clients))]
        offers = await store.run([store.offer_step(SUBNET, m, reserved=None, requested=None,
                                                   hostname="", now=now) for m in macs])
        await store.run([store.request_step(SUBNET, m, o.ip, reserved=None, hostname="",
                                            lease_time=3600, now=now)
                         for m, o in zip(macs, offers)])
    elapsed = time.perf_counter() - started
    await store.aclose()
    await client.aclose()
    return clients / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bootyard-lease-wait-"))
    mport, rport = free_port(), free_port()
    master = redis(work / "master", mport)
    replica = redis(work / "replica", rport, replica_of=mport)
    results: dict[int, list[float]] = {0: [], 1: []}
    try:
        url = f"redis://127.0.0.1:{mport}/0"
        for r in range(args.rounds):
            for wait in (0, 1) if r % 2 == 0 else (1, 0):
                rate = asyncio.run(one_round(url, wait, args.clients, args.batch, r))
                results[wait].append(rate)
                print(f"round {r} wait_replicas={wait}: {rate:,.0f} DORA/s", flush=True)
    finally:
        stop_process(replica)
        stop_process(master)
        shutil.rmtree(work, ignore_errors=True)
    plain, waited = statistics.median(results[0]), statistics.median(results[1])
    print(f"RESULT lease_wait dora_per_s={plain:.0f} dora_per_s_wait={waited:.0f} "
          f"ratio={waited / plain:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
