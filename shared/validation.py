"""Validation of one inventory record: a Redis hash in, a typed record and its problems out
(pure: no Redis here).

:func:`parse_record` parses every field with the parser :mod:`shared.schema` names for it, then
runs the checks across the fields of one record (a subnet's ranges inside its network, an image's
checksums, an export's AoE/iSCSI needs, a host's power fields). It gives the record and the list
of :class:`~shared.fields.Problem` s found: an ``error`` makes the record invalid (services keep
its last good version, or treat the object as unknown); a ``warning`` (an unknown field, say a
typo) is reported by ``bootyard validate`` but does not stop the record being used. The checks
across records (references, boot-mode needs) are shared/checks.py's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shared import keys
from shared.addresses import AddressError
from shared.fields import SCRIPT_VARS, SECRET_MASK, FieldError, Problem
from shared.schema import VAR_PREFIX, Kind

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def parse_record(kind: Kind, ident: str, raw: Mapping[str, str]) -> tuple[Any, list[Problem]]:
    """Validate one hash; return (record or None, problems). Never raises on bad data."""
    key = keys.object_key(kind.name, ident)
    problems: list[Problem] = []
    try:
        canonical = kind.canonical_id(ident)
    except AddressError as exc:
        return None, [Problem(key, "(key)", ident, str(exc))]
    if canonical != ident:
        return None, [Problem(key, "(key)", ident,
                              f"key is not canonical: rename it to {kind.key(canonical)}")]
    values: dict[str, Any] = {kind.id_field: canonical}
    variables: dict[str, str] = {}
    for fname, raw_value in raw.items():
        if kind.has_vars and fname.startswith(VAR_PREFIX):
            var = fname[len(VAR_PREFIX):]
            if not _VAR_NAME.fullmatch(var):
                problems.append(Problem(key, fname, raw_value,
                                        "variable names are letters, digits and '_'"))
            elif var in SCRIPT_VARS and raw_value != "":
                try:
                    SCRIPT_VARS[var](raw_value)
                except FieldError as exc:
                    problems.append(Problem(key, fname, raw_value, str(exc)))
                else:
                    variables[var] = raw_value
            else:
                variables[var] = raw_value
            continue
        family = kind.family(fname) if kind.families else None
        if family is not None:
            name = fname[len(family.prefix):]
            if raw_value == "":
                continue
            try:
                values.setdefault(family.attr, {})[name] = family.parse(name, raw_value)
            except FieldError as exc:
                problems.append(Problem(key, fname, raw_value, str(exc)))
            continue
        spec = kind.fields.get(fname)
        if spec is None:
            hint = " (per-host template variables are var.<name>)" if kind.has_vars else ""
            problems.append(Problem(key, fname, raw_value, "unknown field, ignored" + hint,
                                    severity="warning"))
            continue
        if raw_value == "":
            continue  # an empty field is an unset field
        try:
            values[fname] = spec.parse(raw_value)
        except FieldError as exc:
            # a refused secret is not printed either (shared/secrets.py SECRET_MASK)
            problems.append(Problem(key, fname, "********" if spec.secret else raw_value,
                                    str(exc)))
    for fname, spec in kind.fields.items():
        if spec.required and fname not in values and not any(
                p.field == fname for p in problems):
            problems.append(Problem(key, fname, "", "required field is missing"))
    if kind.has_vars:
        values["vars"] = variables
    problems += _record_checks(kind, key, values)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return kind.record(**values), problems


def _record_checks(kind: Kind, key: str, values: dict[str, Any]) -> list[Problem]:
    """Checks across fields of one record."""
    problems = []
    if kind.name == "subnet" and "network" in values:
        net = values["network"]
        for first, last in values.get("ranges", ()):
            if ipaddress.IPv4Address(first) not in net or ipaddress.IPv4Address(last) not in net:
                problems.append(Problem(key, "ranges", f"{first}-{last}",
                                        f"range is not inside {net}"))
        router = values.get("router")
        if router and ipaddress.IPv4Address(router) not in net:
            problems.append(Problem(key, "router", router, f"router is not inside {net}"))
        ranges = values.get("ranges", ())
        for fname in SUBNET_INFRASTRUCTURE:
            value = values.get(fname) or ()
            for ip in (value,) if isinstance(value, str) else value:
                inside = range_containing(ip, ranges)
                if inside is not None:
                    problems.append(Problem(
                        key, fname, ip, f"{ip} is inside the dynamic range {inside[0]}-"
                        f"{inside[1]}: the pool would give this address to a client; take it "
                        "out of ranges"))
        ordered = sorted(ranges, key=lambda r: ipaddress.IPv4Address(r[0]))
        for (first, last), (nfirst, nlast) in zip(ordered, ordered[1:]):
            if ipaddress.IPv4Address(nfirst) <= ipaddress.IPv4Address(last):
                problems.append(Problem(key, "ranges", f"{nfirst}-{nlast}",
                                        f"overlaps the range {first}-{last}"))
    if kind.name == "image" and "kernel" in values:
        files = [values["kernel"], *values.get("initrd", ()),
                 *((values["squashfs"],) if values.get("squashfs") else ())]
        summed = dict(values.get("sha256", ()))
        for path in summed:
            if path not in files:
                problems.append(Problem(key, "sha256", path, "a checksum of a file that is not "
                                        f"one of the image's ({', '.join(files)})"))
        for path in files:
            if path not in summed:
                problems.append(Problem(key, "sha256", "", f"no checksum for {path}: bootyard "
                                        "image verify cannot check it", severity="warning"))
    if kind.name == "export":
        if values.get("kind") == "aoe" and (values.get("aoe_shelf") is None
                                            or values.get("aoe_slot") is None):
            problems.append(Problem(key, "aoe_shelf", str(values.get("aoe_shelf", "")),
                                    "an AoE export needs aoe_shelf and aoe_slot"))
        if values.get("kind") == "iscsi" and not values.get("iqn"):
            problems.append(Problem(key, "iqn", "", "an iSCSI export needs an iqn"))
        if values.get("chap_secret") and not values.get("chap_user"):
            problems.append(Problem(key, "chap_user", "", "CHAP needs a chap_user with the "
                                    "chap_secret"))
        if values.get("chap_mutual_secret"):
            if not values.get("chap_secret"):
                problems.append(Problem(key, "chap_mutual_secret", SECRET_MASK, "mutual CHAP needs "
                                        "the one-way chap_user and chap_secret too"))
            elif values["chap_mutual_secret"] == values["chap_secret"]:
                problems.append(Problem(key, "chap_mutual_secret", SECRET_MASK, "must differ from "
                                        "chap_secret (RFC 7143 12.1.3)"))
    if kind.name == "host" and values.get("power"):
        from shared.power import record_problems
        problems += [Problem(key, f, v, r) for f, v, r in record_problems(values)]
    return problems


# Subnet fields naming machines that serve the subnet: never inside its dynamic ranges.
SUBNET_INFRASTRUCTURE = ("router", "next_server", "dns", "relays")


def range_containing(ip: str, ranges: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The first (FIRST, LAST) of ``ranges`` that contains ``ip``, or None."""
    address = ipaddress.IPv4Address(ip)
    for first, last in ranges:
        if ipaddress.IPv4Address(first) <= address <= ipaddress.IPv4Address(last):
            return first, last
    return None
