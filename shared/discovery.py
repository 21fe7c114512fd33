"""Adoption: a ``discovered`` machine becomes a host, by hand or by a discovery rule.

``bootyard host adopt MAC --profile P [--hostname H]``, ``POST /api/v1/discovered/<mac>/adopt``,
the console's adopt button and the HTTP service's automatic adoption (a ``discovery_rule`` that
matches a report) all go through :func:`adopt`: one write (:func:`shared.inventory.commit`,
with every check a host write gets) that creates the host, with the hardware report as its
``hw``, and deletes the discovered record, recorded in the audit trail.

A discovery rule (kind ``discovery_rule``, docs/discovery.md) matches reports by hardware fields
(``match``: ``dmi.vendor=QEMU,dmi.product=Standard PC*``, globs, case-insensitive) and names the
profile, a host name pattern (``node-{serial}``, ``rack1-{n}``), a boot mode and tags. Rules are
tried by ``priority`` (lowest first); two matching rules of the same priority adopt nothing (the
event names both).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from shared import hardware
from shared.fields import HOSTNAME_PLACEHOLDER as _PLACEHOLDER, FieldError, parse_hostname
from shared.schema import KINDS
from shared.store import AlreadyExists, InventoryError, NotFound

MAX_COUNTER = 100_000


class AdoptionError(InventoryError):
    """An adoption that cannot be made; the text says why."""


# ---------------------------------------------------------------- matching (pure)

@dataclasses.dataclass(frozen=True)
class Match:
    rule: str
    profile: str
    hostname: str | None
    boot_mode: str | None
    tags: tuple[str, ...]


def matches(rule, mac: str, hw: Mapping[str, Any]) -> bool:
    """Whether every ``match`` item of ``rule`` holds for this machine."""
    for item in rule.match:
        path, _, pattern = item.partition("=")
        value = mac if path == "mac" else hardware.lookup(hw, path)
        if value is None or isinstance(value, (dict, list)):
            return False
        if not fnmatch.fnmatchcase(str(value).lower(), pattern.lower()):
            return False
    return True


def choose_rule(rules, mac: str, hw: Mapping[str, Any]):
    """(the rule that adopts this machine or None, why not: "" or a reason naming the tie)."""
    found = sorted((r for r in rules if r.enabled and matches(r, mac, hw)),
                   key=lambda r: (r.priority, r.name))
    if not found:
        return None, ""
    if len(found) > 1 and found[1].priority == found[0].priority:
        return None, (f"rules {found[0].name} and {found[1].name} both match with priority "
                      f"{found[0].priority}: give one a lower priority")
    return found[0], ""


def hostname_for(pattern: str, mac: str, hw: Mapping[str, Any],
                 taken: set[str]) -> str:
    """The host name ``pattern`` gives this machine; ``{n}`` is the lowest number from 1 whose
    name no host has yet. AdoptionError when a placeholder is empty or the result is no name."""
    dmi = hw.get("dmi") or {}
    values = {"mac": mac.replace(":", ""), "serial": dmi.get("serial", ""),
              "uuid": dmi.get("uuid", ""), "vendor": dmi.get("vendor", ""),
              "product": dmi.get("product", "")}

    def fill(n: int) -> str:
        def one(found: re.Match) -> str:
            name = found.group(1)
            text = str(n) if name == "n" else values[name]
            text = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
            if not text:
                raise AdoptionError(f"host name pattern {pattern!r}: the machine has no "
                                    f"{name} to fill in")
            return text
        try:
            return parse_hostname(_PLACEHOLDER.sub(one, pattern))
        except FieldError as exc:
            raise AdoptionError(f"host name pattern {pattern!r}: {exc}") from None

    if "{n}" not in pattern:
        return fill(0)
    for n in range(1, MAX_COUNTER):
        name = fill(n)
        if name not in taken:
            return name
    raise AdoptionError(f"host name pattern {pattern!r}: every number up to {MAX_COUNTER} "
                        "is taken")


# ---------------------------------------------------------------- the write

def adoption_changes(dump, mac: str, profile: str, hostname: str | None = None,
                     boot_mode: str | None = None, tags=(), hostname_pattern: str | None = None
                     ) -> dict[tuple[str, str], dict[str, str] | None]:
    """What adopting ``mac`` writes, from an inventory dump: the host (profile, host name,
    boot mode, tags, ``hw`` from the report) and the discovered record deleted."""
    discovered = dump["discovered"].get(mac)
    if not discovered:
        raise NotFound(f"no discovered machine {mac} (key "
                            f"{KINDS['discovered'].key(mac)}): 'bootyard discovered list' "
                            "shows them")
    if dump["host"].get(mac):
        raise AlreadyExists(f"{mac} is a host already ({KINDS['host'].key(mac)})")
    host = {"profile": profile}
    if hostname_pattern and not hostname:
        hw = hardware.parse_text(discovered["hw"]) if discovered.get("hw") else {}
        taken = {h.get("hostname", "") for h in dump["host"].values()}
        hostname = hostname_for(hostname_pattern, mac, hw, taken)
    if hostname:
        host["hostname"] = hostname
    if boot_mode:
        host["boot_mode"] = boot_mode
    if tags:
        host["tags"] = ",".join(tags)
    if discovered.get("hw"):
        host["hw"] = discovered["hw"]
    return {("host", mac): host, ("discovered", mac): None}


async def adopt(store, mac: str, profile: str, *, who: str, hostname: str | None = None,
                boot_mode: str | None = None, tags=(), hostname_pattern: str | None = None,
                force: bool = False, dry_run: bool = False):
    """Adopt a discovered machine as a host (one checked write, recorded as ``who``);
    returns :class:`shared.inventory.Written`. AdoptionError, RecordInvalid say why not."""
    from shared import audit, inventory

    mac = KINDS["discovered"].canonical_id(mac)

    def compute(dump):
        return adoption_changes(dump, mac, profile, hostname, boot_mode, tags,
                                hostname_pattern), []

    return await inventory.commit(
        store, compute, watch=[KINDS["host"].key(mac), KINDS["discovered"].key(mac)],
        force=force, dry_run=dry_run, record=audit.recorder(who))
