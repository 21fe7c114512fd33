"""Golden packets of real firmware (tests/golden/, tests/FIRMWARE.md).

The lab tests boot each path with tshark on the server's link and check that every firmware still
sends what the golden files record (the stable facts: message types, options in order, parameter
request list, option 60/77/93 values, broadcast flag, TFTP mode and options). With
``BOOTYARD_REGEN_GOLDEN=1`` (``make golden``) they rewrite the golden files instead.
The file checks at the bottom need no lab: each stored packet decodes, and its dump is current.
"""

from __future__ import annotations

import os

import pytest

from harness.golden import GOLDEN_DIR, packets
from lab.golden import CAPTURES, Capture, classify, dump, read_frames, store, summary

REGEN = os.environ.get("BOOTYARD_REGEN_GOLDEN") == "1"
# capture -> the golden files it provides
EXPECTED = {
    "bios-ipxe": ["dhcp-ipxe-bios", "dhcp-udhcpc"],
    "bios-pxelinux": ["tftp-ipxe", "tftp-pxelinux"],
    "uefi-ipxe": ["dhcp-ovmf-pxe", "dhcp-ipxe-efi", "tftp-ovmf"],
    "uefi-grub": ["tftp-grub"],
    "uefi-http": ["dhcp-ovmf-http"],
}
ALL_STEMS = sorted(s for stems in EXPECTED.values() for s in stems)


def protocol(stem: str) -> str:
    return stem.split("-", 1)[0]


def golden_summaries(stem: str) -> set[str]:
    return {summary(p, protocol(stem)) for name, p in packets(stem)
            if name.rsplit("#", 1)[0] == stem}


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("capture", sorted(CAPTURES))
def test_firmware_sends_golden_packets(bootlab, tmp_path, capture):
    kind, boot_path, firmware = CAPTURES[capture]
    boot = bootlab("classic")
    host = boot.plan.add_host("golden", kind=kind, boot=boot_path)
    boot.start()
    pcap = tmp_path / f"{capture}.pcap"
    with Capture(boot.server, pcap):
        boot.boot(host, firmware)
    from harness.golden import udp_payload
    groups = classify(capture, read_frames(pcap))
    missing = [s for s in EXPECTED[capture] if s not in groups]
    assert not missing, f"no packets from {missing} in the capture; got {sorted(groups)}"
    if REGEN:
        store(GOLDEN_DIR, {s: groups[s] for s in EXPECTED[capture]})
        return
    for stem in EXPECTED[capture]:
        fresh = {summary(udp_payload(frame)[2], protocol(stem)) for _ts, frame in groups[stem]}
        assert fresh == golden_summaries(stem), (
            f"{stem}: the firmware's packets differ from tests/golden/{stem}.pcap "
            f"(if the firmware changed on purpose: make golden, and update tests/FIRMWARE.md)")


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_golden_file_present_and_dump_current(stem):
    pcap = GOLDEN_DIR / f"{stem}.pcap"
    assert pcap.exists(), f"{pcap} missing: run make golden"
    frames = read_frames(pcap)
    assert frames
    assert (GOLDEN_DIR / f"{stem}.txt").read_text() == dump(stem, frames)


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_golden_packets_decode_with_scapy(stem):
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.tftp import TFTP
    payloads = [p for name, p in packets(stem) if name.rsplit("#", 1)[0] == stem]
    assert payloads
    for payload in payloads:
        if protocol(stem) == "dhcp":
            message = BOOTP(payload)
            assert message.op == 1 and DHCP in message  # a client request with options
            assert any(opt[0] == "message-type" for opt in message[DHCP].options
                       if isinstance(opt, tuple))
        else:
            assert TFTP(payload).op == 1  # read request
