"""Issue 13 F3 in the lab: two IPoIB-style clients (RFC 4390: htype 32, hlen 0, empty chaddr)
told apart only by option 61 each get an address of their own from the real service, and each
lease records the identity it belongs to. Packets crafted with scapy (an independent encoder)."""

from __future__ import annotations

import json
import sys

import pytest

from harness.dhcpkit import seed_inventory

pytestmark = pytest.mark.lab

CLIENTS = r"""
import json, socket, sys
from scapy.layers.dhcp import BOOTP, DHCP
server = sys.argv[1]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
sock.bind(("0.0.0.0", 68))
sock.settimeout(5)

def exchange(xid, options):
    pkt = BOOTP(op=1, htype=32, hlen=0, xid=xid, flags=0x8000, chaddr=bytes(16)) / DHCP(
        options=options + ["end"])
    sock.sendto(bytes(pkt), ("255.255.255.255", 67))
    for _ in range(20):
        reply = BOOTP(sock.recvfrom(4096)[0])
        if reply.xid == xid:
            opts = {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}
            return reply.yiaddr, opts.get("message-type")
    raise SystemExit(f"no reply to xid {xid}")

got = []
for n in (1, 2):
    client_id = bytes((0xff, 0, 0, 0, n, 0, 2, 0, 0, 0x15, 0x21, 0xbe, 0xef, n))
    offered, otype = exchange(0x1b00 + n, [("message-type", "discover"), (61, client_id)])
    acked, atype = exchange(0x1c00 + n, [("message-type", "request"), (61, client_id),
                                         ("requested_addr", offered), ("server_id", server)])
    got.append({"client_id": client_id.hex(), "offer": offered, "offer_type": otype,
                "ack": acked, "ack_type": atype})
print(json.dumps(got))
"""


def test_f3_ipoib_clients_get_one_address_each(lab, unix_redis, dhcp_process, tmp_path):
    seg = lab.segment()
    ns = seg.add_client("10.99.0.2/24")  # an address off the segment's subnet: routing only
    client = unix_redis.client()
    seed_inventory(client, seg)
    dhcp_process(seg.server, unix_redis.url, tmp_path / "dhcp.log")
    got = json.loads(ns.run(sys.executable, "-c", CLIENTS, seg.address(1), timeout=30).stdout)
    assert [(g["offer_type"], g["ack_type"]) for g in got] == [(2, 5), (2, 5)]
    assert got[0]["ack"] == got[0]["offer"] and got[1]["ack"] == got[1]["offer"]
    assert got[0]["ack"] != got[1]["ack"]
    for g in got:
        lease = client.hgetall(f"bootyard:lease:{g['ack']}")
        assert lease["client"] == "id:" + g["client_id"] and lease["state"] == "bound"
