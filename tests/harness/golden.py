"""Golden packets from real firmware, captured in the QEMU lab (tests/golden/, see tests/FIRMWARE.md).

``packets()`` yields ``(name, payload)`` for every stored packet: ``payload`` is the UDP payload
(a DHCP/BOOTP message or a TFTP request) exactly as the firmware sent it, ``name`` is
``<file stem>#<index>`` such as ``dhcp-ovmf-pxe#0``. No scapy needed: the pcap files are read
here (classic libpcap format, Ethernet, IPv4, UDP), so the codec tests stay independent of it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"


def read_pcap(path: Path) -> Iterator[bytes]:
    """The frames of a classic pcap file (either byte order, micro- or nanosecond stamps)."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (pcapng? write with -F pcap)")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
    offset = 24
    while offset + 16 <= len(data):
        _sec, _frac, caplen, _origlen = struct.unpack(endian + "IIII", data[offset:offset + 16])
        offset += 16
        yield data[offset:offset + caplen]
        offset += caplen


def udp_payload(frame: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of an Ethernet/IPv4/UDP frame, else None."""
    ethertype = struct.unpack("!H", frame[12:14])[0]
    offset = 14
    if ethertype == 0x8100:  # VLAN tag
        ethertype = struct.unpack("!H", frame[16:18])[0]
        offset = 18
    if ethertype != 0x0800 or frame[offset + 9] != 17:
        return None
    ihl = (frame[offset] & 0x0F) * 4
    udp = frame[offset + ihl:]
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    return sport, dport, udp[8:length]


def packets(prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """Every stored golden packet whose file name starts with ``prefix`` (``dhcp``, ``tftp``)."""
    for path in sorted(GOLDEN_DIR.glob(f"{prefix}*.pcap")):
        index = 0
        for frame in read_pcap(path):
            parsed = udp_payload(frame)
            if parsed is None:
                continue
            yield f"{path.stem}#{index}", parsed[2]
            index += 1
