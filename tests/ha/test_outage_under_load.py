"""One Redis (AOF, ``appendfsync everysec`` as deployed) and the real DHCP service under a
bounded perfdhcp load, through three outages: a plain Redis restart (SIGTERM, start again), a
``kill -9`` of Redis (started again on the same AOF), and a ``kill -9`` of the DHCP service
(started again). Afterwards every address the service ACKed before, during and after is in the
lease table under the MAC it was ACKed to, and no address is leased to two MACs.

What was ACKed is read from a packet capture of the server's interface (tcpdump, decoded by
scapy), not from the service's own log. During a Redis outage the service is in its degraded
mode (docs/operations.md, "Redis and durability"): no dynamic address (perfdhcp's clients get
nothing), and a reserved host (busybox udhcpc here) is ACKed from the inventory cache; its lease
is written when Redis is back. Bounded: perfdhcp at 100 exchanges/s, at most 4,000 exchanges
and 40 s, stopped once the test has seen 150 ACKs after the outage.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from scapy.all import BOOTP, DHCP, UDP, rdpcap

from harness.dhcpkit import seed_inventory
from harness.netlab import stop_process, wait_for
from harness.redis_server import RedisServer

pytestmark = [pytest.mark.lab, pytest.mark.slow]
RESERVED_MAC = "02:0d:00:00:00:01"
ACK_LINE = re.compile(r"event=ack mac=(\S+) ip=(\S+)")


def acks_on_wire(pcap) -> list[tuple[str, str]]:
    """(address, MAC) of every DHCPACK in the capture."""
    out = []
    for packet in rdpcap(str(pcap)):
        if UDP not in packet:
            continue
        # decoded as BOOTP whatever the ports (scapy only guesses 67->68; a reply to a relay
        # goes 67->67)
        bootp = BOOTP(bytes(packet[UDP].payload))
        if DHCP not in bootp:
            continue
        options = dict(o for o in bootp[DHCP].options if isinstance(o, tuple) and len(o) == 2)
        if options.get("message-type") == 5:
            out.append((bootp.yiaddr, bytes(bootp.chaddr)[:6].hex(":")))
    return out


def settled(path, quiet: float = 1.0, limit: float = 20.0) -> None:
    """Wait until ``path`` has not grown for ``quiet`` seconds (at most ``limit``)."""
    deadline, size, since = time.monotonic() + limit, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def logged_acks(*services) -> int:
    """Progress only (the verdict comes from the capture): ACK lines in the services' logs."""
    return sum(len(ACK_LINE.findall(s.log())) for s in services)


@pytest.mark.parametrize("outage", ["redis_restart", "redis_kill9", "dhcp_kill9"])
def test_outage_under_load_loses_no_acknowledged_lease(lab, dhcp_process, tmp_path, outage):
    seg = lab.segment()
    loader = seg.add_client(seg.address(5) + "/24")
    reserved = seg.add_client()
    reserved.run("ip", "link", "set", "eth0", "address", RESERVED_MAC)
    seg.server.run("ip", "addr", "add", "198.19.0.1/16", "dev", "eth0")
    loader.run("ip", "addr", "add", "198.19.0.5/16", "dev", "eth0")
    redis = RedisServer(tmp_path / "redis", unix_socket=True)  # AOF, appendfsync everysec
    redis.start()
    try:
        _run(lab, seg, loader, reserved, redis, dhcp_process, tmp_path, outage)
    finally:
        redis.kill()


def _run(lab, seg, loader, reserved, redis, dhcp_process, tmp_path, outage):
    reserved_ip = seg.address(50)
    seed_inventory(redis_client(redis), seg, hosts={RESERVED_MAC: {"ip": reserved_ip}})
    redis_client(redis).hset("bootyard:subnet:bulk", mapping={
        "network": "198.19.0.0/16", "ranges": "198.19.10.0-198.19.29.255",
        "relays": "198.19.0.5", "lease_time": "3600"})
    pcap, capture_log = tmp_path / "dhcp.pcap", tmp_path / "tcpdump.log"
    # a 64 MiB capture buffer: a capture starved of CPU for a while still loses nothing
    capture = seg.server.popen("tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode",
                               "-B", "65536", "-s", "1500", "-w", str(pcap),
                               "udp and src port 67", stdout=subprocess.DEVNULL,
                               stderr=capture_log.open("w"))
    wait_for(lambda: "listening on" in capture_log.read_text(), 10, what="tcpdump to start")
    services = [dhcp_process(seg.server, redis.url, tmp_path / "dhcp.log")]
    load = loader.popen("timeout", "50", "perfdhcp", "-4", "-l", "198.19.0.5", "-r", "100",
                        "-n", "4000", "-p", "40", "-R", "4000", "-d", "2",
                        "-b", "mac=02:0a:00:00:00:00", seg.address(1),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    udhcpc = ("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1",
              "-s", "/bin/true")
    try:
        wait_for(lambda: logged_acks(*services) >= 150, 30, what="150 ACKs before the outage")
        if outage == "dhcp_kill9":
            services[0].proc.kill()  # kill -9 mid-batch: no chance to finish anything
            services[0].proc.wait()
            services.append(dhcp_process(seg.server, redis.url, tmp_path / "dhcp-2.log"))
        else:
            if outage == "redis_restart":
                redis.stop()  # SIGTERM: Redis writes its AOF out and exits
            else:
                redis.kill()  # kill -9: the last second of the AOF may be gone
            wait_for(lambda: "event=lease_store_unreachable" in services[0].log(), 20,
                     what="the service to notice Redis is gone")
            # the degraded mode: the reserved host is answered from the cache, the pool is not
            reserved.run(*udhcpc, timeout=30)
            assert "reason=redis_down" in services[0].log()
            redis.start()
        after = logged_acks(*services)
        wait_for(lambda: logged_acks(*services) >= after + 150, 30,
                 what="150 ACKs after the outage")
    finally:
        stop_process(load)
        settled(pcap)  # every reply sent is in the capture before it stops
        capture.send_signal(signal.SIGINT)
        capture.wait(10)
    assert all(s.proc.poll() is None for s in services[-1:]), "the DHCP service must keep running"
    dropped = re.search(r"(\d+) packets? dropped by kernel", capture_log.read_text())
    assert dropped and dropped.group(1) == "0", f"the capture is incomplete: {dropped}"
    acked = acks_on_wire(pcap)
    by_ip: dict[str, set[str]] = {}
    for ip, mac in acked:
        by_ip.setdefault(ip, set()).add(mac)
    assert len(acked) >= 300, f"only {len(acked)} ACKs on the wire"
    assert {ip: macs for ip, macs in by_ip.items() if len(macs) > 1} == {}, \
        "an address was ACKed to two MACs"
    table = redis_client(redis)
    lost = {ip: (macs, table.hgetall(f"bootyard:lease:{ip}")) for ip, macs in by_ip.items()
            if table.hget(f"bootyard:lease:{ip}", "mac") != next(iter(macs))}
    assert lost == {}, f"{len(lost)} ACKed addresses not in the lease table for their MAC"
    holders: dict[str, set[str]] = {}  # no MAC holds two bound leases in one subnet either
    for key in table.scan_iter("bootyard:lease:*", count=1000):
        lease = table.hgetall(key)
        if lease.get("state") == "bound":
            holders.setdefault((lease.get("subnet"), lease.get("mac")), set()).add(key)
    assert {k: v for k, v in holders.items() if len(v) > 1} == {}
    if outage != "dhcp_kill9":
        assert (reserved_ip, RESERVED_MAC) in acked
        assert "event=lease_store_reachable_again" in services[0].log()
    print(f"{outage}: {len(acked)} ACKs on the wire, {len(by_ip)} addresses, all in the lease "
          "table under their MAC", file=sys.stderr)


def redis_client(server: RedisServer):
    import redis

    return redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)
