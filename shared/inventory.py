"""The inventory's one write path, and the checks every write runs.

What the ``bootyard`` CLI (``cli/commands.py``), the HTTP admin API
(``services/http/adminapi.py``) and import all call to change the inventory: :func:`commit`
(normalise, check each changed record, the references between records and the boot plans the
change affects, then write in one transaction), and on it adding, setting, replacing and
deleting objects (:func:`write_object`, :func:`write_many`, :func:`delete_objects`, with If-Match
:func:`etag` s) and loading a file (:func:`import_dump`, :func:`import_yaml`). The file format
is shared/inventory_file.py's; showing and listing objects, shared/inventory_view.py's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from shared import bootplan, keys
from shared.checks import Dump, Records, check_references, parse_dump
from shared.fields import Problem
from shared.hashform import normalise
from shared.inventory_file import ImportRefused, yaml_to_dump
from shared.schema import KINDS
from shared.secrets import keep_secrets
from shared.store import (
    InventoryError,
    InventoryStore,
    NotFound,
    PreconditionFailed,
    RecordInvalid,
    check_mode,
)
from shared.validation import parse_record

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
    check_mode(kind, canonical, current, mode)
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
