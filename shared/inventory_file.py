"""The inventory's file format: the YAML export and import file, and CSV import of one kind.

What the ``bootyard`` CLI (``cli/commands.py``) and the HTTP admin API
(``services/http/adminapi.py``) both read and write: every object in its structured form::

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

A file is validated whole when it is read (each record, :class:`ImportRefused` listing every
fault); shared/inventory.py writes it (``import_dump``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from shared.addresses import AddressError
from shared.fields import Problem
from shared.hashform import from_hash, normalise, to_hash
from shared.schema import KIND_BY_PLURAL, KINDS
from shared.secrets import mask
from shared.store import InventoryError, InventoryStore
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

