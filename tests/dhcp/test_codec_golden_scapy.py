"""Our codec reads the real firmware packets in tests/golden/ (iPXE, OVMF PXE and HTTP boot,
udhcpc) exactly as scapy, an independent decoder, reads the same bytes: every header field and
every option, value for value."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions

from harness.golden import packets
from services.dhcp import codec

GOLDEN = list(packets("dhcp"))


def scapy_options(packet: BOOTP) -> list[tuple[int, bytes]]:
    """(code, encoded option bytes) for every option scapy found, in packet order; scapy's own
    decoded value is turned back into wire bytes by scapy."""
    out = []
    for item in packet[DHCP].options:
        if item in ("end", "pad"):
            continue
        name = item[0]
        code = name if isinstance(name, int) else DHCPRevOptions[name][0]
        out.append((code, raw(DHCP(options=[item]))))
    return out


def test_every_golden_capture_has_dhcp_packets():
    names = {name.split("#")[0] for name, _ in GOLDEN}
    assert {"dhcp-ipxe-bios", "dhcp-ipxe-efi", "dhcp-ovmf-http", "dhcp-ovmf-pxe",
            "dhcp-udhcpc"} <= names
    assert len(GOLDEN) >= 10


@pytest.mark.parametrize("name,payload", GOLDEN, ids=[n for n, _ in GOLDEN])
def test_codec_reads_golden_packet_as_scapy_does(name, payload):
    ours = codec.decode(payload)
    theirs = BOOTP(payload)
    assert DHCP in theirs, f"{name}: scapy found no DHCP options"
    assert (ours.op, ours.htype, ours.hlen, ours.hops, ours.xid, ours.secs, ours.flags) == (
        theirs.op, theirs.htype, theirs.hlen, theirs.hops, theirs.xid, theirs.secs,
        int(theirs.flags))
    assert (ours.ciaddr, ours.yiaddr, ours.siaddr, ours.giaddr) == (
        theirs.ciaddr, theirs.yiaddr, theirs.siaddr, theirs.giaddr)
    assert ours.chaddr == bytes(theirs.chaddr).ljust(16, b"\0")[:16]
    assert ours.sname == bytes(theirs.sname).rstrip(b"\0")
    assert ours.file == bytes(theirs.file).rstrip(b"\0")
    expected = scapy_options(theirs)
    # RFC 3396: our decoder joins repeated instances of one code; none of these packets has any
    assert len({code for code, _ in expected}) == len(expected)
    assert list(ours.options) == [code for code, _ in expected]
    for code, wire in expected:
        value = ours.options[code]
        assert bytes((code, len(value))) + value == wire, f"{name}: option {code}"
    # the readings the policy uses agree with scapy's named values
    named = {item[0]: item[1] for item in theirs[DHCP].options if isinstance(item, tuple)}
    assert ours.message_type == named["message-type"]
    if "pxe_client_architecture" in named:
        arch = named["pxe_client_architecture"]
        assert ours.client_arches[0] == int.from_bytes(arch[:2], "big")
    if "vendor_class_id" in named:
        assert ours.options[codec.Opt.VENDOR_CLASS_ID] == named["vendor_class_id"]
    if "param_req_list" in named:
        assert list(ours.options[codec.Opt.PARAMETER_REQUEST_LIST]) == named["param_req_list"]
    if "max_dhcp_size" in named:
        assert int.from_bytes(ours.options[codec.Opt.MAX_MESSAGE_SIZE], "big") == (
            named["max_dhcp_size"])


@pytest.mark.parametrize("name,payload", GOLDEN, ids=[n for n, _ in GOLDEN])
def test_golden_packet_reencodes_to_what_scapy_reads_back(name, payload):
    """Our encoder, given what our decoder read, writes a packet scapy reads as the original."""
    ours = codec.decode(payload)
    again = BOOTP(codec.encode(ours))
    assert scapy_options(again) == scapy_options(BOOTP(payload))
    assert (again.xid, again.chaddr, again.flags) == (ours.xid, BOOTP(payload).chaddr,
                                                      BOOTP(payload).flags)
