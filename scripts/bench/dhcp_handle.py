"""The DHCP service's own Python per DORA exchange, without Redis: ``DhcpServer.handle`` over a
fixed set of relayed DISCOVERs and their REQUESTs, with the lease store's call answered in the
process (every step granted: a DISCOVER gets the next address, a REQUEST the one it asks for, as
from Redis) and events handed to a no-op. What is left is the service's
per-packet and per-batch work (decode, inventory, policy, the lease steps' packing and the
results' parsing, reply templates, the ACK log lines, metrics), which ``dhcp_pipeline.py``
measures together with a real Redis round trip.

Its CPU time (``time.thread_time``, best of seven rounds) moves with the machine's load; the
instructions do not (valgrind, counting only inside the compiled ``handle``: the compiled
packet path is required, ``scripts/build_native.py services.dhcp``)::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
      --toggle-collect='CPyDef_server___handle_DhcpServer_gen_____mypyc_generator_helper__' \\
      .venv/bin/python scripts/bench/dhcp_handle.py --clients 512 --batch 32
    callgrind_annotate /tmp/cg.out | grep 'PROGRAM TOTALS'   # / (7.5 x clients) = per DORA

(the warm-up's ``--clients`` DISCOVERs, half an exchange each, then seven measured rounds of
``--clients`` exchanges each). The last line is
``RESULT dhcp_handle us_per_dora=<n> batch=<n>``. docs/benchmarks.md, DHCP, seventh round.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from dhcp_pipeline import IFACE, RELAY, FakeTransport, discover, request_for  # noqa: E402

from services.dhcp.server import DhcpServer  # noqa: E402
from services.dhcp.settings import DhcpSection  # noqa: E402
from services.dhcp.transport import Datagram  # noqa: E402
from shared import leases, logs, runtime  # noqa: E402
from shared.cache import StaticInventory  # noqa: E402
from shared.lease_script import RS, SEP  # noqa: E402
from shared.records import Subnet  # noqa: E402


class NoEvents:
    def emit(self, *args, **fields) -> None:
        pass


def granting_store() -> leases.LeaseStore:
    """A lease store whose function call is answered here: every step gets an address."""
    store = leases.LeaseStore(None)
    store._loaded = True
    given = [0]

    async def script(packed: str) -> str:
        out = []
        for text in packed.split(RS)[1:-1]:  # (after the batch's time)
            fields = text.split(SEP)
            if fields[0] == "offer":
                given[0] += 1
                n = given[0] % 40000
                ip, state = f"198.19.{1 + n // 256}.{n % 256}", "offered"
            else:  # a REQUEST gets the address it asks for (its OFFER's), as from Redis
                ip, state = fields[11], "bound"
            out.append(SEP.join(("ok", ip, state, str(int(fields[4]) + 3600), "")))
        return RS.join(out) + RS

    store._script = script  # type: ignore[method-assign]
    return store


async def run(clients: int, batch: int, log_path: Path) -> float:
    runtime.tune_gc()  # as run_service() does
    logs.configure("kv", "info", log_path.open("w", buffering=1 << 16))
    subnet = Subnet("bench", ipaddress.IPv4Network("198.19.0.0/16"),
                    ranges=(("198.19.1.0", "198.19.160.255"),), relays=(RELAY,), lease_time=3600)
    transport = FakeTransport()
    server = DhcpServer(DhcpSection(interfaces=("eth0",), events="leases"),
                        StaticInventory(subnets=[subnet]), granting_store(), NoEvents(), transport)
    discovers = [discover(n) for n in range(clients)]

    def batches(packets: list[bytes]) -> list[list[Datagram]]:
        return [[Datagram(p, IFACE, (RELAY, 67), 0.0) for p in packets[i:i + batch]]
                for i in range(0, len(packets), batch)]

    for b in batches(discovers):  # warm-up: templates, the OFFERs to answer
        await server.handle(b)
    requests = [request_for(offer) for offer in transport.sent]
    rounds = []
    for _ in range(7):
        work = batches(discovers) + batches(requests)
        start = time.thread_time()
        for b in work:
            await server.handle(b)
        rounds.append((time.thread_time() - start) / clients * 1e6)
    return min(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4096, help="exchanges per round")
    parser.add_argument("--batch", type=int, default=32, help="packets per handle() call")
    args = parser.parse_args()
    runtime.use_uvloop()  # as the service does
    with tempfile.TemporaryDirectory(prefix="bootyard-dhcp-handle-") as tmp:
        us = asyncio.run(run(args.clients, args.batch, Path(tmp) / "dhcp.log"))
    print(f"RESULT dhcp_handle us_per_dora={us:.2f} batch={args.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
