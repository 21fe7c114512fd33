"""Fixtures for the DHCP tests: a Redis reachable from inside network namespaces, and a way to
run the DHCP service in a lab namespace.

Network namespaces do not share loopback, so the lab tests use a redis-server listening on a Unix
socket (file system, not network): the test (root namespace) and the service (lab namespace) both
reach it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from harness.labservice import LabService
from harness.netlab import stop_process, wait_for
from shared import leases
from shared.leases import LeaseStore

REPO = Path(__file__).resolve().parents[2]


class UnixRedis:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "777", "--dir", str(self.dir), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--logfile",
             str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.socket.exists() and self.client().ping(), 10, what="redis socket")

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), decode_responses=True)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def unix_redis(tmp_path):
    server = UnixRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class DhcpProcess(LabService):
    """``python -m services.dhcp`` inside a namespace, its log in a file."""

    service = "dhcp"
    defaults = {"interfaces": "eth0", "metrics_host": "127.0.0.1", "housekeeping_interval": "0.5"}


@pytest.fixture
def dhcp_process():
    started: list[DhcpProcess] = []

    def start(ns, redis_url, logfile, **settings) -> DhcpProcess:
        proc = DhcpProcess(ns, redis_url, logfile, **settings)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def seed_inventory(client: redis.Redis, seg, hosts: dict[str, dict[str, str]] | None = None,
                   **subnet: str) -> None:
    base = seg.network.rsplit(".", 1)[0]
    fields = {"network": seg.network, "ranges": f"{base}.100-{base}.149",
              "router": seg.address(1), "lease_time": "600", **subnet}
    client.hset("bootyard:subnet:lab", mapping=fields)
    for mac, host in (hosts or {}).items():
        client.hset(f"bootyard:host:{mac}", mapping=host)


class SentReplies:
    """Stands in for the DHCP transport's send(): records what would go out, decoded."""

    def __init__(self, *interfaces) -> None:
        from services.dhcp import codec
        self._decode = codec.decode
        self.interfaces = list(interfaces)  # a list, as Transport's (typed: compiled code checks)
        self.sent: list = []

    def send(self, iface, data, ip, port, local_port=None) -> bool:
        self.sent.append(self._decode(data))
        return True


def client_packet(iface, mtype: int, n: int, mac_byte: int, *, max_size: int | None = None,
                  **options: bytes):
    """A broadcast client message (type ``mtype``, xid ``n``) from 52:54:00:<mac_byte>:00:<n>
    arriving on ``iface``; options as ``o<code>=bytes``."""
    from services.dhcp import codec
    from services.dhcp.transport import Datagram
    chaddr = bytes((0x52, 0x54, 0, mac_byte, 0, n)) + bytes(10)
    opts = {53: bytes((mtype,)), **{int(k[1:]): v for k, v in options.items()}}
    message = codec.Message(xid=n, chaddr=chaddr, flags=codec.FLAG_BROADCAST, options=opts)
    data = codec.encode(message, max_size=max_size) if max_size else codec.encode(message)
    return Datagram(data, iface, ("0.0.0.0", 68), time.perf_counter())


@contextlib.asynccontextmanager
async def lease_store(redis_url: str, subnet: str, ranges, reserved=()):
    """A LeaseStore on ``redis_url`` (offers held 30 s, quarantine 600 s) with ``subnet``'s pool
    synced from ``ranges``; closed, with its client, afterwards."""
    client = leases.connect(redis_url)
    store = LeaseStore(client, offer_hold=30, quarantine=600)
    try:
        await store.sync_pool(subnet, ranges, reserved=list(reserved))
        yield store
    finally:
        await store.aclose()
        await client.aclose()

