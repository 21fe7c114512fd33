"""What the boot attempt id costs the DHCP lease step: the lease script of a git revision before
attempt ids (``--before``, e.g. the merge-base of the branch that added them) against the one in
this tree, loaded into one private redis-server, in interleaved batches of 64 DORA steps of
inventory hosts (events to their own streams, option 93 present). Prints Redis CPU time per step
(``INFO commandstats``, reset before each call): median and minimum, for a first boot (which
begins an attempt) and for repeated DORAs. docs/console.md quotes it.

    python scripts/bench_attempt_cost.py --before <git-rev> [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared import leases  # noqa: E402
from shared.lease_script import BATCH as NEW  # noqa: E402
from shared.leases import RS, LeaseStore  # noqa: E402


def old_script(rev: str) -> str:
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:shared/lease_script.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("old_lease_script")
    exec(compile(source, "old_lease_script.py", "exec"), module.__dict__)  # noqa: S102
    return module.BATCH


async def main(before: str, rounds: int) -> None:
    scripts = {"before": old_script(before), "after": NEW}
    if scripts["before"] == scripts["after"]:
        raise SystemExit(f"{before}'s lease script is this tree's: pick an older revision")
    tmp = tempfile.mkdtemp(prefix="bootyard-attempt-cost-")
    sock = f"{tmp}/redis.sock"
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            await asyncio.sleep(0.05)
        client = leases.connect(f"unix://{sock}")
        store = LeaseStore(client, offer_hold=30, quarantine=600)
        await store.sync_pool("bench", (("10.0.0.1", "10.0.255.250"),), reserved=[])
        sha = {v: await client.script_load(text) for v, text in scripts.items()}
        hosts = {v: [f"52:54:00:{n:02x}:{i >> 8:02x}:{i & 0xff:02x}" for i in range(2048)]
                 for n, v in enumerate(sha, 1)}
        event = ("eth0", "undionly.kpxe", "bios", True)  # an inventory host's PXE ROM
        usec: dict[str, list[tuple[int, float]]] = {v: [] for v in sha}
        for r in range(rounds):
            now = int(time.time())
            for start in range(0, 2048, 64):
                order = ("before", "after") if start % 128 == 0 else ("after", "before")
                for v in order:
                    batch = hosts[v][start:start + 64]
                    ts = f"{time.time():.3f}"
                    steps = [store.offer_step("bench", m, reserved=None, requested=None,
                                              hostname="", now=now, event=event, arches="0")
                             for m in batch]
                    await client.execute_command("CONFIG", "RESETSTAT")
                    reply = await client.evalsha(sha[v], 0,
                                                 ts + RS + RS.join(s.packed() for s in steps) + RS)
                    offered = [x.split("\x1f")[1] for x in reply.split(RS)[:-1]]
                    steps = [store.request_step("bench", m, ip, reserved=None, hostname="",
                                                lease_time=600, now=now, event=event)
                             for m, ip in zip(batch, offered)]
                    await client.evalsha(sha[v], 0, ts + RS + RS.join(s.packed() for s in steps) + RS)
                    stats = (await client.info("commandstats"))["cmdstat_evalsha"]
                    usec[v].append((r, stats["usec"] / (2 * len(batch))))
        for v in ("before", "after"):
            first = [u for r, u in usec[v] if r == 0]
            again = [u for r, u in usec[v] if r > 0]
            print(f"{v:>6}: first boot median {statistics.median(first):.2f} us/step; "
                  f"repeated DORA median {statistics.median(again):.2f} (min {min(again):.2f})")
        await client.aclose()
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision before attempt ids")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.before, args.rounds))
