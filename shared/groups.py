"""Groups: which hosts a group matches, and what a host gets from its groups (pure).

A group (``bootyard:group:<name>``) matches hosts by selectors, hash fields ``match.<key>``:

==================  ===========================================================  ======
selector            matches a host                                               weight
==================  ===========================================================  ======
``match.tags``      that has every tag listed (``rack1,web``)                    1 a tag
``match.mac``       whose MAC is one listed, or starts with a prefix listed      1
                    (``52:54:00`` or ``52:54:00:*``, an OUI); ``*`` is any MAC
``match.arch``      whose hardware report says this architecture (``hw.arch``)   1
``match.firmware``  whose hardware report says ``bios`` or ``uefi``              1
                    (``hw.firmware``)
``match.subnet``    whose fixed address (``ip``) is in this subnet               1
``match.hw.<path>`` whose hardware report (the host's ``hw`` field) has this     1
                    value at the dotted path (``match.hw.dmi.vendor = QEMU``,
                    ``match.hw.disks.0.size_bytes``); ``*`` and ``?`` are
                    wildcards; letters compare case-insensitively
==================  ===========================================================  ======

A group matches a host when every selector matches. It sets ``profile``, ``kernel``,
``kernel_args``, ``var.<name>`` and ``option.<name>`` (custom DHCP options) for the hosts it
matches. Its **specificity** is the sum of its selectors' weights (``match.tags = rack1,web``
plus ``match.hw.dmi.vendor = QEMU`` is 3). For each thing a group can set, the matching group of
highest specificity that sets it wins; two such groups of the same specificity that set it to
different values are a **tie**: the host gets that thing from none of its groups, and
``bootyard validate`` reports an error naming the host and both groups. A host's own fields
override whatever its groups set (variables one by one, DHCP options one by one).

A host's one-shot boot (``once_profile``, ``once_mode``, set by ``bootyard host rescue``) comes
last: while it is set the host boots that profile in that mode (default ``live``), without its
own or its groups' ``kernel``.

:func:`resolve` gives the effective host record (a :class:`~shared.records.Host` with the
layered fields) and where each value came from; :func:`effective_host` is what
:func:`shared.bootplan.records` calls, memoised per inventory version (services resolve a host
once per inventory change, not per packet).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shared import dhcpoptions, hardware
from shared.records import Host

MATCH_PREFIX = "match."
SELECTORS = ("tags", "mac", "arch", "firmware", "subnet")
ARCHES = ("x86_64", "i386", "arm64")
FIRMWARES = ("bios", "uefi")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_PATH_PART = re.compile(r"[A-Za-z0-9_]{1,64}")
_MAC_PART = re.compile(r"[0-9a-f]{2}")
ONCE_SOURCE = "host:once"


class SelectorError(ValueError):
    """A refused ``match.<key>`` field; the message is the reason shown to operators."""


# ------------------------------------------------------------------------------ selectors

def hw_path(path: str) -> tuple[str, ...]:
    """``dmi.vendor``, ``disks[0].name`` or ``disks.0.name`` as path segments."""
    parts = tuple(re.sub(r"\[(\d+)\]", r".\1", path).split("."))
    if not parts or not all(_PATH_PART.fullmatch(p) for p in parts):
        raise SelectorError(f"hw path {path!r}: dotted names of letters, digits and '_' "
                            "(hw.dmi.vendor, hw.disks.0.size_bytes)")
    return parts


def _mac_items(value: str) -> tuple[str, ...]:
    items = []
    for item in (v.strip().lower().replace("-", ":") for v in value.split(",")):
        if not item:
            continue
        if item == "*":
            items.append(item)
            continue
        body = item[:-2] if item.endswith(":*") else item
        parts = body.split(":")
        if not 1 <= len(parts) <= 6 or not all(_MAC_PART.fullmatch(p) for p in parts):
            raise SelectorError(f"{item!r}: a MAC (52:54:00:12:34:56), a prefix of whole "
                                "octets (52:54:00 or 52:54:00:*) or * (any)")
        items.append(body)
    if not items:
        raise SelectorError("expected one or more MACs or prefixes, comma separated")
    return tuple(items)


def parse_selector(key: str, value: str) -> str:
    """Check one ``match.<key>`` field (``key`` without the prefix); SelectorError says why."""
    text = value.strip()
    if "\n" in text or "\r" in text:
        raise SelectorError("must be a single line")
    if key == "tags":
        tags = [t.strip() for t in text.split(",") if t.strip()]
        if not tags or not all(_TAG.fullmatch(t) for t in tags):
            raise SelectorError("tags are letters, digits, '.', '_' and '-', comma separated")
    elif key == "mac":
        _mac_items(text)
    elif key == "arch":
        if text.lower() not in ARCHES:
            raise SelectorError(f"must be one of {', '.join(ARCHES)}")
    elif key == "firmware":
        if text.lower() not in FIRMWARES:
            raise SelectorError(f"must be one of {', '.join(FIRMWARES)}")
    elif key == "subnet":
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", text.lower()):
            raise SelectorError("a subnet name")
    elif key.startswith("hw."):
        hw_path(key[3:])
        if not text:
            raise SelectorError("give the value to match (* matches anything present)")
    else:
        raise SelectorError(f"unknown selector {key!r}: match.tags, match.mac, match.arch, "
                            "match.firmware, match.subnet or match.hw.<path>")
    return text


def weight(key: str, value: str) -> int:
    """What one selector adds to a group's specificity: one per tag, else one."""
    if key == "tags":
        return len([t for t in value.split(",") if t.strip()])
    return 1


def specificity(group) -> int:
    """The sum of the weights of a group's selectors (docs/fleet.md "Groups")."""
    return sum(weight(k, v) for k, v in group.match.items())


def host_hw(host: Host) -> dict[str, Any]:
    """A host's hardware report (its ``hw`` field, JSON), as a mapping; {} without one."""
    found = getattr(host, "hw", None)
    if isinstance(found, str):
        try:
            found = json.loads(found) if found else {}
        except ValueError:
            return {}
    return found if isinstance(found, Mapping) else {}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _same(found: Any, pattern: str) -> bool:
    if found is None or isinstance(found, (Mapping, list, tuple)):
        return False
    return fnmatch.fnmatchcase(_text(found).lower(), pattern.lower())


def selector_matches(key: str, value: str, host: Host, hw: Mapping[str, Any],
                     subnets: Mapping[str, Any]) -> bool:
    if key == "tags":
        return all(t.strip() in host.tags for t in value.split(",") if t.strip())
    if key == "mac":
        octets = host.mac.split(":")
        for item in _mac_items(value):
            if item == "*" or octets[:len(item.split(":"))] == item.split(":"):
                return True
        return False
    if key in ("arch", "firmware"):
        return _same(hw.get(key), value)
    if key == "subnet":
        subnet = subnets.get(value.strip().lower())
        if subnet is None or not host.ip:
            return False
        import ipaddress
        return ipaddress.IPv4Address(host.ip) in subnet.network
    if key.startswith("hw."):
        return _same(hardware.lookup(hw, ".".join(hw_path(key[3:]))), value.strip())
    return False


def _compile(key: str, value: str):
    """One selector as a test ``(host, hw, subnets) -> bool`` (its text parsed once)."""
    if key == "tags":
        needed = frozenset(t.strip() for t in value.split(",") if t.strip())
        return lambda host, hw, subnets: needed.issubset(host.tags)
    if key == "mac":
        items = _mac_items(value)
        if "*" in items:
            return lambda host, hw, subnets: True
        return lambda host, hw, subnets: host.mac.startswith(items) and any(
            host.mac == i or host.mac.startswith(i + ":") for i in items)
    return lambda host, hw, subnets: selector_matches(key, value, host, hw, subnets)


_COMPILED: dict[int, tuple[Any, tuple]] = {}


def _tests(group) -> tuple:
    """A group's selectors compiled (kept per group record, by identity)."""
    found = _COMPILED.get(id(group))
    if found is not None and found[0] is group:
        return found[1]
    if len(_COMPILED) > 4096:
        _COMPILED.clear()
    tests = tuple(_compile(k, v) for k, v in group.match.items())
    _COMPILED[id(group)] = (group, tests)
    return tests


def matches(group, host: Host, subnets: Mapping[str, Any], hw: Mapping[str, Any] | None = None
            ) -> bool:
    """Whether every selector of ``group`` matches ``host`` (a group without selectors matches
    nothing: ``match.mac = *`` matches every host)."""
    if not group.enabled or not group.match:
        return False
    hw = host_hw(host) if hw is None else hw
    for test in _tests(group):
        if not test(host, hw, subnets):
            return False
    return True


# ------------------------------------------------------------------------------ resolution

@dataclasses.dataclass(frozen=True)
class Conflict:
    """Groups of the same, highest specificity that set one thing differently for a host."""

    item: str  # profile, kernel, kernel_args, var.<name>, option.<name>
    groups: tuple[str, ...]
    specificity: int

    def __str__(self) -> str:
        return (f"{self.item}: groups {' and '.join(self.groups)} match with the same "
                f"specificity ({self.specificity}) and set it differently")


@dataclasses.dataclass(frozen=True)
class Resolution:
    host: Host  # the effective record: what the boot plan and DHCP use
    sources: Mapping[str, str]  # item -> "host", "group:<name>", "host:once"
    groups: tuple[tuple[str, int], ...] = ()  # (name, specificity), most specific first
    conflicts: tuple[Conflict, ...] = ()


def _option_item(name: str) -> str:
    try:
        return dhcpoptions.PREFIX + dhcpoptions.canonical_name(dhcpoptions.code_of(name))
    except dhcpoptions.OptionError:
        return dhcpoptions.PREFIX + name


def _items(record) -> dict[str, str]:
    """What a host or group sets: {item: value} (empty values are unset)."""
    out = {}
    for fname in ("profile", "kernel", "kernel_args"):
        value = getattr(record, fname, None)
        if value:
            out[fname] = value
    out.update((f"var.{k}", v) for k, v in record.vars.items() if v)
    out.update((_option_item(k), v) for k, v in getattr(record, "options", {}).items() if v)
    return out


def resolve(host: Host, groups: Iterable[Any], subnets: Mapping[str, Any]) -> Resolution:
    """The effective host: its groups' settings (most specific first; ties left out and
    reported), then its own fields, then its one-shot boot."""
    hw = host_hw(host)
    matched = sorted(((specificity(g), g.name, g) for g in groups
                      if matches(g, host, subnets, hw)), key=lambda t: (-t[0], t[1]))
    own = _items(host)
    once = bool(getattr(host, "once_profile", None))
    if not matched and not once:
        return Resolution(host, dict.fromkeys(own, "host"))
    chosen: dict[str, tuple[str, str]] = {}
    conflicts = []
    by_item: dict[str, list[tuple[int, str, str]]] = {}
    for spec, name, group in matched:
        for item, value in _items(group).items():
            by_item.setdefault(item, []).append((spec, name, value))
    for item, entries in by_item.items():
        top = entries[0][0]  # entries are in order of specificity, highest first
        at_top = [e for e in entries if e[0] == top]
        if len({e[2] for e in at_top}) > 1:
            if item not in own:
                conflicts.append(Conflict(item, tuple(e[1] for e in at_top), top))
            continue
        chosen[item] = (at_top[0][2], f"group:{at_top[0][1]}")
    for item, value in own.items():
        chosen[item] = (value, "host")
    fields: dict[str, Any] = {
        "profile": chosen.get("profile", (None,))[0],
        "kernel": chosen.get("kernel", (None,))[0],
        "kernel_args": chosen.get("kernel_args", ("",))[0],
        "vars": {i[4:]: v for i, (v, _) in chosen.items() if i.startswith("var.")},
        "options": {i[len(dhcpoptions.PREFIX):]: v for i, (v, _) in chosen.items()
                    if i.startswith(dhcpoptions.PREFIX)},
    }
    sources = {item: source for item, (_, source) in chosen.items()}
    if once:
        fields["profile"] = host.once_profile
        fields["kernel"] = None
        fields["boot_mode"] = host.once_mode or "live"
        sources["profile"] = sources["boot_mode"] = ONCE_SOURCE
        sources.pop("kernel", None)
    fields = {k: v for k, v in fields.items() if hasattr(host, k)}
    return Resolution(dataclasses.replace(host, **fields), sources,
                      tuple((n, s) for s, n, _ in matched), tuple(conflicts))


def effective_host(inventory, host: Host) -> Host:
    """``resolve(host, ...).host`` against an inventory view, memoised per inventory version
    when the view offers ``memo`` (shared/cache.py): a host is resolved once per change."""
    memo = getattr(inventory, "memo", None)
    if memo is None:
        return _resolve_in(inventory, host).host
    cache = memo("groups")
    found = cache.get(host.mac)
    if found is not None and found[0] is host:
        return found[1]
    return _effective_miss(inventory, host, cache)


def _effective_miss(inventory, host: Host, cache: dict) -> Host:
    groups = cache.get(None)
    if groups is None:
        groups = cache[None] = tuple(g for g in inventory.all("group") if g.enabled)
    if not groups and not getattr(host, "once_profile", None):
        effective = host
    else:
        effective = _resolve_in(inventory, host, groups).host
    cache[host.mac] = (host, effective)
    return effective


def _resolve_in(inventory, host: Host, groups=None) -> Resolution:
    if groups is None:
        groups = inventory.all("group")
    return resolve(host, groups, {s.name: s for s in inventory.all("subnet")})
