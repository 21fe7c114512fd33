"""The DHCP service against real clients (busybox udhcpc, ISC dhclient) in a namespace lab."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.dhcpkit import seed_inventory
from harness.netlab import wait_for

pytestmark = pytest.mark.lab

UDHCPC_SCRIPT = """#!/bin/sh
# record what udhcpc learnt, and configure the address so renewals can be unicast
env | sort > "{out}.$1.$$"
mv "{out}.$1.$$" "{out}.$1"
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${{mask:-24}}" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
"""


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def mac_of(ns) -> str:
    return ns.run("cat", "/sys/class/net/eth0/address").stdout.strip()


def udhcpc(ns, tmp_path, tag, *extra, timeout=20):
    out = tmp_path / f"udhcpc-{tag}"
    sc = script(tmp_path, f"udhcpc-{tag}.sh", UDHCPC_SCRIPT.format(out=out))
    ns.run("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1",
           "-s", str(sc), *extra, timeout=timeout)
    return read_env(Path(f"{out}.bound"))


@pytest.fixture
def lab_dhcp(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment(clients=3)
    client = unix_redis.client()
    reserved_mac = mac_of(seg.clients[0])
    reserved_ip = seg.address(20)
    seed_inventory(client, seg, hosts={
        reserved_mac: {"hostname": "web1", "ip": reserved_ip},
        mac_of(seg.clients[2]): {"enabled": "no"},
    })
    proc = dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    return seg, client, proc, reserved_mac, reserved_ip


def test_udhcpc_reserved_and_pool_addresses(lab_dhcp, tmp_path):
    seg, client, proc, reserved_mac, reserved_ip = lab_dhcp
    known = udhcpc(seg.clients[0], tmp_path, "known")
    assert known["ip"] == reserved_ip
    assert known["hostname"] == "web1"
    assert known["serverid"] == seg.address(1)
    assert known["router"] == seg.address(1)
    assert known["lease"] == "600"
    unknown = udhcpc(seg.clients[1], tmp_path, "unknown")
    last = int(unknown["ip"].rsplit(".", 1)[1])
    assert unknown["ip"].startswith(seg.network.rsplit(".", 1)[0]) and 100 <= last <= 149
    for ip, mac in ((reserved_ip, reserved_mac), (unknown["ip"], mac_of(seg.clients[1]))):
        lease = client.hgetall(f"bootyard:lease:{ip}")
        assert lease["mac"] == mac and lease["state"] == "bound" and lease["subnet"] == "lab"
        assert int(lease["expires"]) > time.time() + 500
    # the timeline has the exchange
    wait_for(lambda: client.xlen(f"bootyard:events:{reserved_mac}") >= 2, 5, what="events")
    kinds = [e[1]["kind"] for e in client.xrange(f"bootyard:events:{reserved_mac}")]
    assert kinds[:2] == ["dhcp.offer", "dhcp.ack"]
    # the pool client is not in the inventory: no stream of its own, its events in the global one
    stranger = mac_of(seg.clients[1])
    assert not client.exists(f"bootyard:events:{stranger}")
    assert "dhcp.ack" in [e[1]["kind"] for e in client.xrange("bootyard:events")
                          if e[1].get("mac") == stranger]


def test_disabled_host_gets_no_answer(lab_dhcp, tmp_path):
    seg, client, proc, *_ = lab_dhcp
    with pytest.raises(subprocess.CalledProcessError):  # udhcpc -n: exit 1 without a lease
        udhcpc(seg.clients[2], tmp_path, "disabled", timeout=15)
    metrics = seg.server.run("curl", "-s", "http://127.0.0.1:9101/metrics").stdout
    assert 'bootyard_dhcp_ignored_total{reason="host_disabled"}' in metrics
    line = [ln for ln in metrics.splitlines()
            if ln.startswith('bootyard_dhcp_ignored_total{reason="host_disabled"}')][0]
    assert float(line.split()[-1]) >= 1


@pytest.mark.parametrize("arch, vendor, expected", [
    ("0000", "PXEClient:Arch:00000:UNDI:002001", "undionly.kpxe"),
    ("0007", "PXEClient:Arch:00007:UNDI:003016", "ipxe.efi"),
    ("000b", "PXEClient:Arch:00011:UNDI:003016", "ipxe-arm64.efi"),
    ("0010", "HTTPClient:Arch:00016:UNDI:003016", "http://{server}:8080/images/ipxe.efi"),
])
def test_udhcpc_boot_file_per_architecture(lab_dhcp, tmp_path, arch, vendor, expected):
    seg, *_ = lab_dhcp
    got = udhcpc(seg.clients[1], tmp_path, f"arch{arch}", "-x", f"0x5d:{arch}", "-V", vendor,
                 "-O", "bootfile", "-O", "0x3c")
    assert got["boot_file"] == expected.format(server=seg.address(1))
    assert got["siaddr"] == seg.address(1)


def test_udhcpc_as_ipxe_gets_script_url(lab_dhcp, tmp_path):
    seg, *_ = lab_dhcp
    mac = mac_of(seg.clients[1])
    got = udhcpc(seg.clients[1], tmp_path, "ipxe", "-x", "0x5d:0000", "-V", "PXEClient",
                 "-x", "0x4d:0469505845")  # user class: RFC 3004 item "iPXE"
    assert got["boot_file"] == f"http://{seg.address(1)}:8080/boot/ipxe?mac={mac}"


def test_udhcpc_renew_and_release(lab_dhcp, tmp_path):
    seg, client, *_ = lab_dhcp
    ns = seg.clients[1]
    out = tmp_path / "udhcpc-live"
    sc = script(tmp_path, "live.sh", UDHCPC_SCRIPT.format(out=out))
    proc = ns.popen("busybox", "udhcpc", "-i", "eth0", "-f", "-t", "5", "-T", "1", "-s", str(sc))
    bound = Path(f"{out}.bound")
    wait_for(bound.exists, 20, what="udhcpc bound")
    ip = read_env(bound)["ip"]
    first_expiry = int(client.hget(f"bootyard:lease:{ip}", "expires"))
    time.sleep(1.1)
    pid = int(ns.run("pgrep", "-f", str(sc)).stdout.split()[0])
    os.kill(pid, signal.SIGUSR1)  # renew: unicast REQUEST with ciaddr (RENEWING)
    renew = Path(f"{out}.renew")
    wait_for(renew.exists, 10, what="udhcpc renew")
    assert read_env(renew)["ip"] == ip
    wait_for(lambda: int(client.hget(f"bootyard:lease:{ip}", "expires")) > first_expiry, 5,
             what="renewed expiry")
    os.kill(pid, signal.SIGUSR2)  # release
    wait_for(lambda: client.hget(f"bootyard:lease:{ip}", "state") == "released", 10,
             what="lease released")
    proc.terminate()


DHCLIENT_SCRIPT = """#!/bin/sh
# written then renamed: the test reads the file as soon as it exists
env | sort > "{out}.$reason.$$"
mv "{out}.$reason.$$" "{out}.$reason"
case "$reason" in
  BOUND|RENEW|REBOOT) ip addr add "$new_ip_address/24" dev "$interface" 2>/dev/null ;;
esac
exit 0
"""


def test_dhclient_reserved_pool_and_release(lab_dhcp, tmp_path):
    seg, client, proc, reserved_mac, reserved_ip = lab_dhcp
    for ns, tag in ((seg.clients[0], "known"), (seg.clients[1], "unknown")):
        out = tmp_path / f"dhclient-{tag}"
        sc = script(tmp_path, f"dhclient-{tag}.sh", DHCLIENT_SCRIPT.format(out=out))
        files = ["-lf", str(tmp_path / f"{tag}.leases"), "-pf", str(tmp_path / f"{tag}.pid")]
        ns.run("dhclient", "-4", "-1", "-v", "-sf", str(sc), *files, "eth0", timeout=40)
        env = read_env(Path(f"{out}.BOUND"))
        ip = env["new_ip_address"]
        if tag == "known":
            assert ip == reserved_ip and env["new_host_name"] == "web1"
        else:
            assert 100 <= int(ip.rsplit(".", 1)[1]) <= 149
        assert client.hget(f"bootyard:lease:{ip}", "state") == "bound"
        ns.run("dhclient", "-4", "-r", "-v", "-sf", str(sc), *files, "eth0", timeout=40)
        wait_for(lambda: client.hget(f"bootyard:lease:{ip}", "state") == "released", 10,
                 what=f"dhclient release of {ip}")


GARBAGE = r"""
import socket, sys, os
server = sys.argv[1]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")  # SO_BINDTODEVICE: no address yet
sock.bind(("0.0.0.0", 68))
cookie = bytes([99, 130, 83, 99])
header = bytes([1, 1, 6, 0]) + bytes(232)
packets = [b"", b"\x01", os.urandom(100), os.urandom(1400), header + b"abcd",
           header + cookie + bytes([53, 200, 1]),          # option longer than the packet
           header + cookie + bytes([52, 1, 9, 255]),       # invalid overload value
           header[:108] + bytes([52, 1, 3]) + bytes(125) + cookie + bytes([52, 1, 3, 53, 1, 1])]
for data in packets * 20:
    sock.sendto(data, ("255.255.255.255", 67))
"""


def test_malformed_packets_are_counted_and_service_keeps_serving(lab_dhcp, tmp_path):
    import sys

    seg, client, proc, *_ = lab_dhcp
    seg.clients[1].run(sys.executable, "-c", GARBAGE, seg.address(1), timeout=30)
    got = udhcpc(seg.clients[1], tmp_path, "after-garbage")
    assert 100 <= int(got["ip"].rsplit(".", 1)[1]) <= 149
    metrics = seg.server.run("curl", "-s", "http://127.0.0.1:9101/metrics").stdout
    line = [ln for ln in metrics.splitlines()
            if ln.startswith('bootyard_dhcp_ignored_total{reason="malformed"}')][0]
    assert float(line.split()[-1]) >= 100
    assert proc.proc.poll() is None


def test_dhclient_renews_and_expiry_moves(lab, unix_redis, dhcp_process, tmp_path):
    """ISC dhclient renews at T1 (a unicast REQUEST from its address, RFC 2131 RENEWING); the
    lease's expiry in Redis moves forward with the renewal. The client is told to take T1 as
    3 s (its own ``supersede``) so the test does not wait half of the shortest lease (60 s)."""
    seg = lab.segment(clients=1)
    client = unix_redis.client()
    seed_inventory(client, seg, lease_time="60")
    dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    ns = seg.clients[0]
    mac = mac_of(ns)
    out = tmp_path / "dhclient-renew"
    sc = script(tmp_path, "dhclient-renew.sh", DHCLIENT_SCRIPT.format(out=out))
    conf = tmp_path / "dhclient.conf"
    conf.write_text("supersede dhcp-renewal-time 3;\n")
    log = (tmp_path / "dhclient.log").open("w")
    proc = ns.popen("dhclient", "-4", "-d", "-v", "-cf", str(conf), "-sf", str(sc), "-lf",
                    str(tmp_path / "renew.leases"), "-pf", str(tmp_path / "renew.pid"), "eth0",
                    stdout=log, stderr=subprocess.STDOUT)
    try:
        bound = Path(f"{out}.BOUND")
        wait_for(bound.exists, 30, what="dhclient bound")
        env = read_env(bound)
        ip = env["new_ip_address"]
        assert env["new_dhcp_lease_time"] == "60"
        first_expiry = int(client.hget(f"bootyard:lease:{ip}", "expires"))
        assert first_expiry > time.time() + 50
        renew = Path(f"{out}.RENEW")
        wait_for(renew.exists, 20, what="dhclient renewal")
        assert read_env(renew)["new_ip_address"] == ip
        wait_for(lambda: f"DHCPREQUEST for {ip} on eth0 to {seg.address(1)} port 67" in (
            tmp_path / "dhclient.log").read_text(), 5,
            what="a unicast REQUEST to the server (RENEWING, not REBINDING)")
        wait_for(lambda: int(client.hget(f"bootyard:lease:{ip}", "expires")) > first_expiry,
                 10, what="the renewed expiry in Redis")
        lease = client.hgetall(f"bootyard:lease:{ip}")
        assert lease["mac"] == mac and lease["state"] == "bound"
        def kinds():
            # a pool client is not in the inventory: its events are in the global stream
            return [e[1]["kind"] for e in client.xrange("bootyard:events") if e[1]["mac"] == mac]
        # bind, then the renewal (a slow start may add a retransmitted DISCOVER's offer)
        wait_for(lambda: kinds().count("dhcp.ack") >= 2, 5, what="two dhcp.ack events")
        assert kinds()[0] == "dhcp.offer" and set(kinds()) == {"dhcp.offer", "dhcp.ack"}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
