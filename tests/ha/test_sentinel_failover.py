"""Redis without a single point of failure: the DHCP service on a Sentinel-managed Redis loses
no acknowledged lease when the master is killed under load, and follows the failover without a
restart.

Three sentinels, a master and a replica (Debian's redis-server and redis-sentinel) run in the
server's namespace; the DHCP service gets ``redis+sentinel://`` and its default
``dhcp.replica_acks`` (auto: one replica). perfdhcp loads it through a relay address (bounded:
at most 4,000 exchanges at 100/s, 40 s, stopped once the test has seen what it needs) while
the test ``kill -9``s the master. Every ACK the service sent (one ``event=ack`` log line each)
is then read back from the promoted replica: each address names the MAC it was acknowledged
to, and no address went to two MACs.
"""

from __future__ import annotations

import re
import sys
import threading
import time

import pytest

from harness.dhcpkit import REPO, seed_inventory
from harness.netlab import stop_process, wait_for
from harness.sentinel import REPLICA_PORT, SentinelStack

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ACK = re.compile(r"event=ack mac=(\S+) ip=(\S+)")


def acks_in(log: str) -> list[tuple[str, str]]:
    return ACK.findall(log)


def replication_waits(seg, outcome: str) -> float:
    page = seg.server.run("curl", "-s", "http://127.0.0.1:9101/metrics", check=False).stdout
    found = re.search(rf'bootyard_lease_replication_total{{outcome="{outcome}"}} (\S+)', page)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("replica", ["in_sync", "lagging"])
def test_failover_under_load_loses_no_acknowledged_lease(lab, dhcp_process, tmp_path, replica):
    """``lagging``: the replica stops reading its replication stream (DEBUG SLEEP) just before
    the kill, so the leases acknowledged meanwhile exist only on the master that dies: the
    service's lease journal must put them on the new master."""
    seg = lab.segment()
    loader = seg.add_client(seg.address(5) + "/24")
    seg.server.run("ip", "addr", "add", "198.19.0.1/16", "dev", "eth0")
    loader.run("ip", "addr", "add", "198.19.0.5/16", "dev", "eth0")
    stack = SentinelStack(seg.server, tmp_path / "redis")
    client = stack.master.client()
    seed_inventory(client, seg)
    client.hset("bootyard:subnet:bulk", mapping={
        "network": "198.19.0.0/16", "ranges": "198.19.10.0-198.19.29.255",
        "relays": "198.19.0.5", "lease_time": "3600"})
    dhcp = dhcp_process(seg.server, stack.url, tmp_path / "dhcp.log")
    load = loader.popen("timeout", "50", "perfdhcp", "-4", "-l", "198.19.0.5", "-r", "100",
                        "-n", "4000", "-p", "40", "-R", "4000", "-d", "2",
                        "-b", "mac=02:0a:00:00:00:00", seg.address(1))
    try:
        wait_for(lambda: len(acks_in(dhcp.log())) >= 150, 30, what="150 ACKs before the kill")
        if replica == "lagging":
            sleeper = threading.Thread(target=stack.replica.sleep, args=(4,))
            sleeper.start()
            wait_for(lambda: replication_waits(seg, "short") >= 5, 20,
                     what="lease batches the replica did not acknowledge")
        before = len(acks_in(dhcp.log()))
        stack.master.kill()  # kill -9: whatever the replica has not got yet is gone with it
        killed_at = time.monotonic()
        wait_for(lambda: stack.master_port() == REPLICA_PORT, 30,
                 what="the sentinels to promote the replica")
        promoted_after = time.monotonic() - killed_at
        wait_for(lambda: len(acks_in(dhcp.log())) >= before + 150, 30,
                 what="150 ACKs from the new master")
    finally:
        stop_process(load)
        if replica == "lagging":
            sleeper.join()
    assert dhcp.proc.poll() is None, "the DHCP service must follow the failover, not exit"
    log = dhcp.log()
    acked: dict[str, set[str]] = {}
    for mac, ip in acks_in(log):
        acked.setdefault(ip, set()).add(mac)
    assert {ip: macs for ip, macs in acked.items() if len(macs) > 1} == {}
    new_master = stack.replica.client()
    assert new_master.info("replication")["role"] == "master"
    missing = {ip: macs for ip, macs in acked.items()
               if new_master.hget(f"bootyard:lease:{ip}", "mac") != next(iter(macs))}
    assert missing == {}, f"{len(missing)} acknowledged leases lost in the failover"
    assert "event=lease_store_reachable_again" in log
    if replica == "lagging":
        replayed = re.search(r"event=lease_store_reachable_again journal_replayed=(\d+)", log)
        assert replayed and int(replayed.group(1)) > 0
    print(f"failover ({replica} replica): promoted {promoted_after:.1f}s after kill -9; "
          f"{len(acked)} leases acknowledged, all on the new master", file=sys.stderr)

    # the inventory cache follows too: a host added on the new master reaches the service
    new_master.hset("bootyard:host:02:0b:00:00:00:01", mapping={"ip": "198.19.20.7"})

    def hosts_cached() -> bool:
        page = seg.server.run("curl", "-s", "http://127.0.0.1:9101/metrics", check=False).stdout
        return 'bootyard_inventory_objects{kind="host"} 1.0' in page

    wait_for(hosts_cached, 20, what="the host added after the failover in the service's cache")


def test_cli_reads_through_sentinel(lab, tmp_path):
    seg = lab.segment()
    stack = SentinelStack(seg.server, tmp_path / "redis")
    stack.master.client().hset("bootyard:host:02:0c:00:00:00:01", mapping={"hostname": "s1"})
    cli = (sys.executable, "-m", "cli", "--redis-url")
    listing = seg.server.run(*cli, stack.url, "host", "list", check=False, cwd=REPO)
    assert "s1" in listing.stdout, listing.stdout + listing.stderr
    bad = seg.server.run(*cli, "redis+sentinel://127.0.0.1:26380/", "host", "list",
                         check=False, cwd=REPO)
    assert bad.returncode != 0
    assert "no Sentinel service name" in bad.stderr and "Traceback" not in bad.stderr
