"""One inventory object, and lists of them, as the operator sees them (reads for the CLI and the
admin API).

``show`` (one object: its fields in the structured form, its problems, its ETag),
:func:`select` and :func:`list_objects` (the objects named, or picked by tag, profile, subnet or
group), the JSON both print (:func:`object_json`, :func:`list_json`, secrets masked),
:func:`effective` (the fields with their defaults), :func:`explain_host` (a host's effective
values and their sources), and :func:`changes_from_fields` (an edit in the structured form as
hash changes, for shared/inventory.py to write).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from shared.checks import parse_dump
from shared.fields import Problem
from shared.hashform import from_hash, normalise, to_hash
from shared.inventory import etag
from shared.schema import KINDS
from shared.secrets import mask
from shared.store import InventoryError, InventoryStore, NotFound, RecordInvalid
from shared.validation import parse_record


def object_json(kind, ident: str, raw: Mapping[str, str], record: Any,
                problems: list[Problem], secrets: bool = False) -> dict[str, Any]:
    """One object as the CLI's ``show --json`` and the API print it (secrets masked unless
    ``secrets``)."""
    import dataclasses

    return {"key": kind.key(ident), "id": ident,
            "fields": from_hash(kind, raw if secrets else mask(kind, raw)),
            "valid": record is not None, "problems": [dataclasses.asdict(p) for p in problems],
            "etag": etag(raw)}


async def show(store: InventoryStore, kind, ident: str, secrets: bool = False
               ) -> dict[str, Any]:
    """One object, its fields and problems; raises NotFound."""
    canonical = kind.canonical_id(ident)
    raw = await store.raw(kind, canonical)
    if not raw:
        raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)})")
    record, problems = parse_record(kind, canonical, raw)
    return object_json(kind, canonical, raw, record, problems, secrets)


async def select(store: InventoryStore, kind, ids: Iterable[str] = (), *,
                 tag: str | None = None, profile: str | None = None,
                 subnet: str | None = None, objects: Mapping[str, Mapping[str, str]] | None = None,
                 group: str | None = None) -> list[str]:
    """The ids of the objects named (``ids``: any spelling; each must exist) and, for hosts,
    of those with ``tag``, of ``profile``, with a fixed address in ``subnet``, or matched by
    ``group`` (its selectors, shared/groups.py). Without any of them: every object of the
    kind. ``objects``: the kind's hashes, if already read."""
    if objects is None:
        objects = await store.raw_all(kind)
    chosen = set()
    for ident in ids:
        canonical = kind.canonical_id(ident)
        if canonical not in objects:
            raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)})")
        chosen.add(canonical)
    in_group = await _matched_by(store, group, objects) if group else None
    selectors = tag or profile or subnet or group
    if selectors:
        network = None
        if subnet:
            raw = await store.raw(KINDS["subnet"], subnet)
            record, _ = parse_record(KINDS["subnet"], KINDS["subnet"].canonical_id(subnet), raw)
            if record is None:
                raise NotFound(f"no usable subnet {subnet} (key {KINDS['subnet'].key(subnet)})")
            network = record.network
        for ident, raw in objects.items():
            if in_group is not None and ident not in in_group:
                continue
            fields = normalise(kind, raw)
            if tag and tag not in fields.get("tags", "").split(","):
                continue
            if profile and fields.get("profile") != profile.strip().lower():
                continue
            if network is not None:
                try:
                    if ipaddress.IPv4Address(fields.get("ip", "")) not in network:
                        continue
                except ValueError:
                    continue
            chosen.add(ident)
    elif not ids:
        chosen = set(objects)
    return sorted(chosen)


async def _matched_by(store: InventoryStore, name: str, hosts: Mapping[str, Mapping[str, str]]
                      ) -> set[str]:
    """The hosts group ``name`` matches (its selectors; the group must exist and be valid)."""
    from shared.groups import matches

    kind = KINDS["group"]
    canonical = kind.canonical_id(name)
    raw = await store.raw(kind, canonical)
    group = parse_record(kind, canonical, raw)[0] if raw else None
    if group is None:
        raise NotFound(f"no usable group {canonical} (key {kind.key(canonical)})")
    subnets = {}
    for ident, raw in (await store.raw_all(KINDS["subnet"])).items():
        record = parse_record(KINDS["subnet"], ident, raw)[0]
        if record is not None:
            subnets[ident] = record
    found = set()
    for mac, raw in hosts.items():
        host = parse_record(KINDS["host"], mac, raw)[0]
        if host is not None and matches(group, host, subnets):
            found.add(mac)
    return found


async def list_objects(store: InventoryStore, kind, tag: str | None = None, *,
                       ids: Iterable[str] = (), profile: str | None = None,
                       subnet: str | None = None, skipped: list[Problem] | None = None,
                       group: str | None = None) -> dict[str, dict[str, str]]:
    """{id: hash} of the objects :func:`select` picks, sorted by id; keys of the wrong Redis
    type are left out and named in ``skipped``."""
    objects = await store.raw_all(kind, skipped)
    chosen = await select(store, kind, ids, tag=tag, profile=profile, subnet=subnet,
                          objects=objects, group=group)
    return {i: objects[i] for i in chosen}


def list_json(kind, objects: Mapping[str, Mapping[str, str]], secrets: bool = False
              ) -> dict[str, dict[str, Any]]:
    """A list of objects as the CLI's ``list --json`` and the API's ``GET /api/v1/<kind>``
    print it: ``{id: fields}`` in the export form (secrets masked unless ``secrets``)."""
    return {ident: from_hash(kind, raw if secrets else mask(kind, raw))
            for ident, raw in objects.items()}


def effective(kind, raw: Mapping[str, str]) -> dict[str, str]:
    """The fields as the services use them, for ``list``: unset fields with a default show it
    (a host's ``boot_mode install``, ``enabled yes``); yes/no values as yes/no."""
    out = dict(raw)
    for field in dataclasses.fields(kind.record):
        if field.name in out or field.name not in kind.fields:
            continue
        default = field.default
        if isinstance(default, bool):
            out[field.name] = "yes" if default else "no"
        elif default not in (None, "", dataclasses.MISSING) and not isinstance(default, tuple):
            out[field.name] = str(default)
    for fname, value in raw.items():
        spec = kind.fields.get(fname)
        if spec is not None and spec.parse.__name__ == "_bool":
            try:
                out[fname] = "yes" if spec.parse(value) else "no"
            except ValueError:
                pass
    return out


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
        elif any(f.attr == fname for f in kind.families):
            if not isinstance(value, Mapping):
                raise InventoryError(f"{fname} must be an object of name: value")
            changes[fname] = {str(k): "" if v is None else v for k, v in value.items()}
        elif fname in kind.fields:
            if isinstance(value, Mapping):
                raise InventoryError(f"{fname}: expected text or a list")
            changes[fname] = "" if value is None else value
        else:
            raise InventoryError(f"{kind.name} has no field {fname!r} "
                                 f"(fields: {', '.join(kind.fields)}"
                                 f"{', vars' if kind.has_vars else ''}"
                                 + "".join(f", {f.attr}" for f in kind.families) + ")")
    return to_hash(kind, changes)


async def explain_host(store: InventoryStore, ident: str) -> dict[str, Any]:
    """A host's effective values and their sources (shared/effective.py); raises NotFound."""
    from shared import effective

    kind = KINDS["host"]
    canonical = kind.canonical_id(ident)
    dump = await store.dump()
    raw = dump["host"].get(canonical)
    if not raw:
        raise NotFound(f"no host {canonical} (key {kind.key(canonical)})")
    records, problems = parse_dump(dump)
    host = records["host"].get(canonical)
    if host is None:
        found = problems.get(kind.key(canonical), [])
        raise RecordInvalid(found or [Problem(kind.key(canonical), "(all)", "", "invalid")])
    return effective.explain(host, records, raw)
