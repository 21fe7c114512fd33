"""A relayed request (giaddr set, option 82), crafted with scapy, is answered by unicast to the
relay's port 67 with option 82 echoed and an address from the relay's subnet."""

from __future__ import annotations

import json
import sys

import pytest

from harness.dhcpkit import seed_inventory

pytestmark = pytest.mark.lab

RELAY = r"""
import json, socket, sys
from scapy.layers.dhcp import BOOTP, DHCP
relay, server, giaddr = sys.argv[1], sys.argv[2], sys.argv[3]
mac = bytes.fromhex("02aabbccdd01")
agent_info = bytes([1, 6]) + b"port-7" + bytes([2, 4]) + b"sw01"
pkt = BOOTP(op=1, xid=0x5eed, hops=1, giaddr=giaddr, chaddr=mac + bytes(10)) / DHCP(options=[
    ("message-type", "discover"), ("vendor_class_id", b"PXEClient:Arch:00000"),
    (93, b"\x00\x00"), (82, agent_info), "end"])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((relay, 67))
sock.settimeout(5)
sock.sendto(bytes(pkt), (server, 67))
data, source = sock.recvfrom(4096)
reply = BOOTP(data)
opts = {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}
print(json.dumps({"source": source, "op": reply.op, "xid": reply.xid, "yiaddr": reply.yiaddr,
                  "giaddr": reply.giaddr, "file": reply.file.rstrip(b"\0").decode(),
                  "type": opts.get("message-type"),
                  "agent": (opts.get("relay_agent_information") or opts.get(82) or b"").hex(),
                  "sent_agent": agent_info.hex()}))
"""


def test_relayed_discover_unicast_to_relay_with_option_82(lab, unix_redis, dhcp_process,
                                                         tmp_path):
    seg = lab.segment()
    relay_ns = seg.add_client(seg.address(2) + "/24")
    client = unix_redis.client()
    seed_inventory(client, seg)
    third = seg.network.split(".")[2]
    client.hset("bootyard:subnet:remote", mapping={
        "network": f"198.19.{third}.0/24", "ranges": f"198.19.{third}.50-198.19.{third}.60",
        "relays": seg.address(2), "router": f"198.19.{third}.1",
        "boot_file_bios": "remote-undionly.kpxe"})
    dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    out = relay_ns.run(sys.executable, "-c", RELAY, seg.address(2), seg.address(1),
                       seg.address(2), timeout=30).stdout
    got = json.loads(out)
    assert got["source"] == [seg.address(1), 67]  # unicast from the server port to port 67
    assert got["op"] == 2 and got["xid"] == 0x5eed and got["type"] == 2
    assert got["giaddr"] == seg.address(2)
    assert got["yiaddr"].startswith(f"198.19.{third}.")
    assert 50 <= int(got["yiaddr"].rsplit(".", 1)[1]) <= 60
    assert got["agent"] == got["sent_agent"]
    assert got["file"] == "remote-undionly.kpxe"
    lease = client.hgetall(f"bootyard:lease:{got['yiaddr']}")
    assert lease["subnet"] == "remote" and lease["state"] == "offered"
