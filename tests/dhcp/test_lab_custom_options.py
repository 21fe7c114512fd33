"""Custom DHCP options (subnet < group < host) to a real client: ISC dhclient in a lab
namespace, with a request list for them in its configuration, prints what it got."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.dhcpkit import seed_inventory

pytestmark = pytest.mark.lab

DHCLIENT_CONF = """\
option rack-label code 224 = text;
request subnet-mask, broadcast-address, routers, domain-name-servers, host-name,
        ntp-servers, tftp-server-name, rack-label, time-offset;
"""
DHCLIENT_SCRIPT = """#!/bin/sh
env | sort > "{out}.$reason.$$"
mv "{out}.$reason.$$" "{out}.$reason"
exit 0
"""


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def dhclient(ns, tmp_path: Path, tag: str) -> dict[str, str]:
    out = tmp_path / f"dhclient-{tag}"
    sc = tmp_path / f"dhclient-{tag}.sh"
    sc.write_text(DHCLIENT_SCRIPT.format(out=out))
    sc.chmod(0o755)
    conf = tmp_path / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    files = ["-cf", str(conf), "-lf", str(tmp_path / f"{tag}.leases"),
             "-pf", str(tmp_path / f"{tag}.pid")]
    ns.run("dhclient", "-4", "-1", "-v", "-sf", str(sc), *files, "eth0", timeout=40)
    env = _env(Path(f"{out}.BOUND"))
    ns.run("dhclient", "-4", "-x", "-sf", str(sc), *files, "eth0", timeout=40)
    return env


def test_dhclient_gets_subnet_group_and_host_options(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment(clients=2)
    client = unix_redis.client()
    known = seg.clients[0].run("cat", "/sys/class/net/eth0/address").stdout.strip()
    seed_inventory(client, seg, hosts={known: {
        "hostname": "web1", "ip": seg.address(20), "tags": "rack1",
        "option.tftp-server-name": "boot.example",       # the host's own
        "option.www-servers": seg.address(9)}},           # not asked for: not sent
        **{"option.ntp-servers": seg.address(5), "option.time-offset": "3600",
           "option.domain-name-servers": seg.address(53)})
    client.hset("bootyard:group:rack1", mapping={
        "match.tags": "rack1", "option.ntp-servers": f"{seg.address(6)},{seg.address(7)}",
        "option.224": "text:rack-7", "option.time-offset": "-7200"})
    client.hset(f"bootyard:host:{known}", "option.time-offset", "i32:60")  # host > group
    dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")

    got = dhclient(seg.clients[0], tmp_path, "known")
    assert got["new_ip_address"] == seg.address(20)
    assert got["new_ntp_servers"] == f"{seg.address(6)} {seg.address(7)}"  # group > subnet
    assert got["new_rack_label"] == "rack-7"                                 # the group's
    assert got["new_tftp_server_name"] == "boot.example"                     # the host's
    assert got["new_time_offset"] == "60"                                    # host > group
    assert got["new_domain_name_servers"] == seg.address(53)  # the subnet's option
    assert "new_www_server" not in got  # option 72 was not in the request list

    other = dhclient(seg.clients[1], tmp_path, "pool")
    assert other["new_ntp_servers"] == seg.address(5)  # the subnet's only
    assert other["new_time_offset"] == "3600"
    assert "new_rack_label" not in other and "new_tftp_server_name" not in other
