"""Two DHCP processes on one Redis under perfdhcp load never hand one address to two clients.

Every ACK either server sent is read back from its log (one ``event=ack`` line per ACK) and
checked: no address is acknowledged to two MACs, and the lease hash of every acknowledged
address names the MAC that got it. The pool (400 addresses) is smaller than the number of
simulated clients (1,200), so the servers compete for the last addresses. Bounded: 600 exchanges
per perfdhcp at 150/s, at most 20 s.
"""

from __future__ import annotations

import re
import threading

import pytest

from harness.dhcpkit import seed_inventory

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ACK = re.compile(r"event=ack mac=(\S+) ip=(\S+)")


def test_two_servers_one_redis_no_duplicate_addresses(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment()
    second = seg.add_client(seg.address(3) + "/24")
    loaders = [seg.add_client(seg.address(5 + k) + "/24") for k in range(2)]
    # a /16 behind "relays" (perfdhcp acts as a relay at 198.19.0.5 and .6)
    for ns, addr in ((seg.server, "198.19.0.1"), (second, "198.19.0.2"),
                     (loaders[0], "198.19.0.5"), (loaders[1], "198.19.0.6")):
        ns.run("ip", "addr", "add", f"{addr}/16", "dev", "eth0")
    client = unix_redis.client()
    seed_inventory(client, seg)
    client.hset("bootyard:subnet:bulk", mapping={
        "network": "198.19.0.0/16", "ranges": "198.19.10.0-198.19.11.143",
        "relays": "198.19.0.5,198.19.0.6", "lease_time": "3600"})
    servers = [dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp-a.log"),
               dhcp_process(second, unix_redis.url, tmp_path / "dhcp-b.log")]
    results = {}

    def load(k: int, target: str) -> None:
        results[k] = loaders[k].run(
            "timeout", "25", "perfdhcp", "-4", "-l", f"198.19.0.{5 + k}", "-r", "150",
            "-n", "600", "-p", "20", "-R", "600", "-d", "2", "-b", f"mac=02:0{k}:00:00:00:00",
            target, check=False, timeout=40)

    threads = [threading.Thread(target=load, args=(k, t))
               for k, t in enumerate((seg.address(1), seg.address(3)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in servers:
        s.stop()

    acks: dict[str, set[str]] = {}
    per_server = []
    for s in servers:
        found = ACK.findall(s.log())
        per_server.append(len(found))
        for mac, ip in found:
            acks.setdefault(ip, set()).add(mac)
    assert all(n > 50 for n in per_server), (per_server, results[0].stdout[-1500:])
    duplicates = {ip: macs for ip, macs in acks.items() if len(macs) > 1}
    assert duplicates == {}
    assert len(acks) <= 400  # never more addresses than the pool holds
    assert len(acks) >= 350  # and the pool was (nearly) used up: the servers did compete
    for ip, macs in acks.items():
        assert client.hget(f"bootyard:lease:{ip}", "mac") == next(iter(macs))
        assert client.hget(f"bootyard:lease:{ip}", "state") == "bound"
    for k in (0, 1):
        assert "non unique addresses: 0" in results[k].stdout
