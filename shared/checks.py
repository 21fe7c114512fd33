"""The inventory's checks as a whole, on a dump of it (``{kind: {id: hash}}``): each record,
the references between records (unknown profile or export, duplicate reserved address or host
name, a reserved address inside a dynamic range or outside every subnet, overlapping subnets and
ranges), what each host's boot mode needs (the boot plan is made with :mod:`shared.bootplan`,
so its rules are not restated), values stored in a form the services would normalise, and keys
under ``bootyard:`` that match no shape or have the wrong Redis type. ``bootyard validate``, the
admin API and every write path (:mod:`shared.inventory`) run the same checks."""

from __future__ import annotations

import collections
import dataclasses
import difflib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from shared import bootcmdline, bootplan, groups, keys
from shared.fields import Problem
from shared.hashform import normalise
from shared.schema import KINDS
from shared.store import (
    InventoryStore,
)
from shared.validation import parse_record

# Facts for checking what a host boots without a running service: the URL and the SAN address
# only appear in the rendered text, never decide whether a plan can be made. No token, as in a
# boot script without http.token_in_scripts.
CHECK_FACTS = bootplan.Facts(base_url="http://bootyard.invalid", san_server="192.0.2.1")

Records = dict[str, dict[str, Any]]
Dump = Mapping[str, Mapping[str, Mapping[str, str]]]


def parse_dump(dump: Dump) -> tuple[Records, dict[str, list[Problem]]]:
    """Typed records ``{kind: {id: record}}`` of the valid objects, and each key's problems."""
    records: Records = {name: {} for name in KINDS}
    problems: dict[str, list[Problem]] = {}
    for kind_name, objects in dump.items():
        kind = KINDS[kind_name]
        for ident, raw in objects.items():
            record, found = parse_record(kind, ident, raw)
            if found:
                problems[keys.object_key(kind_name, ident)] = found
            if record is not None:
                records[kind_name][ident] = record
    return records, problems


def check_references(records: Mapping[str, Mapping[str, Any]],
                     plan_hosts: Iterable[str] | None = None) -> list[Problem]:
    """Problems between valid records: missing profiles and exports, clashing addresses and
    names, overlapping subnets, and hosts whose boot mode their profile cannot serve (the boot
    plan of ``plan_hosts``, every host if None, is made as the services would)."""
    problems = []
    hosts, profiles = records["host"], records["profile"]
    exports, subnets = records["export"], records["subnet"]
    by_ip: dict[str, list[str]] = collections.defaultdict(list)
    by_name: dict[str, list[str]] = collections.defaultdict(list)
    # subnets and ranges as integers, once: 5,000 hosts are checked against them
    spans = [(int(s.network.network_address), int(s.network.broadcast_address),
              [(int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(b)), a, b)
               for a, b in s.ranges], s.name) for s in subnets.values()]
    for mac, host in sorted(hosts.items()):
        key = keys.object_key("host", mac)
        if host.profile and host.profile not in profiles:
            missing = keys.object_key("profile", host.profile)
            problems.append(Problem(key, "profile", host.profile,
                                    f"no such profile (key {missing})"))
        if host.hostname:
            by_name[host.hostname].append(mac)
        if host.ip:
            by_ip[host.ip].append(mac)
            address = int(ipaddress.IPv4Address(host.ip))
            if spans and not any(first <= address <= last for first, last, _, _ in spans):
                problems.append(Problem(key, "ip", host.ip, "not inside any subnet: DHCP "
                                        "serves no subnet this address is in",
                                        severity="warning"))
            for _first, _last, ranges, name in spans:
                for low, high, first, last in ranges:
                    if low <= address <= high:
                        problems.append(Problem(
                            key, "ip", host.ip,
                            f"inside the dynamic range {first}-{last} of subnet {name}: the "
                            "pool may hand it to another machine"))
                        break
    for what, index in (("fixed address", by_ip), ("host name", by_name)):
        for value, macs in sorted(index.items()):
            if len(macs) > 1:
                for mac in macs:
                    others = ", ".join(m for m in macs if m != mac)
                    problems.append(Problem(keys.object_key("host", mac),
                                            "ip" if what == "fixed address" else "hostname",
                                            value, f"same {what} as host {others}"))
    ordered = sorted(subnets.items())
    for i, (name, subnet) in enumerate(ordered):
        for other, other_subnet in ordered[:i] + ordered[i + 1:]:
            if subnet.network.overlaps(other_subnet.network):
                problems.append(Problem(keys.object_key("subnet", name), "network",
                                        str(subnet.network),
                                        f"overlaps subnet {other} ({other_subnet.network}): "
                                        "DHCP could not tell which one a client is in"))
    for name, profile in sorted(profiles.items()):
        key = keys.object_key("profile", name)
        if profile.export and profile.export not in exports:
            missing = keys.object_key("export", profile.export)
            problems.append(Problem(key, "export", profile.export,
                                    f"no such export (key {missing})"))
        if profile.image and profile.image not in records["image"]:
            missing = keys.object_key("image", profile.image)
            problems.append(Problem(key, "image", profile.image,
                                    f"no such image (key {missing}; bootyard image import)"))
        if profile.install in bootplan.INSTALL_CMDLINE and not profile.cmdline:
            problems.append(Problem(
                key, "cmdline", "", f"install={profile.install} but no cmdline: the installer "
                "is not told where its file is; for example "
                f"{bootplan.INSTALL_CMDLINE[profile.install]!r}", severity="warning"))
    for mac in sorted(set(records.get("discovered", {})) & set(hosts)):
        problems.append(Problem(keys.object_key("discovered", mac), "(key)", mac,
                                "this MAC is a host too (added without 'bootyard host adopt'): "
                                "remove the record with 'bootyard discovered rm'",
                                severity="warning"))
    for name, rule in sorted(records.get("discovery_rule", {}).items()):
        if rule.profile not in profiles:
            problems.append(Problem(keys.object_key("discovery_rule", name), "profile",
                                    rule.profile, "no such profile (key "
                                    f"{keys.object_key('profile', rule.profile)})"))
    for name, group in sorted(records.get("group", {}).items()):
        key = keys.object_key("group", name)
        if group.profile and group.profile not in profiles:
            problems.append(Problem(key, "profile", group.profile, "no such profile (key "
                                    f"{keys.object_key('profile', group.profile)})"))
        subnet = group.match.get("subnet")
        if subnet and subnet.lower() not in subnets:
            problems.append(Problem(key, "match.subnet", subnet, "no such subnet (key "
                                    f"{keys.object_key('subnet', subnet.lower())}): the group "
                                    "matches no host", severity="warning"))
    for mac, host in sorted(hosts.items()):
        if host.once_profile and host.once_profile not in profiles:
            problems.append(Problem(keys.object_key("host", mac), "once_profile",
                                    host.once_profile, "no such profile (key "
                                    f"{keys.object_key('profile', host.once_profile)})"))
    seen_targets: dict[tuple, str] = {}
    for name, export in sorted(exports.items()):
        target = (export.aoe_shelf, export.aoe_slot) if export.kind == "aoe" else (export.iqn,)
        if target in seen_targets:
            problems.append(Problem(keys.object_key("export", name),
                                    "aoe_shelf" if export.kind == "aoe" else "iqn",
                                    ".".join(map(str, target)),
                                    f"same target as export {seen_targets[target]}"))
        seen_targets[target] = name
    for mac in sorted(hosts) if plan_hosts is None else sorted(set(plan_hosts) & set(hosts)):
        problems += plan_problems(hosts[mac], records)
    return problems


def subnet_of(host, subnets: Mapping[str, Any]):
    if host.ip:
        for subnet in subnets.values():
            if _in(host.ip, subnet.network):
                return subnet
        return None
    # a pool host: any subnet may lease to it; the first stands for them
    return subnets[min(subnets)] if subnets else None


def plan_problems(host, records: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """What keeps ``host`` from booting in its boot mode: the boot plan (shared/bootplan.py)
    made as the services make it, its cmdline template rendered for this host. A disabled host
    is checked as if enabled (it will be)."""
    key = keys.object_key("host", host.mac)
    resolution = groups.resolve(host, records.get("group", {}).values(), records["subnet"])
    ties = [Problem(key, c.item, "", f"tie: {c}; the host gets it from neither: give one "
                    "group more selectors, change one, or set it on the host")
            for c in resolution.conflicts]
    host = resolution.host
    if host.boot_mode == "local":
        return ties
    if not host.profile:
        return ties + [Problem(key, "profile", "", f"boot_mode {host.boot_mode} needs a "
                               "profile: the host gets no boot configuration until it has "
                               "one (its own, or a group's)", severity="warning")]
    profile = records["profile"].get(host.profile)
    if profile is None:
        return ties  # "no such profile" says it
    if profile.image:
        profile = bootplan.with_image(profile, records["image"].get(profile.image))
    name = host.vars.get("export") or profile.export
    export = records["export"].get(name) if name else None
    facts = dataclasses.replace(CHECK_FACTS, subnet=subnet_of(host, records["subnet"]))
    enabled = host if host.enabled else dataclasses.replace(host, enabled=True)
    try:
        result = bootplan.plan(host.mac, enabled, profile, export, facts)
    except bootcmdline.TemplateFailed as exc:
        return ties + [Problem(key, "profile", host.profile,
                               f"cannot render for this host: {exc}")]
    if result.outcome == "error":
        return ties + [Problem(key, "boot_mode", host.boot_mode, f"cannot boot: {result.reason}")]
    return ties


def _in(ip: str, network) -> bool:
    return ipaddress.IPv4Address(ip) in network


def canonical_problems(dump: Dump) -> list[Problem]:
    """Warnings for values stored in a spelling bootyard would have normalised
    (``boot_mode Local``, ``ip " 198.18.5.24"``), written with redis-cli."""
    problems = []
    for kind_name, objects in dump.items():
        kind = KINDS[kind_name]
        for ident, raw in objects.items():
            fixed = normalise(kind, raw)
            for fname, value in raw.items():
                if fixed.get(fname) != value:
                    problems.append(Problem(
                        keys.object_key(kind_name, ident), fname, value,
                        f"not in canonical form: services read it as {fixed[fname]!r}, but "
                        "exports and redis-cli show it as typed; write it as that",
                        severity="warning"))
    return problems


def validate_dump(dump: Dump) -> list[Problem]:
    """Every problem in a whole inventory ``{kind: {id: hash}}``, sorted by key."""
    records, by_key = parse_dump(dump)
    problems = [p for found in by_key.values() for p in found]
    problems += check_references(records)
    problems += canonical_problems(dump)
    return sorted(problems, key=lambda p: (p.key, p.field))


def key_problems(types: Mapping[str, str]) -> list[Problem]:
    """Keys under ``bootyard:`` that match no key shape (a typo such as ``bootyard:hosts:...``,
    which every service ignores), or hold the wrong Redis type."""
    problems = []
    names = list(KINDS) + [s[0].split(":")[1] for s in keys.SHAPES]
    for key, found in sorted(types.items()):
        shape = keys.shape_of(key, KINDS)
        if shape is None:
            segment = key.split(":")[1] if key.count(":") >= 1 else key
            close = difflib.get_close_matches(segment, names, n=1, cutoff=0.8)
            if close and close[0] in KINDS:
                rest = key.split(":", 2)[2] if key.count(":") >= 2 else ""
                problems.append(Problem(key, "(key)", found, "matches no kind, so every "
                                        f"service ignores it: did you mean "
                                        f"{keys.object_key(close[0], rest)}?"))
            else:
                problems.append(Problem(key, "(key)", found, "matches no bootyard key shape "
                                        "(docs/inventory.md): every service ignores it",
                                        severity="warning"))
        elif shape[1] != found:
            problems.append(Problem(key, "(key)", found, f"is a Redis {found}, but "
                                    f"{shape[0]} is a {shape[1]}: every service ignores it; "
                                    "delete it or rename it"))
    return problems


async def validate(store: InventoryStore) -> list[Problem]:
    """validate_dump of what Redis holds, with the key checks."""
    types = await store.key_types()
    problems = validate_dump(await store.dump()) + key_problems(types)
    return sorted(problems, key=lambda p: (p.key, p.field))
