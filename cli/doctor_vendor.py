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
