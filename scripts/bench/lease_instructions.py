"""Redis's instructions per DORA exchange of the DHCP lease path, counted by valgrind.

CPU time per exchange moves by ±10 % on a shared machine; the instructions redis-server executes
for the same lease steps do not (±0.1 % between runs). This starts redis-server (AOF as
deployed) under callgrind, with Redis's time-driven work turned off (active rehashing, jemalloc's
background thread; ``hz 1``) so that only the commands count, runs ``--warmup`` exchanges
(pool sync, script load), zeroes the counters, runs ``--clients`` exchanges the way the service
does (OFFER steps then REQUEST steps in batches of ``--batch``, timeline events on, as for
clients outside the inventory), and prints the instructions per exchange. Compare two versions
of the lease script by running it from each tree. Needs valgrind (Debian: valgrind).

    .venv/bin/python scripts/bench/lease_instructions.py [--clients 2000] [--events none]
        [--keyspace]

The last line is ``RESULT lease_instructions redis_instructions_per_dora=<n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.netlab import wait_for  # noqa: E402
from shared import leases  # noqa: E402
from shared.cache import notification_pattern  # noqa: E402

SUBNET = "bench"
# LEASE_INSTRUCTIONS_KEEP=1: keep the work directory (its callgrind dumps, for callgrind_annotate)
KEEP = bool(os.environ.get("LEASE_INSTRUCTIONS_KEEP"))


async def exchanges(url: str, first: int, count: int, batch: int, events: bool) -> None:
    client = leases.connect(url, timeout=60)
    store = leases.LeaseStore(client)
    if first == 0:
        await store.sync_pool(SUBNET, [("10.80.0.1", "10.80.255.254")])
    now = int(time.time())
    event = ("eth0", "", "", False) if events else None
    for start in range(first, first + count, batch):
        macs = ["02:00:00:%02x:%02x:%02x" % (n >> 16 & 255, n >> 8 & 255, n & 255)
                for n in range(start, min(start + batch, first + count))]
        offers = await store.run([store.offer_step(SUBNET, m, reserved=None, requested=None,
                                                   hostname="", now=now, event=event)
                                  for m in macs])
        await store.run([store.request_step(SUBNET, m, o.ip, reserved=None, hostname="",
                                            lease_time=3600, now=now, event=event)
                         for m, o in zip(macs, offers)])
    await store.aclose()
    await client.aclose()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000, help="exchanges counted")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--events", choices=("leases", "none"), default="leases")
    parser.add_argument("--keyspace", action="store_true",
                        help="keyspace notifications on, with a subscriber as the services' "
                             "inventory caches have (as deployed)")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        raise SystemExit("lease_instructions needs valgrind (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="bootyard-lease-instr-"))
    sock = work / "redis.sock"
    out = work / "callgrind.out"
    subscriber = None
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server",
         "--port", "0", "--unixsocket", str(sock), "--dir", str(work), "--appendonly", "yes",
         "--appendfsync", "everysec", "--save", "", "--activerehashing", "no",
         "--jemalloc-bg-thread", "no", "--hz", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"unix://{sock}?db=0"
        wait_for(lambda: subprocess.run(["redis-cli", "-s", str(sock), "ping"],
                                        capture_output=True, text=True).stdout.strip() == "PONG",
                 120, what="redis under valgrind")
        events = args.events == "leases"
        if args.keyspace:  # what InventoryCache does: Redis notifies every lease hash write
            subprocess.run(["redis-cli", "-s", str(sock), "config", "set",
                            "notify-keyspace-events", "Kghx"], check=True, capture_output=True)
            subscriber = subprocess.Popen(
                ["redis-cli", "-s", str(sock), "psubscribe",
                 f"__keyspace@0__:{notification_pattern()}"], stdout=subprocess.DEVNULL)
        asyncio.run(exchanges(url, 0, args.warmup, args.batch, events))
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True,
                       capture_output=True)
        time.sleep(2)  # callgrind takes the request at its next check
        asyncio.run(exchanges(url, args.warmup, args.clients, args.batch, events))
        subprocess.run(["callgrind_control", "--dump=counted", str(proc.pid)], check=True,
                       capture_output=True)
        time.sleep(2)
        dumps = [p for p in work.glob("callgrind.out*") if "counted" in p.read_text(
            errors="replace")[:4000]]
        if not dumps:
            raise SystemExit("callgrind wrote no dump")
        totals = [line for line in dumps[0].read_text(errors="replace").splitlines()
                  if line.startswith(("summary:", "totals:"))]
        instructions = int(totals[0].split()[1])
    finally:
        if subscriber is not None:
            subscriber.kill()
            subscriber.wait()
        subprocess.run(["redis-cli", "-s", str(sock), "shutdown", "nosave"],
                       capture_output=True)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not KEEP:
            shutil.rmtree(work, ignore_errors=True)
    print(f"RESULT lease_instructions redis_instructions_per_dora="
          f"{instructions // args.clients} events={args.events} batch={args.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
