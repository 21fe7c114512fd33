"""A relayed request (giaddr set, option 82), crafted with scapy, is answered by unicast to the
relay's port 67 with option 82 echoed and an address from the relay's subnet; with an option 82
too long for the reply (issue 13 F4), it is answered without the echo."""

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
agent_info = bytes.fromhex(sys.argv[4])
mac = bytes.fromhex("02aabbccdd01")
pkt = BOOTP(op=1, xid=0x5eed, hops=1, giaddr=giaddr, chaddr=mac + bytes(10)) / DHCP(options=[
    ("message-type", "discover"), ("vendor_class_id", b"PXEClient:Arch:00000"),
    (93, b"\x00\x00")])
# option 82, split into instances of at most 255 bytes (RFC 3396), then the end option
agent = b"".join(bytes([82, len(agent_info[i:i + 255])]) + agent_info[i:i + 255]
                 for i in range(0, len(agent_info), 255))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((relay, 67))
sock.settimeout(5)
sock.sendto(bytes(pkt) + agent + b"\xff", (server, 67))
data, source = sock.recvfrom(4096)
reply = BOOTP(data)
opts = {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}
print(json.dumps({"source": source, "op": reply.op, "xid": reply.xid, "yiaddr": reply.yiaddr,
                  "giaddr": reply.giaddr, "file": reply.file.rstrip(b"\0").decode(),
                  "type": opts.get("message-type"),
                  "agent": (opts.get("relay_agent_information") or opts.get(82) or b"").hex(),
                  "sent_agent": agent_info.hex()}))
"""


SHORT_AGENT = bytes([1, 6]) + b"port-7" + bytes([2, 4]) + b"sw01"
LONG_AGENT = bytes([1, 254]) + b"c" * 254 + bytes([2, 254]) + b"r" * 254  # 510 bytes


@pytest.mark.parametrize("agent", [SHORT_AGENT, LONG_AGENT], ids=["echoed", "f4_too_long"])
def test_relayed_discover_unicast_to_relay_with_option_82(lab, unix_redis, dhcp_process,
                                                         tmp_path, agent):
    seg = lab.segment()
    relay_ns = seg.add_client(seg.address(2) + "/24")
    client = unix_redis.client()
    seed_inventory(client, seg)
    third = seg.network.split(".")[2]
    client.hset("bootyard:subnet:remote", mapping={
        "network": f"198.19.{third}.0/24", "ranges": f"198.19.{third}.50-198.19.{third}.60",
        "relays": seg.address(2), "router": f"198.19.{third}.1",
        "boot_file_bios": "remote-undionly.kpxe"})
    server = dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    out = relay_ns.run(sys.executable, "-c", RELAY, seg.address(2), seg.address(1),
                       seg.address(2), agent.hex(), timeout=30).stdout
    got = json.loads(out)
    assert got["source"] == [seg.address(1), 67]  # unicast from the server port to port 67
    assert got["op"] == 2 and got["xid"] == 0x5eed and got["type"] == 2
    assert got["giaddr"] == seg.address(2)
    assert got["yiaddr"].startswith(f"198.19.{third}.")
    assert 50 <= int(got["yiaddr"].rsplit(".", 1)[1]) <= 60
    # echoed unchanged (RFC 3046), unless the 576-byte reply cannot hold it: then left out
    assert got["agent"] == (got["sent_agent"] if agent == SHORT_AGENT else "")
    assert "packet_failed" not in server.log()
    assert got["file"] == "remote-undionly.kpxe"
    lease = client.hgetall(f"bootyard:lease:{got['yiaddr']}")
    assert lease["subnet"] == "remote" and lease["state"] == "offered"
