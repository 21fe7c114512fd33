"""The DHCP service's per-packet path without the network: CPU time per DORA exchange.

Feeds relayed DISCOVERs, then the REQUESTs for the OFFERs they got, through
``DhcpServer.handle`` in batches (as the service's worker loop does), with a real redis-server
(Unix socket, AOF as deployed), events on and the log at info written to a file. No namespaces,
no root, no perfdhcp: it measures only our process's CPU time (``time.process_time``), which is
what limits the service on a shared machine, and is steady enough to compare two versions of the
code in a few seconds. ``--profile FILE`` writes a cProfile (CPU-time clock) of the same run.

    .venv/bin/python scripts/bench/dhcp_pipeline.py [--clients 20000] [--batch 32]

The last line is ``RESULT dhcp_pipeline cpu_us_per_dora=<n> redis_us_per_dora=<n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from harness.dhcpkit import UnixRedis  # noqa: E402
from services.dhcp import codec  # noqa: E402
from services.dhcp.server import DhcpServer  # noqa: E402
from services.dhcp.settings import DhcpSection  # noqa: E402
from services.dhcp.transport import Datagram, Interface  # noqa: E402
from shared import leases, logs, runtime  # noqa: E402
from shared.cache import StaticInventory  # noqa: E402
from shared.events import EventLog  # noqa: E402
from shared.records import Subnet  # noqa: E402

RELAY = "198.19.0.5"
SERVER = "198.19.0.1"
IFACE = Interface("eth0", 2, SERVER)
PRL = bytes((1, 28, 2, 3, 15, 6, 12))


class FakeTransport:
    """The transport's interface for DhcpServer: replies are kept, not sent."""

    def __init__(self) -> None:
        self.interfaces = [IFACE]
        self.sent: list[bytes] = []

    def send(self, iface, data, ip, port, local_port=None) -> bool:
        self.sent.append(data)
        return True


def discover(n: int) -> bytes:
    chaddr = bytes((2, 0)) + n.to_bytes(4, "big") + bytes(10)
    return codec.encode(codec.Message(
        xid=n, hops=1, giaddr=RELAY, chaddr=chaddr,
        options={53: b"\x01", 55: PRL, 61: b"\x01" + chaddr[:6]}))


def request_for(offer: bytes) -> bytes:
    msg = codec.decode(offer)
    return codec.encode(codec.Message(
        xid=msg.xid, hops=1, giaddr=RELAY, chaddr=msg.chaddr,
        options={53: b"\x03", 50: codec.ip_bytes(msg.yiaddr), 54: codec.ip_bytes(SERVER),
                 55: PRL, 61: b"\x01" + msg.chaddr[:6]}))


def redis_cpu(pid: int) -> float:
    return sum(redis_split(pid))


def redis_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def run(args, workdir: Path) -> None:
    redis_server = UnixRedis(workdir / "redis")
    redis_server.start()
    logs.configure("kv", "info", (workdir / "dhcp.log").open("w", buffering=1 << 16))
    try:
        client = leases.connect(redis_server.url)
        events_client = leases.connect(redis_server.url)
        subnet = Subnet("bench", ipaddress.IPv4Network("198.19.0.0/16"),
                        ranges=(("198.19.1.0", "198.19.160.255"),), relays=(RELAY,),
                        lease_time=3600)
        inventory = StaticInventory(subnets=[subnet])
        pubsub = None
        if args.keyspace:  # as a service's InventoryCache sets Redis up (shared/cache.py)
            from shared.cache import notification_pattern
            await client.config_set("notify-keyspace-events", "Kghx")
            pubsub = events_client.pubsub()
            await pubsub.psubscribe(f"__keyspace@0__:{notification_pattern()}")
        runtime.tune_gc()  # as run_service() does for the service
        store = leases.LeaseStore(client)
        transport = FakeTransport()
        server = DhcpServer(DhcpSection(interfaces=("eth0",), events=args.events), inventory, store,
                            EventLog(events_client, "dhcp", known=inventory.knows_host), transport)
        await server.sync_pools()
        discovers = [discover(n) for n in range(args.clients)]
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        cpu = redis_before = 0.0
        split = [0.0, 0.0]  # the service's user and system seconds in handle()
        redis_split_before = (0.0, 0.0)
        for round_ in range(2):  # round 0 warms up (script load, first allocations)
            chunk = discovers[round_ * args.clients // 2:(round_ + 1) * args.clients // 2]
            redis_before = redis_cpu(redis_server.proc.pid)
            redis_split_before = redis_split(redis_server.proc.pid)
            cpu = 0.0
            split = [0.0, 0.0]
            for phase in ("discover", "request"):  # the clients' side is not timed
                transport.sent.clear()
                batches = [[Datagram(p, IFACE, (RELAY, 67), time.perf_counter())
                            for p in chunk[i:i + args.batch]]
                           for i in range(0, len(chunk), args.batch)]
                start = time.process_time()
                times = os.times()
                if profiler and round_:
                    profiler.enable()
                for batch in batches:
                    await server.handle(batch)
                if profiler and round_:
                    profiler.disable()
                cpu += time.process_time() - start
                after = os.times()
                split[0] += after.user - times.user
                split[1] += after.system - times.system
                if phase == "discover":
                    chunk = [request_for(o) for o in transport.sent]
        acks = sum(1 for p in transport.sent if codec.decode(p).message_type == 5)
        exchanges = len(discovers) // 2
        if acks != exchanges:
            raise SystemExit(f"only {acks} ACKs for {exchanges} exchanges")
        redis_used = redis_cpu(redis_server.proc.pid) - redis_before
        redis_now = redis_split(redis_server.proc.pid)
        if args.commandstats:  # Redis's own time per command (scripts' inner calls included)
            stats = await client.info("commandstats")
            rows = sorted(stats.items(), key=lambda kv: -kv[1]["usec"])
            total = sum(v["usec"] for _, v in rows)
            for name, v in rows:
                print(f"  {name[len('cmdstat_'):]:22s} calls/dora={v['calls'] / len(discovers):5.2f}"
                      f" us/dora={v['usec'] / len(discovers):6.2f} us/call={v['usec_per_call']:6.2f}")
            print(f"  (all commands: {total / len(discovers):.1f} us/dora; warm-up included)")
        if profiler:
            profiler.dump_stats(args.profile)
        per = 1e6 / exchanges
        print(f"split (user+system us per DORA): service {split[0] * per:.1f}+{split[1] * per:.1f}"
              f" redis {(redis_now[0] - redis_split_before[0]) * per:.1f}"
              f"+{(redis_now[1] - redis_split_before[1]) * per:.1f}")
        print(f"RESULT dhcp_pipeline cpu_us_per_dora={cpu / exchanges * 1e6:.1f} "
              f"redis_us_per_dora={redis_used / exchanges * 1e6:.1f} batch={args.batch}")
        if pubsub is not None:
            await pubsub.aclose()
        await store.aclose()
        await client.aclose()
        await events_client.aclose()
    finally:
        redis_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20000,
                        help="DISCOVERs in all (half warm-up, half measured)")
    parser.add_argument("--batch", type=int, default=32, help="packets per handle() call")
    parser.add_argument("--events", default="leases", choices=("all", "leases", "none"))
    parser.add_argument("--keyspace", action="store_true",
                        help="keyspace notifications on, as the service's inventory cache has them")
    parser.add_argument("--commandstats", action="store_true",
                        help="print Redis's INFO commandstats per exchange at the end")
    parser.add_argument("--profile", help="write a cProfile (CPU clock) of the measured half")
    args = parser.parse_args()
    runtime.use_uvloop()  # as the service does
    with tempfile.TemporaryDirectory(prefix="bootyard-dhcp-pipeline-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
