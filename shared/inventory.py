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

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from shared import bootplan, keys
from shared.addresses import AddressError
from shared.checks import Dump, Records, check_references, parse_dump
from shared.fields import Problem
from shared.hashform import from_hash, normalise, to_hash
from shared.schema import KIND_BY_PLURAL, KINDS
from shared.secrets import keep_secrets, mask
from shared.store import (
    AlreadyExists,
    InventoryError,
    InventoryStore,
    NotFound,
    PreconditionFailed,
    RecordInvalid,
)
from shared.validation import parse_record


class ImportRefused(InventoryError):
    """A file that cannot be imported; ``problems`` lists every fault found."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def dump_to_yaml(dump: Mapping[str, Mapping[str, Mapping[str, str]]],
                 secrets: bool = False) -> str:
    """The export file; secret fields (``power_secret``, the iSCSI CHAP secrets) as ``********`` unless ``secrets``
    (import keeps an object's secret when the file has the mask)."""
    document = {}
    for kind_name, kind in KINDS.items():
        objects = dump.get(kind_name) or {}
        if objects:
            document[kind.plural] = {
                ident: from_hash(kind, objects[ident] if secrets else mask(kind, objects[ident]))
                for ident in sorted(objects)}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                          allow_unicode=True) if document else "{}\n"


async def export_yaml(store: InventoryStore, secrets: bool = False) -> str:
    return dump_to_yaml(await store.dump(), secrets)


def yaml_to_dump(text: str, source: str = "file") -> dict[str, dict[str, dict[str, str]]]:
    """Parse an export file into ``{kind: {id: hash}}``, validating everything in it.

    Raises ImportRefused listing every record that fails validation.
    """
    try:
        # BaseLoader keeps every scalar as text, so "yes" and "0800" stay exactly as written.
        document = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise ImportRefused(f"{source}: not valid YAML: {exc}") from None
    return document_to_dump(document, source)


def csv_to_dump(text: str, kind_name: str, source: str = "file"
                ) -> dict[str, dict[str, dict[str, str]]]:
    """Parse a CSV file of one kind into ``{kind: {id: hash}}``, validating it as
    :func:`yaml_to_dump` does. The header names the columns: the id (``mac`` for hosts,
    ``name`` otherwise, or ``id``), then fields; ``var.<name>`` columns are template variables;
    a list field's cell is comma separated (quoted); an empty cell leaves the field unset::

        mac,hostname,ip,profile,tags,var.disk
        52:54:00:12:34:56,web1,198.18.5.21,debian12,"rack1,web",/dev/vda
    """
    import csv
    import io

    kind = KINDS[kind_name]
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return {name: {} for name in KINDS}
    header = [h.strip() for h in rows[0]]
    id_columns = [i for i, h in enumerate(header) if h in (kind.id_field, "id")]
    if len(id_columns) != 1:
        raise ImportRefused(f"{source}: the CSV header must have one id column "
                            f"({kind.id_field!r} or 'id'); it has {', '.join(header)}")
    objects: dict[str, dict[str, Any]] = {}
    problems = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            problems.append(Problem(f"{source}:{line}", "(row)", ",".join(row),
                                    f"{len(row)} cells for {len(header)} columns"))
            continue
        ident = row[id_columns[0]].strip()
        body: dict[str, Any] = {}
        for name, cell in zip(header, row):
            if name in (kind.id_field, "id") or cell.strip() == "":
                continue
            if name.startswith("var.") and kind.has_vars:
                body.setdefault("vars", {})[name[4:]] = cell
            else:
                body[name] = cell
        if ident in objects:
            problems.append(Problem(f"{source}:{line}", "(id)", ident, "appears twice"))
        objects[ident] = body
    if problems:
        raise ImportRefused(f"{source}: {len(problems)} problem(s); nothing was imported",
                            problems)
    return document_to_dump({kind.plural: objects}, source)


def document_to_dump(document: Any, source: str = "file"
                     ) -> dict[str, dict[str, dict[str, str]]]:
    """``{plural: {id: fields}}`` (the export form) into ``{kind: {id: hash}}``, validated."""
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
                elif isinstance(value, dict) and any(f.attr == fname for f in kind.families):
                    fields[fname] = {str(k): str(v) for k, v in value.items()}
                elif isinstance(value, list):
                    fields[fname] = [str(v) for v in value]
                elif isinstance(value, dict):
                    problems.append(Problem(kind.key(canonical), fname, str(value),
                                            "expected text or a list"))
                else:
                    fields[fname] = str(value)
            raw = {k: v for k, v in normalise(kind, to_hash(kind, fields)).items() if v != ""}
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


# ---------------------------------------------------------------- writes (CLI, API, import)

Change = Mapping[tuple[str, str], Mapping[str, str] | None]  # (kind, id) -> whole hash or None


@dataclasses.dataclass
class Written:
    """What a write did (or, with dry_run, would do): each key's hash before and after
    (``{}`` absent: added; None after: deleted), and the warnings it was written with."""

    before: dict[str, dict[str, str]]
    after: dict[str, dict[str, str] | None]
    warnings: list[Problem]
    notes: list[str] = dataclasses.field(default_factory=list)
    dry_run: bool = False

    def diff(self) -> dict[str, list[str]]:
        """Keys added, changed and deleted."""
        out: dict[str, list[str]] = {"added": [], "changed": [], "deleted": []}
        for key in sorted(self.after):
            after = self.after[key]
            if after is None:
                out["deleted"].append(key)
            elif not self.before.get(key):
                out["added"].append(key)
            else:
                out["changed"].append(key)
        return out


def _affected_hosts(records: Records, changed: Iterable[tuple[str, str]]) -> set[str]:
    """Hosts whose boot plan a change of these objects can change."""
    hosts: set[str] = set()
    for kind_name, ident in changed:
        if kind_name == "host":
            hosts.add(ident)
        elif kind_name in ("subnet", "group"):
            return set(records["host"])
        elif kind_name == "profile":
            hosts |= {m for m, h in records["host"].items() if h.profile == ident}
        elif kind_name == "image":
            names = {n for n, p in records["profile"].items() if p.image == ident}
            hosts |= {m for m, h in records["host"].items() if h.profile in names}
        elif kind_name == "export":
            names = {n for n, p in records["profile"].items() if p.export == ident}
            hosts |= {m for m, h in records["host"].items()
                      if h.vars.get("export") == ident or h.profile in names}
    return hosts


def check_changes(dump: Dump, changes: Change, checked: Iterable[tuple[str, str]] = ()
                  ) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) a write of ``changes`` to the inventory ``dump`` would bring: every
    problem of a changed (or ``checked``) object, and the new ones of the others (a host left
    without its profile by a delete, a second host with the same address)."""
    records, _ = parse_dump(dump)
    after = {name: dict(objs) for name, objs in records.items()}
    own: list[Problem] = []
    for (kind_name, ident), raw in changes.items():
        if raw is None:
            after[kind_name].pop(ident, None)
            continue
        record, found = parse_record(KINDS[kind_name], ident, raw)
        own += found
        if record is None:
            after[kind_name].pop(ident, None)
        else:
            after[kind_name][ident] = record
    touched = set(changes) | set(checked)
    written = {keys.object_key(k, i) for k, i in touched}
    plan_hosts = _affected_hosts(records, touched) | _affected_hosts(after, touched)
    before = {(p.key, p.field, p.reason) for p in check_references(records, plan_hosts)}
    for (kind_name, ident) in set(checked) - set(changes):
        own += parse_record(KINDS[kind_name], ident, dump[kind_name][ident])[1]
    found = own + [p for p in check_references(after, plan_hosts)
                   if p.key in written or (p.key, p.field, p.reason) not in before]
    return ([p for p in found if p.severity == "error"],
            [p for p in found if p.severity != "error"])


async def commit(store: InventoryStore, compute, *, watch: Iterable[str] = (),
                 force: bool = False, dry_run: bool = False, checked=None,
                 record=None) -> Written:
    """The one write path of the CLI, the admin API and import: ``compute(dump)`` says what to
    write (``{(kind, id): whole hash or None to delete}``); every record and reference check
    runs on the result (:func:`check_changes`); errors refuse the write
    (:class:`RecordInvalid`, nothing written) unless ``force`` (then they are warnings);
    the write is one transaction, computed again if a watched key changes meanwhile.
    ``record(written, pipe)`` queues more commands into the transaction (the audit trail)."""
    result: Written | None = None

    async def build():
        nonlocal result
        dump = await store.dump()
        changes, notes = compute(dump)
        changes = {k: v for k, v in changes.items()
                   if v is None or dump[k[0]].get(k[1]) != dict(v)}
        errors, warnings = check_changes(dump, changes, checked(dump) if checked else ())
        if errors and not force:
            raise RecordInvalid(errors + warnings)
        result = Written({KINDS[k].key(i): dict(dump[k].get(i, {})) for k, i in changes},
                         {KINDS[k].key(i): (None if v is None else dict(v))
                          for (k, i), v in changes.items()},
                         errors + warnings, notes, dry_run)
        return result.after

    if dry_run:
        await build()
    else:
        await store.atomically(list(watch), build,
                               None if record is None else lambda pipe: record(result, pipe))
    assert result is not None
    return result


def etag(raw: Mapping[str, str]) -> str:
    """An object's entity tag (the admin API's ETag): a digest of its whole hash, quoted."""
    import hashlib
    import json

    # over the hash with its secrets masked: a digest of a weak password could be guessed
    from shared.secrets import SECRET_MASK
    hidden = {f for kind in KINDS.values() for f, spec in kind.fields.items() if spec.secret}
    shown = {k: (SECRET_MASK if k in hidden and v else v) for k, v in raw.items()}
    digest = hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()
    return f'"{digest[:32]}"'


def _check_match(kind, canonical: str, current: Mapping[str, str], if_match: str | None) -> None:
    """If-Match: refuse (PreconditionFailed) unless the object is as the editor last saw it."""
    if if_match is None:
        return
    tags = {t.strip() for t in if_match.split(",")}
    if "*" in tags and current:
        return
    if not current or etag(current) not in tags:
        raise PreconditionFailed(
            f"{kind.name} {canonical} changed since it was read (If-Match {if_match} does not "
            f"match {etag(current) if current else 'a missing object'}): read it again and "
            "redo the change")


def _merged(kind, canonical: str, current: Mapping[str, str], changes: Mapping[str, str],
            mode: str) -> tuple[dict[str, str], list[str]]:
    key = kind.key(canonical)
    if mode == "add" and current:
        raise AlreadyExists(f"{kind.name} {canonical} already exists; use "
                            f"'bootyard {kind.name} set' to change it")
    if mode == "set" and not current:
        raise NotFound(f"no {kind.name} {canonical} (key {key}); use "
                       f"'bootyard {kind.name} add' to create it")
    merged = {} if mode == "replace" else dict(current)
    merged.update(keep_secrets(kind, current, changes))
    merged = {f: v for f, v in merged.items() if v != ""}
    notes = []
    if kind.name == "profile":
        install = merged.get("install", "")
        default = bootplan.INSTALL_CMDLINE.get(install)
        cmdline = merged.get("cmdline")
        if default and "cmdline" not in changes and (
                cmdline is None or cmdline in bootplan.INSTALL_CMDLINE.values()):
            if cmdline != default:
                merged["cmdline"] = default
                notes.append(f"cmdline set to {default!r}: what install={install} needs "
                             "(give --cmdline to choose another)")
    if not merged:
        raise RecordInvalid([Problem(
            key, "(all)", "", "a Redis hash cannot be empty: give at least one field (for a "
            "host, e.g. --enabled yes)")])
    return merged, notes


async def write_object(store: InventoryStore, kind, ident: str, changes: Mapping[str, str], *,
                       mode: str, force: bool = False, dry_run: bool = False,
                       record=None, if_match: str | None = None) -> Written:
    """Create (``mode='add'``), update (``'set'``) or overwrite (``'replace'``) one object:
    values normalised (:func:`shared.hashform.normalise`); a profile with an ``install`` kind and
    no ``cmdline`` gets the installer's (``bootplan.INSTALL_CMDLINE``); checked as
    :func:`commit` checks."""
    return await write_many(store, kind, [ident], changes, mode=mode, force=force,
                            dry_run=dry_run, record=record, if_match=if_match)


async def write_many(store: InventoryStore, kind, idents: Iterable[str],
                     changes: Mapping[str, str], *, mode: str, force: bool = False,
                     dry_run: bool = False, record=None, if_match: str | None = None
                     ) -> Written:
    """The same change to several objects of one kind, in one transaction. ``if_match``: the
    ETag the editor read (:func:`etag`); a changed object is refused (PreconditionFailed)."""
    canonical = sorted({kind.canonical_id(i) for i in idents})
    changes = normalise(kind, changes)

    def compute(dump):
        out, notes = {}, []
        for ident in canonical:
            current = dump[kind.name].get(ident, {})
            _check_match(kind, ident, current, if_match)
            merged, found = _merged(kind, ident, current, changes, mode)
            out[(kind.name, ident)] = merged
            notes += found
        return out, notes

    return await commit(store, compute, watch=[kind.key(i) for i in canonical], force=force,
                        dry_run=dry_run, record=record)


async def delete_objects(store: InventoryStore, kind, idents: Iterable[str], *,
                         force: bool = False, dry_run: bool = False, record=None,
                         if_match: str | None = None) -> Written:
    """Delete objects; refused if that leaves a reference dangling (a host's profile), unless
    ``force``."""
    canonical = sorted({kind.canonical_id(i) for i in idents})

    def compute(dump):
        for ident in canonical:
            if ident not in dump[kind.name]:
                raise NotFound(f"no {kind.name} {ident} (key {kind.key(ident)})")
            _check_match(kind, ident, dump[kind.name][ident], if_match)
        return {(kind.name, i): None for i in canonical}, []

    return await commit(store, compute, watch=[kind.key(i) for i in canonical], force=force,
                        dry_run=dry_run, record=record)


class ConfirmationNeeded(InventoryError):
    """An import that would delete objects, without the operator's yes."""

    def __init__(self, message: str, written: Written) -> None:
        super().__init__(message)
        self.written = written


async def import_dump(store: InventoryStore, dump: Dump, *, replace: bool, yes: bool = False,
                      dry_run: bool = False, source: str = "file", record=None) -> Written:
    """Load ``{kind: {id: hash}}`` (each object written whole); with ``replace``, delete every
    object not in it, which needs ``yes``. Every object of the file is checked, and references
    against what Redis will hold afterwards; nothing is written if anything is wrong."""
    in_file = [(k, i) for k, objs in dump.items() for i in objs]

    def compute(current):
        out: dict[tuple[str, str], Any] = {
            (k, i): keep_secrets(KINDS[k], current[k].get(i, {}), dump[k][i]) for k, i in in_file}
        if replace:
            for kind_name, objects in current.items():
                for ident in objects:
                    if ident not in dump.get(kind_name, {}):
                        out[(kind_name, ident)] = None
        return out, []

    def checked(current):
        return [(k, i) for k, i in in_file if i in current[k]]

    try:
        preview = await commit(store, compute, checked=checked, dry_run=True)
    except RecordInvalid as exc:
        raise ImportRefused(f"{source}: {len(exc.problems)} problem(s); nothing was imported",
                            exc.problems) from None
    deleted = preview.diff()["deleted"]
    if dry_run:
        return preview
    if deleted and not yes:
        raise ConfirmationNeeded(
            f"{source}: --replace would delete {len(deleted)} object(s) that are not in the "
            "file; nothing was written (give --yes to delete them, --dry-run to see the list)",
            preview)
    try:
        return await commit(store, compute, checked=checked, record=record,
                            watch=[KINDS[k].key(i) for k, i in in_file])
    except RecordInvalid as exc:
        raise ImportRefused(f"{source}: {len(exc.problems)} problem(s); nothing was imported",
                            exc.problems) from None


async def import_yaml(store: InventoryStore, text: str, *, replace: bool, yes: bool = False,
                      dry_run: bool = False, source: str = "file", record=None) -> Written:
    """Load an export file (:func:`import_dump`)."""
    return await import_dump(store, yaml_to_dump(text, source), replace=replace, yes=yes,
                             dry_run=dry_run, source=source, record=record)


# ---------------------------------------------------------------- object operations (CLI and API)

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
