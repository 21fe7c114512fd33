"""With Redis down, reserved hosts are still answered from the cache and nobody gets an address
Redis has not recorded; the condition is logged once, and service resumes when Redis is back."""

from __future__ import annotations

import subprocess

import pytest
from test_lab_clients import mac_of, udhcpc

from harness.dhcpkit import seed_inventory

pytestmark = pytest.mark.lab


def test_redis_down_and_back(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment(clients=2)
    client = unix_redis.client()
    reserved_ip = seg.address(20)
    seed_inventory(client, seg, hosts={mac_of(seg.clients[0]): {"ip": reserved_ip}})
    proc = dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    assert udhcpc(seg.clients[0], tmp_path, "before")["ip"] == reserved_ip

    unix_redis.stop()
    assert udhcpc(seg.clients[0], tmp_path, "down-known")["ip"] == reserved_ip
    with pytest.raises(subprocess.CalledProcessError):  # no dynamic address without Redis
        udhcpc(seg.clients[1], tmp_path, "down-unknown", timeout=15)
    with pytest.raises(subprocess.CalledProcessError):
        udhcpc(seg.clients[1], tmp_path, "down-unknown-again", timeout=15)
    log = proc.log()
    assert log.count("event=lease_store_unreachable") == 1  # logged once
    assert "reason=redis_down" in log

    unix_redis.start()
    got = udhcpc(seg.clients[1], tmp_path, "after")
    assert 100 <= int(got["ip"].rsplit(".", 1)[1]) <= 149
    client = unix_redis.client()
    assert client.hget(f"bootyard:lease:{got['ip']}", "mac") == mac_of(seg.clients[1])
    assert client.hget(f"bootyard:lease:{reserved_ip}", "state") == "bound"  # from before
    assert "event=lease_store_reachable_again" in proc.log()
