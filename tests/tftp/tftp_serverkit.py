"""What the TFTP server tests share: the inventory they serve, the server's settings, and
waits on what the server has done (the fixtures themselves are in this folder's conftest)."""

from __future__ import annotations

import asyncio
import time

from services.tftp import codec
from services.tftp.settings import TftpSection
from shared.records import Host, Profile

MAC = "52:54:00:ab:cd:ef"
HOSTS = [Host(mac=MAC, hostname="web1", ip="127.0.0.1", profile="debian12"),
         Host(mac="52:54:00:00:00:02", hostname="db1", profile="debian12", boot_mode="local")]
PROFILES = [Profile(name="debian12", kernel="debian12/linux", initrd=("debian12/initrd.gz",),
                    cmdline="console=ttyS0 hostname={{ host.hostname }} {{ vars.extra }}",
                    vars={"extra": "quiet"})]


def section(root, **overrides) -> TftpSection:
    base = dict(root=str(root), bind="127.0.0.1", port=0, max_transfers=50,
                cache_file_max=64 * 1024)
    base.update(overrides)
    return TftpSection(**base)


def value(metric, *labels) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()


async def wait_records(srv, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(srv.records) < n:
        assert time.monotonic() < deadline, f"only {len(srv.records)} records"
        await asyncio.sleep(0.01)


async def listener_caught_up(client, address) -> list[tuple[bytes, tuple]]:
    """Wait until the listener has handled every datagram ``client`` sent it so far: it
    handles them in order, and answers a stray ACK with ERROR 5. Returns what else came."""
    await client.send(codec.encode(codec.Ack(0)), address)
    others = []
    while True:
        datagram, source = await client.recv()
        if source == tuple(address) and codec.decode(datagram) == codec.Error(
                codec.ErrorCode.UNKNOWN_TID, "no transfer on this port"):
            return others
        others.append((datagram, source))
