"""The inventory as a whole, and one object of it as the operator sees it.

What the ``bootyard`` CLI (``cli/commands.py``) and the HTTP admin API
(``services/http/adminapi.py``) both do: whole-inventory validation (each record, then the
references between them), the YAML export/import format, and showing, listing and changing one
object in its structured form::

    hosts:
      52:54:00:12:34:56:
        hostname: web1
        ip: 10.0.0.21
        profile: debian12
        tags: [rack1, web]
        vars: {disk: /dev/vda}
    profiles:
      debian12: {kernel: debian/linux, initrd: [debian/initrd.gz], install: preseed}
    subnets:
      lab: {network: 10.0.0.0/24, ranges: [10.0.0.100-10.0.0.199], router: 10.0.0.1}

Every scalar is the Redis hash field's text; list fields are YAML lists (commas in Redis);
``vars`` holds the ``var.<name>`` fields. import → export → import leaves Redis identical.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import yaml

from shared import keys
from shared.addresses import AddressError
from shared.schema import KIND_BY_PLURAL, KINDS, Problem, from_hash, parse_record, to_hash
from shared.store import InventoryError, InventoryStore


class ImportRefused(InventoryError):
    """A file that cannot be imported; ``problems`` lists every fault found."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def check_references(records: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """Problems between valid records: missing profiles and exports, clashing addresses."""
    problems = []
    hosts, profiles = records["host"], records["profile"]
    exports, subnets = records["export"], records["subnet"]
    by_ip: dict[str, list[str]] = collections.defaultdict(list)
    for mac, host in sorted(hosts.items()):
        key = keys.object_key("host", mac)
        if host.profile and host.profile not in profiles:
            missing = keys.object_key("profile", host.profile)
            problems.append(Problem(key, "profile", host.profile,
                                    f"no such profile (key {missing})"))
        if host.ip:
            by_ip[host.ip].append(mac)
            if subnets and not any(_in(host.ip, s.network) for s in subnets.values()):
                problems.append(Problem(key, "ip", host.ip, "not inside any subnet",
                                        severity="warning"))
            for subnet in subnets.values():
                if any(_in_range(host.ip, r) for r in subnet.ranges):
                    problems.append(Problem(
                        key, "ip", host.ip,
                        f"inside the dynamic range of subnet {subnet.name}: the pool may hand it "
                        "to another machine", severity="warning"))
        if host.boot_mode == "sanboot" and host.profile in profiles and \
                not profiles[host.profile].export:
            problems.append(Problem(key, "boot_mode", "sanboot",
                                    f"profile {host.profile} names no export to sanboot from"))
    for ip, macs in sorted(by_ip.items()):
        if len(macs) > 1:
            for mac in macs:
                others = ", ".join(m for m in macs if m != mac)
                problems.append(Problem(keys.object_key("host", mac), "ip", ip,
                                        f"same fixed address as host {others}"))
    for name, profile in sorted(profiles.items()):
        if profile.export and profile.export not in exports:
            missing = keys.object_key("export", profile.export)
            problems.append(Problem(keys.object_key("profile", name), "export", profile.export,
                                    f"no such export (key {missing})"))
    seen_targets: dict[tuple, str] = {}
    for name, export in sorted(exports.items()):
        target = (export.aoe_shelf, export.aoe_slot) if export.kind == "aoe" else (export.iqn,)
        if target in seen_targets:
            problems.append(Problem(keys.object_key("export", name),
                                    "aoe_shelf" if export.kind == "aoe" else "iqn",
                                    ".".join(map(str, target)),
                                    f"same target as export {seen_targets[target]}"))
        seen_targets[target] = name
    return problems


def _in(ip: str, network) -> bool:
    import ipaddress
    return ipaddress.IPv4Address(ip) in network


def _in_range(ip: str, rng: tuple[str, str]) -> bool:
    import ipaddress
    address = ipaddress.IPv4Address(ip)
    return ipaddress.IPv4Address(rng[0]) <= address <= ipaddress.IPv4Address(rng[1])


def validate_dump(dump: Mapping[str, Mapping[str, Mapping[str, str]]]) -> list[Problem]:
    """Every problem in a whole inventory ``{kind: {id: hash}}``, sorted by key."""
    problems: list[Problem] = []
    records: dict[str, dict[str, Any]] = {name: {} for name in KINDS}
    for kind_name, objects in dump.items():
        kind = KINDS[kind_name]
        for ident, raw in objects.items():
            record, found = parse_record(kind, ident, raw)
            problems += found
            if record is not None:
                records[kind_name][ident] = record
    problems += check_references(records)
    return sorted(problems, key=lambda p: (p.key, p.field))


async def validate(store: InventoryStore) -> list[Problem]:
    return validate_dump(await store.dump())


def dump_to_yaml(dump: Mapping[str, Mapping[str, Mapping[str, str]]]) -> str:
    document = {}
    for kind_name, kind in KINDS.items():
        objects = dump.get(kind_name) or {}
        if objects:
            document[kind.plural] = {ident: from_hash(kind, objects[ident])
                                     for ident in sorted(objects)}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                          allow_unicode=True) if document else "{}\n"


async def export_yaml(store: InventoryStore) -> str:
    return dump_to_yaml(await store.dump())


def yaml_to_dump(text: str, source: str = "file") -> dict[str, dict[str, dict[str, str]]]:
    """Parse an export file into ``{kind: {id: hash}}``, validating everything in it.

    Raises ImportRefused listing every record that fails validation.
    """
    try:
        # BaseLoader keeps every scalar as text, so "yes" and "0800" stay exactly as written.
        document = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise ImportRefused(f"{source}: not valid YAML: {exc}") from None
    if document in (None, ""):
        document = {}
    if not isinstance(document, dict):
        raise ImportRefused(f"{source}: the top level must map hosts/profiles/subnets/... to objects")
    dump: dict[str, dict[str, dict[str, str]]] = {name: {} for name in KINDS}
    problems: list[Problem] = []
    for plural, objects in document.items():
        kind = KIND_BY_PLURAL.get(plural)
        if kind is None:
            raise ImportRefused(f"{source}: unknown section {plural!r} "
                               f"(known: {', '.join(KIND_BY_PLURAL)})")
        if objects in (None, ""):
            continue
        if not isinstance(objects, dict):
            raise ImportRefused(f"{source}: {plural} must map ids to objects")
        for ident, body in objects.items():
            try:
                canonical = kind.canonical_id(str(ident))
            except AddressError as exc:
                problems.append(Problem(f"{plural}.{ident}", "(id)", str(ident), str(exc)))
                continue
            if not isinstance(body, dict):
                problems.append(Problem(kind.key(canonical), "(object)", str(body),
                                        "expected a mapping of fields"))
                continue
            fields = {}
            for fname, value in body.items():
                if fname == "vars" and kind.has_vars:
                    if not isinstance(value, dict):
                        problems.append(Problem(kind.key(canonical), "vars", str(value),
                                                "vars must be a mapping"))
                        continue
                    fields["vars"] = {str(k): str(v) for k, v in value.items()}
                elif isinstance(value, list):
                    fields[fname] = [str(v) for v in value]
                elif isinstance(value, dict):
                    problems.append(Problem(kind.key(canonical), fname, str(value),
                                            "expected text or a list"))
                else:
                    fields[fname] = str(value)
            raw = {k: v for k, v in to_hash(kind, fields).items() if v != ""}
            if canonical in dump[kind.name]:
                problems.append(Problem(kind.key(canonical), "(id)", str(ident),
                                        "appears twice in the file (different spellings?)"))
            dump[kind.name][canonical] = raw
    for kind_name, objects in dump.items():
        for ident, raw in objects.items():
            problems += [p for p in parse_record(KINDS[kind_name], ident, raw)[1]
                         if p.severity == "error"]
    if problems:
        raise ImportRefused(f"{source}: {len(problems)} problem(s); nothing was imported",
                           problems)
    return dump


async def import_yaml(store: InventoryStore, text: str, *, replace: bool,
                      source: str = "file") -> dict[str, int]:
    """Load an export file; references are checked against what Redis will hold afterwards."""
    dump = yaml_to_dump(text, source)
    merged = {name: dict(objects) for name, objects in dump.items()}
    if not replace:
        for name, objects in (await store.dump()).items():
            for ident, raw in objects.items():
                merged[name].setdefault(ident, raw)
    in_file = {KINDS[name].key(ident) for name, objects in dump.items() for ident in objects}
    errors = [p for p in validate_dump(merged) if p.severity == "error" and p.key in in_file]
    if errors:
        raise ImportRefused(f"{source}: {len(errors)} problem(s); nothing was imported", errors)
    return await store.load(dump, replace=replace)


# ---------------------------------------------------------------- object operations (CLI and API)

def object_json(kind, ident: str, raw: Mapping[str, str], record: Any,
                problems: list[Problem]) -> dict[str, Any]:
    """One object as the CLI's ``show --json`` and the API print it."""
    import dataclasses

    return {"key": kind.key(ident), "id": ident, "fields": from_hash(kind, raw),
            "valid": record is not None, "problems": [dataclasses.asdict(p) for p in problems]}


async def show(store: InventoryStore, kind, ident: str) -> dict[str, Any]:
    """One object, its fields and problems; raises NotFound."""
    record, problems = await store.get(kind, ident)
    canonical = kind.canonical_id(ident)
    raw = await store.raw(kind, canonical)
    return object_json(kind, canonical, raw, record, problems)


async def list_objects(store: InventoryStore, kind, tag: str | None = None
                       ) -> dict[str, dict[str, str]]:
    """{id: hash} of every object of ``kind`` (hosts optionally only those with ``tag``)."""
    objects = await store.raw_all(kind)
    if tag:
        objects = {i: r for i, r in objects.items()
                   if tag in [t.strip() for t in r.get("tags", "").split(",")]}
    return dict(sorted(objects.items()))


def changes_from_fields(kind, fields: Mapping[str, Any]) -> dict[str, str]:
    """Hash changes from structured fields (the YAML/JSON form: lists, ``vars`` mapping; None
    or "" removes a field). Unknown field names raise InventoryError naming the known ones."""
    if not isinstance(fields, Mapping):
        raise InventoryError("expected an object of fields")
    changes: dict[str, Any] = {}
    for fname, value in fields.items():
        if fname == "vars" and kind.has_vars:
            if not isinstance(value, Mapping):
                raise InventoryError("vars must be an object of name: value")
            changes["vars"] = {str(k): "" if v is None else v for k, v in value.items()}
        elif fname in kind.fields:
            if isinstance(value, Mapping):
                raise InventoryError(f"{fname}: expected text or a list")
            changes[fname] = "" if value is None else value
        else:
            raise InventoryError(f"{kind.name} has no field {fname!r} "
                                 f"(fields: {', '.join(kind.fields)}"
                                 f"{', vars' if kind.has_vars else ''})")
    return to_hash(kind, changes)
