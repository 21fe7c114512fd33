"""BSDP through the running service: INFORM[LIST] then INFORM[SELECT], as a Mac sends them."""

from __future__ import annotations

import json
import sys

import pytest

from harness.dhcpkit import seed_inventory

pytestmark = pytest.mark.lab

MAC_CLIENT = r"""
import json, socket, struct, sys
from scapy.layers.dhcp import BOOTP, DHCP
me, server = sys.argv[1], sys.argv[2]
mac = bytes.fromhex("a4b197000001")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((me, 68))
sock.settimeout(5)

def ask(bsdp):
    pkt = BOOTP(op=1, xid=0x77, ciaddr=me, chaddr=mac + bytes(10)) / DHCP(options=[
        ("message-type", "inform"), ("vendor_class_id", b"AAPLBSDPC/i386/MacBookPro9,1"),
        (43, bsdp), "end"])
    sock.sendto(bytes(pkt), (server, 67))
    reply = BOOTP(sock.recvfrom(4096)[0])
    opts = {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}
    return reply, opts

def sub(value):
    out, i = {}, 0
    while i < len(value):
        out[value[i]] = value[i + 2:i + 2 + value[i + 1]]
        i += 2 + value[i + 1]
    return out

_, opts = ask(bytes([1, 1, 1, 2, 2, 1, 1]))
listed = sub(opts["vendor_specific"])
first_id = listed[9][:4]
names = []
raw, i = listed[9], 0
while i < len(raw):
    n = raw[i + 4]
    names.append(raw[i + 5:i + 5 + n].decode())
    i += 5 + n
reply, opts = ask(bytes([1, 1, 2, 2, 2, 1, 1, 3, 4]) + socket.inet_aton(server)
                  + bytes([8, 4]) + first_id)
selected = sub(opts["vendor_specific"])
print(json.dumps({"names": names, "vendor": opts["vendor_class_id"].decode(),
                  "type": selected[1].hex(), "selected": selected[8].hex(),
                  "first": first_id.hex(), "file": reply.file.rstrip(b"\0").decode(),
                  "siaddr": reply.siaddr,
                  "root": opts.get("root_disk_path", b"").decode()}))
"""


def test_bsdp_list_and_select_via_service(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment()
    mac_ns = seg.add_client(seg.address(77) + "/24")
    client = unix_redis.client()
    seed_inventory(client, seg)
    client.hset("bootyard:netboot:catalina", mapping={
        "index": "1001", "title": "Catalina", "boot_file": "netboot/i386/booter",
        "root_path": f"http://{seg.address(1)}:8080/images/catalina/NetBoot.dmg",
        "default": "yes"})
    client.hset("bootyard:netboot:tools", mapping={
        "index": "1002", "boot_file": "netboot/tools/booter", "root_path": "nfs:x:/tools.dmg",
        "image_kind": "diagnostics"})
    dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    got = json.loads(mac_ns.run(sys.executable, "-c", MAC_CLIENT, seg.address(77),
                                seg.address(1), timeout=30).stdout)
    assert got["names"] == ["Catalina", "tools"]
    assert got["vendor"] == "AAPLBSDPC"
    assert got["type"] == "02" and got["selected"] == got["first"] == "010003e9"
    assert got["file"] == "netboot/i386/booter" and got["siaddr"] == seg.address(1)
    assert got["root"].endswith("/images/catalina/NetBoot.dmg")
