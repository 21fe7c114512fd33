"""A machine's hardware report: its one shape, checked once (pure: no I/O).

The discovery image (docs/discovery.md) posts this JSON to ``POST /discovery/report``; it is kept
as the ``hw`` field of a ``discovered`` record and, once adopted, of the host (docs/inventory.md).
Templates see it as ``hw`` (``hw.disks[0].name``); groups match dotted paths into it
(``hw.dmi.vendor``)::

    {"dmi": {"vendor": "QEMU", "product": "Standard PC (i440FX + PIIX, 1996)",
             "serial": "", "uuid": "5a2c..."},
     "cpus": 2, "cpu_model": "QEMU Virtual CPU version 2.5+", "memory_bytes": 536870912,
     "disks": [{"name": "vda", "size_bytes": 3221225472, "serial": "d1", "model": ""}],
     "nics": [{"name": "eth0", "mac": "52:54:00:e0:00:01", "link": "up", "driver": "virtio_net"}],
     "firmware": "bios", "arch": "x86_64"}

Every member is optional; no other member is accepted. Text is printable, at most
:data:`MAX_TEXT` characters; lists are bounded (:data:`MAX_ITEMS`). :func:`check` returns the
report in canonical form (MACs canonical, members sorted) or raises :class:`HardwareError`
naming the member and the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from shared.addresses import AddressError, normalise_mac

MAX_TEXT = 128
MAX_ITEMS = 64
MAX_JSON = 16_384  # the canonical JSON kept in Redis
FIRMWARES = ("bios", "uefi")
LINKS = ("up", "down", "unknown")
DMI_FIELDS = ("vendor", "product", "serial", "uuid", "board_vendor", "board_product",
              "bios_vendor", "bios_version")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,32}")
_MAX_NUMBER = 1 << 62


class HardwareError(ValueError):
    """A report that does not have the shape; the text names the member and why."""


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise HardwareError(f"{where}: expected text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise HardwareError(f"{where}: longer than {MAX_TEXT} characters")
    if not value.isprintable():
        raise HardwareError(f"{where}: not printable text")
    return value.strip()


def _number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_NUMBER:
        raise HardwareError(f"{where}: expected a whole number of 0 or more")
    return value


def _name(value: Any, where: str) -> str:
    text = _text(value, where)
    if not _DEVICE_NAME.fullmatch(text):
        raise HardwareError(f"{where}: a device name is letters, digits and '. _ : -', "
                            "up to 32")
    return text


def _object(value: Any, where: str, allowed) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise HardwareError(f"{where}: expected an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise HardwareError(f"{where}: unknown member {unknown[0]!r} (known: "
                            f"{', '.join(allowed)})")
    return value


def _items(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise HardwareError(f"{where}: expected a list")
    if len(value) > MAX_ITEMS:
        raise HardwareError(f"{where}: more than {MAX_ITEMS} entries")
    return value


def _disk(value: Any, where: str) -> dict[str, Any]:
    disk = _object(value, where, ("name", "size_bytes", "serial", "model", "rotational"))
    out: dict[str, Any] = {"name": _name(disk.get("name"), f"{where}.name")}
    out["size_bytes"] = _number(disk.get("size_bytes", 0), f"{where}.size_bytes")
    for member in ("serial", "model"):
        out[member] = _text(disk.get(member, ""), f"{where}.{member}")
    if "rotational" in disk:
        if not isinstance(disk["rotational"], bool):
            raise HardwareError(f"{where}.rotational: expected true or false")
        out["rotational"] = disk["rotational"]
    return out


def _nic(value: Any, where: str) -> dict[str, Any]:
    nic = _object(value, where, ("name", "mac", "link", "driver"))
    try:
        mac = normalise_mac(_text(nic.get("mac"), f"{where}.mac"))
    except AddressError as exc:
        raise HardwareError(f"{where}.mac: {exc}") from None
    out: dict[str, Any] = {"mac": mac}
    if "name" in nic:
        out["name"] = _name(nic["name"], f"{where}.name")
    link = _text(nic.get("link", "unknown"), f"{where}.link").lower()
    if link not in LINKS:
        raise HardwareError(f"{where}.link: must be one of {', '.join(LINKS)}")
    out["link"] = link
    if nic.get("driver"):
        out["driver"] = _name(nic["driver"], f"{where}.driver")
    return out


def check(report: Any) -> dict[str, Any]:
    """The report in canonical form, or HardwareError naming what is wrong."""
    body = _object(report, "report", ("dmi", "cpus", "cpu_model", "memory_bytes", "disks",
                                      "nics", "firmware", "arch"))
    out: dict[str, Any] = {}
    if "dmi" in body:
        dmi = _object(body["dmi"], "dmi", DMI_FIELDS)
        out["dmi"] = {k: _text(dmi[k], f"dmi.{k}") for k in DMI_FIELDS if k in dmi}
    for member in ("cpus", "memory_bytes"):
        if member in body:
            out[member] = _number(body[member], member)
    for member in ("cpu_model", "arch"):
        if member in body:
            out[member] = _text(body[member], member)
    if "firmware" in body:
        firmware = _text(body["firmware"], "firmware").lower()
        if firmware not in FIRMWARES:
            raise HardwareError(f"firmware: must be one of {', '.join(FIRMWARES)}")
        out["firmware"] = firmware
    if "disks" in body:
        out["disks"] = [_disk(d, f"disks[{i}]") for i, d in enumerate(_items(body["disks"],
                                                                               "disks"))]
    if "nics" in body:
        out["nics"] = [_nic(n, f"nics[{i}]") for i, n in enumerate(_items(body["nics"], "nics"))]
    return out


def dumps(hw: Mapping[str, Any]) -> str:
    """The canonical JSON text of a checked report (what the ``hw`` field holds)."""
    return json.dumps(hw, sort_keys=True, separators=(",", ":"))


def parse_text(text: str) -> dict[str, Any]:
    """An ``hw`` field's JSON text, checked (:func:`check`); HardwareError says why not."""
    if len(text) > MAX_JSON:
        raise HardwareError(f"longer than {MAX_JSON} characters")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HardwareError(f"not JSON: {exc}") from None
    return check(value)


def lookup(hw: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``dmi.vendor``, ``disks.0.size_bytes``, ``nics.0.mac``),
    or None where there is none."""
    value: Any = hw
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def summary(hw: Mapping[str, Any]) -> dict[str, str]:
    """Short text columns for lists: vendor, product, serial, cpus, memory, disks, firmware."""
    dmi = hw.get("dmi") or {}
    disks = hw.get("disks") or []
    return {"vendor": dmi.get("vendor", ""), "product": dmi.get("product", ""),
            "serial": dmi.get("serial", ""), "cpus": str(hw.get("cpus", "")),
            "memory": size_text(hw["memory_bytes"]) if "memory_bytes" in hw else "",
            "disks": ",".join(f"{d['name']}:{size_text(d['size_bytes'])}" for d in disks),
            "firmware": hw.get("firmware", "")}


def size_text(size: int) -> str:
    """Bytes in binary units, as lsblk prints them: 512M, 3G, 1.5T."""
    for unit, power in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << power:
            value = size / (1 << power)
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{size}B"
