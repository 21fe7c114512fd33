"""An inventory record's text forms (pure: no Redis here): the Redis hash in its canonical
spelling (:func:`normalise`), the hash from structured values (:func:`to_hash`) and the structured
(YAML/JSON) form of a hash (:func:`from_hash`): lists for list fields, ``vars`` and the field
families (``options``, ``match``) as mappings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from shared.fields import FieldError, _bool, _checksums, _name, _split
from shared.hardware import dumps as hardware_dumps
from shared.schema import VAR_PREFIX, Family, Kind


def normalise(kind: Kind, raw: Mapping[str, str]) -> dict[str, str]:
    """``raw`` with each field's value in its canonical text where that is safe: surrounding
    spaces removed, enumerations, yes/no values, host names and names in lower case, addresses
    and lists in their canonical spelling (``boot_mode Local`` -> ``local``,
    ``ip " 198.18.5.24"`` -> ``198.18.5.24``). A value its field refuses is left as it is (the
    write then fails naming it); template variables are left as they are."""
    out: dict[str, str] = {}
    for fname, value in raw.items():
        spec = kind.fields.get(fname)
        if spec is None or not isinstance(value, str) or spec.secret:
            out[fname] = value  # a secret is kept exactly as given (spaces may be part of it)
            continue
        text = value.strip()
        if spec.parse is _name or spec.parse is _bool:
            text = text.lower()
        try:
            parsed = spec.parse(text) if text else ""
        except FieldError:
            out[fname] = value
            continue
        if spec.parse is _checksums and parsed:
            out[fname] = ",".join(f"{path}={digest}" for path, digest in parsed)
            continue
        out[fname] = _canonical_text(parsed, text)
    return out


def _canonical_text(parsed: Any, text: str) -> str:
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, Mapping):
        return hardware_dumps(parsed)
    if isinstance(parsed, ipaddress.IPv4Network):
        return str(parsed)
    if isinstance(parsed, tuple):
        return ",".join(f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p) for p in parsed)
    return text  # yes/no and numbers: as written, without the spaces


def to_hash(kind: Kind, fields: Mapping[str, Any]) -> dict[str, str]:
    """Hash fields (strings) from user values: lists are joined with commas, vars prefixed."""
    out: dict[str, str] = {}
    for fname, value in fields.items():
        if fname == "vars":
            for var, text in (value or {}).items():
                out[f"{VAR_PREFIX}{var}"] = _scalar(text)
        elif isinstance(value, Mapping) and fname in _sections(kind):
            for name, text in value.items():
                out[f"{_sections(kind)[fname].prefix}{name}"] = _scalar(text)
        elif isinstance(value, (list, tuple)):
            out[fname] = ",".join(_scalar(v) for v in value)
        else:
            out[fname] = _scalar(value)
    return out


def from_hash(kind: Kind, raw: Mapping[str, str]) -> dict[str, Any]:
    """The structured (YAML) form of a hash: list fields as lists, var.* grouped under vars."""
    out: dict[str, Any] = {}
    variables = {}
    for fname in sorted(raw):
        value = raw[fname]
        family = kind.family(fname) if kind.families else None
        if kind.has_vars and fname.startswith(VAR_PREFIX):
            variables[fname[len(VAR_PREFIX):]] = value
        elif family is not None:
            out.setdefault(family.attr, {})[fname[len(family.prefix):]] = value
        elif fname in kind.fields and kind.fields[fname].list_like:
            out[fname] = list(_split(value))
        else:
            out[fname] = value
    if variables:
        out["vars"] = variables
    return out


def _sections(kind: Kind) -> dict[str, Family]:
    """A kind's families by their YAML section (``options``, ``match``)."""
    return {f.attr: f for f in kind.families}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    return str(value)
