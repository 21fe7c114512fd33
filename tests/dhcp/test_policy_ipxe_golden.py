"""The reply to real firmware's packets (tests/golden/): iPXE is told there is no ProxyDHCP.

iPXE waits about 3 s for ProxyDHCP offers unless the offer carries its option 175 with
sub-option 176 (no-pxedhcp) = 1; measured in the QEMU lab (docs/lab.md), this takes iPXE's DHCP
from ~3 s to ~0.05 s. Firmware other than iPXE must not get option 175.
"""

from __future__ import annotations

import ipaddress

import pytest

from harness.golden import packets
from services.dhcp import codec, policy
from services.dhcp.codec import MessageType, Opt
from services.dhcp.policy import Lease, Reply, ServerContext
from shared.records import Subnet

CTX = ServerContext(server_ip="198.18.0.1", http_base_url="http://198.18.0.1:8080")
LAB = Subnet(name="lab", network=ipaddress.IPv4Network("198.18.0.0/24"),
             ranges=(("198.18.0.100", "198.18.0.199"),))
DISCOVERS = [(name, payload) for name, payload in packets("dhcp")
             if codec.decode(payload).message_type == MessageType.DISCOVER]


def reply_to(payload: bytes) -> codec.Message:
    request = codec.decode(payload)
    mac = ":".join(f"{b:02x}" for b in request.chaddr[:6])
    result = policy.decide(request, None, None, LAB, Lease("198.18.0.150", 600), CTX, mac)
    assert isinstance(result, Reply)
    return result.message


@pytest.mark.parametrize("name,payload", DISCOVERS, ids=[n for n, _ in DISCOVERS])
def test_only_ipxe_is_told_no_proxydhcp(name, payload):
    offer = reply_to(payload)
    if name.startswith(("dhcp-ipxe-bios", "dhcp-ipxe-efi")):
        assert offer.options[Opt.IPXE_ENCAP] == bytes((176, 1, 1))
        assert b"/boot/ipxe?mac=" in codec.encode(offer)
    else:
        assert Opt.IPXE_ENCAP not in offer.options
