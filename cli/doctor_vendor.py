"""What a firmware needs in the vendor options of an OFFER to accept it (``bootyard doctor``).

A PXE ROM (option 60 ``PXEClient:...`` in its DISCOVER) takes an OFFER only if it names
``PXEClient`` in option 60; with option 43 (PXE vendor options: discovery control) it boots the
file at once instead of waiting for a ProxyDHCP or boot server that never answers (Intel and
Broadcom ROMs wait seconds, some forever). iPXE asking for its script needs neither. A UEFI HTTP
boot client (option 60 ``HTTPClient``) needs ``HTTPClient`` echoed and an ``http://`` URL.
"""

from __future__ import annotations

from typing import Any

PXE_DISCOVERY_CONTROL = 6  # option 43 sub-option (PXE spec 2.1 table 2-1)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value or "").encode()


def vendor_problems(options: dict[str, Any], ipxe: bool, http_client: bool = False) -> list[str]:
    """The OFFER's vendor option problems (``options`` as scapy names them)."""
    if ipxe:
        return []
    vendor = _bytes(options.get("vendor_class_id"))
    if http_client:
        if not vendor.startswith(b"HTTPClient"):
            return ["no option 60 HTTPClient in the OFFER (a UEFI HTTP boot client ignores it)"]
        return []
    problems = []
    if not vendor.startswith(b"PXEClient"):
        problems.append("no option 60 PXEClient in the OFFER (PXE firmware ignores it)")
    specific = _bytes(options.get("vendor_specific"))
    if not specific:
        problems.append("no option 43 (PXE vendor options) in the OFFER: some PXE ROMs wait "
                        "for a ProxyDHCP server first")
    elif not _has_suboption(specific, PXE_DISCOVERY_CONTROL):
        problems.append("option 43 without PXE_DISCOVERY_CONTROL (sub-option 6): some PXE ROMs "
                        "look for a boot server first")
    return problems


def _has_suboption(data: bytes, code: int) -> bool:
    i = 0
    while i < len(data):
        tag = data[i]
        if tag == 255:
            return False
        if tag == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            return False
        if tag == code:
            return True
        i += 2 + data[i + 1]
    return False


# ------------------------------------------------------------------------------ BSDP (Macs)
BSDP_VENDOR = b"AAPLBSDPC/i386/MacPro5,1"  # as a Mac's firmware names itself


def bsdp_list_packet(mac: str, xid: int, ciaddr: str, reply_port: int) -> bytes:
    """A Mac's INFORM[LIST] (BSDP 1.1), asking for the answer on ``reply_port``."""
    from scapy.layers.dhcp import BOOTP, DHCP
    bsdp = bytes((1, 1, 1, 2, 2, 1, 1, 5, 2)) + reply_port.to_bytes(2, "big") \
        + bytes((12, 2)) + (1500).to_bytes(2, "big")
    options = [("message-type", "inform"), ("vendor_class_id", BSDP_VENDOR),
               ("vendor_specific", bsdp), ("param_req_list", [1, 3, 17, 43, 54, 60]), "end"]
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    return bytes(BOOTP(op=1, htype=1, hlen=6, xid=xid, ciaddr=ciaddr, chaddr=chaddr)
                 / DHCP(options=options))


def bsdp_images(data: bytes, xid: int) -> list[str] | None:
    """The image names of a BSDP LIST answer (None: not the answer to ``xid``)."""
    from scapy.layers.dhcp import BOOTP, DHCP
    try:
        packet = BOOTP(data)
    except Exception:  # noqa: BLE001 - not BOOTP: not ours
        return None
    if packet.op != 2 or packet.xid != xid or DHCP not in packet:
        return None
    options = {o[0]: o[1] for o in packet[DHCP].options if isinstance(o, tuple)}
    if not _bytes(options.get("vendor_class_id")).startswith(b"AAPLBSDPC"):
        return None
    data, names, i = _bytes(options.get("vendor_specific")), [], 0
    while i + 1 < len(data):
        tag, length = data[i], data[i + 1]
        value = data[i + 2:i + 2 + length]
        if tag == 9:  # boot image list: 4-byte id, 1-byte name length, name
            j = 0
            while j + 5 <= len(value):
                n = value[j + 4]
                names.append(value[j + 5:j + 5 + n].decode(errors="replace"))
                j += 5 + n
        i += 2 + length
    return names
