"""MAC and IPv4 normalisation: the one place that decides how an address is spelled.

Every MAC that enters bootyard (CLI argument, Redis key, a PXELINUX file name) goes through
:func:`normalise_mac` on write and on lookup, so ``52-54-00-AB-CD-EF``, ``5254.00ab.cdef`` and
``525400abcdef`` are the same host. A DHCP chaddr's MAC is spelled in the same form by the DHCP
service's compiled packet path (``services.dhcp.codec.chaddr_mac``; a test checks that
normalise_mac leaves it as it is).
"""

from __future__ import annotations

import ipaddress
import re

_HEX = re.compile(r"[0-9a-f]{12}")
_SEPARATED = re.compile(r"[0-9a-f]{1,2}([:-])[0-9a-f]{1,2}(\1[0-9a-f]{1,2}){4}")
_CISCO = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")


class AddressError(ValueError):
    """A MAC or IP address that cannot be understood; the message says what was wrong."""


def normalise_mac(value: str) -> str:
    """Return ``value`` as a canonical MAC: lower case, colon separated (``52:54:00:ab:cd:ef``).

    Accepts colons or dashes (single-digit octets allowed, as ``arp`` prints them), Cisco dots
    (``5254.00ab.cdef``), bare hex, any case, and PXELINUX's ``01-`` hardware-type prefix.
    """
    if not isinstance(value, str):
        raise AddressError(f"MAC address must be text, got {type(value).__name__}")
    text = value.strip().lower()
    if len(text) == 20 and text.startswith("01-"):  # pxelinux.cfg/01-52-54-00-ab-cd-ef
        text = text[3:]
    if _HEX.fullmatch(text):
        digits = text
    elif _CISCO.fullmatch(text):
        digits = text.replace(".", "")
    elif _SEPARATED.fullmatch(text):
        digits = "".join(part.zfill(2) for part in re.split(r"[:-]", text))
    else:
        raise AddressError(
            f"{value!r} is not a MAC address (expected six hex octets such as 52:54:00:ab:cd:ef)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def mac_to_bytes(mac: str) -> bytes:
    return bytes.fromhex(normalise_mac(mac).replace(":", ""))


def normalise_ipv4(value: str) -> str:
    """Return a dotted-quad IPv4 address, rejecting anything else with a reason."""
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except (ipaddress.AddressValueError, AttributeError) as exc:
        raise AddressError(f"{value!r} is not an IPv4 address: {exc}") from None


def normalise_network(value: str) -> ipaddress.IPv4Network:
    """An IPv4 network in CIDR form; host bits must be zero (``10.0.0.0/24``, not ``10.0.0.1/24``)."""
    try:
        return ipaddress.IPv4Network(value.strip(), strict=True)
    except (ValueError, AttributeError) as exc:
        raise AddressError(f"{value!r} is not an IPv4 network in CIDR form: {exc}") from None
