"""proxyDHCP mode: a PXE DISCOVER gets boot information without an address; the boot server
port (4011) answers the client's REQUEST; nothing is leased and plain clients get nothing."""

from __future__ import annotations

import json
import sys

import pytest

from harness.dhcpkit import seed_inventory

pytestmark = pytest.mark.lab

PXE_CLIENT = r"""
import json, socket, sys
from scapy.layers.dhcp import BOOTP, DHCP
me, server = sys.argv[1], sys.argv[2]
mac = bytes.fromhex("525400aa0001")
out = {}
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")  # SO_BINDTODEVICE: broadcast without a route
sock.bind(("0.0.0.0", 68))
sock.settimeout(3)

def opts(pkt):
    return {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}

plain = BOOTP(op=1, xid=1, flags=0x8000, chaddr=mac + bytes(10)) / DHCP(options=[
    ("message-type", "discover"), ("vendor_class_id", b"udhcp 1.35"), "end"])
sock.sendto(bytes(plain), ("255.255.255.255", 67))
try:
    sock.recvfrom(4096)
    out["plain"] = "answered"
except socket.timeout:
    out["plain"] = "silent"
pxe = BOOTP(op=1, xid=2, flags=0x8000, chaddr=mac + bytes(10)) / DHCP(options=[
    ("message-type", "discover"), ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
    (93, b"\x00\x00"), (97, b"\x00" + bytes(range(16))), "end"])
sock.sendto(bytes(pxe), ("255.255.255.255", 67))
offer = BOOTP(sock.recvfrom(4096)[0])
o = opts(offer)
out["offer"] = {"type": o["message-type"], "yiaddr": offer.yiaddr,
                "file": offer.file.rstrip(b"\0").decode(), "vendor": o["vendor_class_id"].decode()}
boot = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
boot.bind((me, 4011))
boot.settimeout(3)
req = BOOTP(op=1, xid=3, ciaddr=me, chaddr=mac + bytes(10)) / DHCP(options=[
    ("message-type", "request"), ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
    (93, b"\x00\x00"), "end"])
boot.sendto(bytes(req), (server, 4011))
data, source = boot.recvfrom(4096)
ack = BOOTP(data)
out["ack"] = {"type": opts(ack)["message-type"], "file": ack.file.rstrip(b"\0").decode(),
              "source": list(source)}
print(json.dumps(out))
"""


def test_proxy_dhcp_answers_pxe_only_without_addresses(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment()
    pxe_ns = seg.add_client(seg.address(77) + "/24")  # its address came from "another server"
    client = unix_redis.client()
    seed_inventory(client, seg)
    dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log", proxy="yes")
    run = pxe_ns.run(sys.executable, "-c", PXE_CLIENT, seg.address(77), seg.address(1),
                     timeout=30, check=False)
    assert run.returncode == 0, run.stderr[-1500:]
    got = json.loads(run.stdout)
    assert got["plain"] == "silent"
    assert got["offer"]["type"] == 2 and got["offer"]["yiaddr"] == "0.0.0.0"
    assert got["offer"]["file"] == "undionly.kpxe" and got["offer"]["vendor"] == "PXEClient"
    assert got["ack"] == {"type": 5, "file": "undionly.kpxe", "source": [seg.address(1), 4011]}
    assert client.keys("bootyard:lease:*") == []
