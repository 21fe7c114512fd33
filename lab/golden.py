"""Golden packets: what real firmware sends, captured with tshark in the lab (tests/golden/).

:func:`capture_all` boots the lab's VMs through each path (classic stack; the clients are what is
recorded) with tshark listening on the server's eth0, then sorts the client packets by who sent
them: DHCP from SeaBIOS's iPXE ROM, OVMF PXE, OVMF HTTP boot, iPXE EFI and busybox udhcpc; TFTP
read requests of iPXE, OVMF, PXELINUX and GRUB. Each group is stored as ``<stem>.pcap`` with a
readable scapy dump ``<stem>.txt``. :func:`summary` reduces a packet to the facts that identify a
client's behaviour (message type, options and their order, parameter request list, option
60/77/93 values, broadcast flag, TFTP mode and options), which do not change from boot to boot.
"""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

from lab.qemu import BIOS, UEFI, UEFI_HTTP

CAPTURE_FILTER = "udp port 67 or udp port 68 or udp port 69"
# capture name -> (host kind, boot path, firmware)
CAPTURES = {
    "bios-ipxe": ("kernel", "ipxe", BIOS),
    "bios-pxelinux": ("kernel", "pxelinux", BIOS),
    "uefi-ipxe": ("kernel", "ipxe", UEFI),
    "uefi-grub": ("kernel", "grub", UEFI),
    "uefi-http": ("kernel", "ipxe", UEFI_HTTP),
}
DHCP_MAGIC = b"\x63\x82\x53\x63"
MESSAGE_TYPES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak",
                 7: "release", 8: "inform"}


class Capture:
    """tshark on the server's eth0, writing a classic pcap, for the duration of a ``with``."""

    def __init__(self, namespace, path: Path) -> None:
        self.ns = namespace
        self.path = path

    def __enter__(self) -> Capture:
        self.err = open(self.path.with_suffix(".tshark.log"), "w+")
        self.proc = self.ns.popen("tshark", "-i", "eth0", "-F", "pcap", "-w", str(self.path),
                                  "-f", CAPTURE_FILTER, "-q", stdout=subprocess.DEVNULL,
                                  stderr=self.err)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.err.seek(0)
            if "Capturing on" in self.err.read():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.err.seek(0)
        raise RuntimeError(f"tshark did not start: {self.err.read()[-300:]}")

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # let the last packets be written
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.err.close()


# ------------------------------------------------------------------ parsing (test tooling only)

def dhcp_options(payload: bytes) -> list[tuple[int, bytes]]:
    if len(payload) < 240 or payload[236:240] != DHCP_MAGIC:
        return []
    out, i = [], 240
    while i < len(payload):
        code = payload[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(payload):
            break
        length = payload[i + 1]
        out.append((code, payload[i + 2:i + 2 + length]))
        i += 2 + length
    return out


def dhcp_client(payload: bytes) -> str:
    """Which firmware sent this client DHCP message."""
    opts = dict(dhcp_options(payload))
    vendor = opts.get(60, b"")
    arch = struct.unpack("!H", opts[93][:2])[0] if len(opts.get(93, b"")) >= 2 else None
    if vendor.startswith(b"HTTPClient"):
        return "ovmf-http"
    if b"iPXE" in opts.get(77, b"") or 175 in opts:
        return "ipxe-bios" if arch in (0, None) else "ipxe-efi"
    if vendor.startswith(b"PXEClient"):
        return "seabios-pxe" if arch in (0, None) else "ovmf-pxe"
    if vendor.startswith(b"udhcp"):
        return "udhcpc"
    return "other"


def tftp_request(payload: bytes) -> tuple[int, str, str, list[str]] | None:
    """(opcode, file name, mode, option names) of an RRQ/WRQ, else None."""
    if len(payload) < 4 or payload[1] not in (1, 2):
        return None
    parts = payload[2:].split(b"\0")
    if len(parts) < 2:
        return None
    name, mode = parts[0].decode(errors="replace"), parts[1].decode(errors="replace").lower()
    options = [p.decode(errors="replace").lower() for p in parts[2:-1:2]]
    return payload[1], name, mode, options


def summary(payload: bytes, protocol: str) -> str:
    """The stable facts of one client packet (see the module docstring)."""
    if protocol == "tftp":
        req = tftp_request(payload)
        if req is None:
            return "not-a-request"
        opcode, _name, mode, options = req
        return f"{'RRQ' if opcode == 1 else 'WRQ'} mode={mode} options={','.join(options)}"
    opts = dhcp_options(payload)
    values = dict(opts)
    mtype = MESSAGE_TYPES.get(values.get(53, b"\0")[0], "?")
    flags = struct.unpack("!H", payload[10:12])[0]
    parts = [mtype, f"broadcast={'yes' if flags & 0x8000 else 'no'}",
             "options=" + ",".join(str(c) for c, _ in opts),
             "prl=" + ",".join(str(b) for b in values.get(55, b""))]
    for code in (57, 60, 77, 93, 94, 97):
        if code in values:
            value = values[code]
            if code in (60, 77):
                text = value.decode(errors="replace")
            elif code == 97:
                text = f"type{value[0]}+{len(value) - 1}bytes" if value else "empty"
            else:
                text = value.hex()
            parts.append(f"opt{code}={text}")
    return " ".join(parts)


# ------------------------------------------------------------------ pcap writing

def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in frames:
        out.append(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))


def read_frames(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    frames, offset = [], 24
    while offset + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frames.append((sec + frac / (1e9 if nano else 1e6), data[offset + 16:offset + 16 + caplen]))
        offset += 16 + caplen
    return frames


def classify(capture: str, frames: list[tuple[float, bytes]]) -> dict[str, list]:
    """Group a capture's client packets into golden files: ``dhcp-<client>``, ``tftp-<client>``."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from harness.golden import udp_payload
    groups: dict[str, list] = {}
    for ts, frame in frames:
        parsed = udp_payload(frame)
        if parsed is None:
            continue
        sport, dport, payload = parsed
        if dport == 67 and sport == 68:
            groups.setdefault(f"dhcp-{dhcp_client(payload)}", []).append((ts, frame))
        elif dport == 69:
            req = tftp_request(payload)
            if req is None:
                continue
            name = req[1]
            if capture == "bios-pxelinux":
                who = "ipxe" if name.endswith("pxelinux.0") else "pxelinux"
            elif capture == "uefi-grub":
                who = "ovmf" if name.endswith("core.efi") else "grub"
            elif capture == "uefi-ipxe":
                who = "ovmf"
            else:
                who = "other"
            groups.setdefault(f"tftp-{who}", []).append((ts, frame))
    return groups


def dump(stem: str, frames: list[tuple[float, bytes]]) -> str:
    """A readable decode of each packet, made with scapy (an independent decoder)."""
    from scapy.layers.dhcp import BOOTP
    from scapy.layers.l2 import Ether
    from scapy.layers.tftp import TFTP
    lines = [f"# {stem}: {len(frames)} packet(s), decoded by scapy; summary line = the facts "
             "the lab test compares", ""]
    protocol = "tftp" if stem.startswith("tftp") else "dhcp"
    for index, (ts, frame) in enumerate(frames):
        packet = Ether(frame)
        layer = packet.getlayer(TFTP) if protocol == "tftp" else packet.getlayer(BOOTP)
        payload = bytes(packet["UDP"].payload)
        lines.append(f"== {stem}#{index}  +{ts - frames[0][0]:.3f}s  {summary(payload, protocol)}")
        lines.append((layer.show(dump=True) if layer is not None else repr(packet)).rstrip())
        lines.append("")
    return "\n".join(lines) + "\n"


def store(out_dir: Path, groups: dict[str, list]) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, frames in sorted(groups.items()):
        write_pcap(out_dir / f"{stem}.pcap", frames)
        (out_dir / f"{stem}.txt").write_text(dump(stem, frames))
        written.append(stem)
    return written
