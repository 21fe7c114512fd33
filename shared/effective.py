"""What a host gets, and where each value comes from (``bootyard host show --effective``,
``GET /api/v1/hosts/<mac>?effective=1``): pure, on parsed records.

Each value is ``{"value": ..., "source": ...}`` with source ``host``, ``group:<name>``,
``host:once`` (a one-shot boot), ``profile:<name>``, ``subnet:<name>`` or ``default``. The
layering is the boot plan's (shared/groups.py, shared/bootplan.py): host over group over
profile for variables, kernel and kernel arguments; host over group over subnet for DHCP
options. ``plan`` is the boot plan made as the services make it (check facts: the URLs name
``bootyard.invalid``), with its kernel arguments, or the reason it cannot be made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shared import bootcmdline, bootplan, dhcpoptions, groups
from shared.records import Host


def _v(value: Any, source: str) -> dict[str, Any]:
    return {"value": value, "source": source}


def explain(host: Host, records: Mapping[str, Mapping[str, Any]],
            raw: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The effective values of ``host`` (its raw hash ``raw`` tells a field it set from a
    default), against ``records`` ``{kind: {id: record}}``."""
    from shared.checks import subnet_of

    raw = raw or {}
    found = groups.resolve(host, records.get("group", {}).values(), records["subnet"])
    eff, sources = found.host, found.sources
    profile = records["profile"].get(eff.profile) if eff.profile else None
    psource = f"profile:{profile.name}" if profile else "default"
    out: dict[str, Any] = {
        "mac": host.mac,
        "groups": [{"name": n, "specificity": s} for n, s in found.groups],
        "conflicts": [str(c) for c in found.conflicts],
        "profile": _v(eff.profile, sources.get("profile", "default")),
        "boot_mode": _v(eff.boot_mode, sources.get("boot_mode", "host" if raw.get("boot_mode")
                                                   else "default")),
    }
    if eff.kernel:
        out["kernel"] = _v(eff.kernel, sources.get("kernel", "host"))
    else:
        out["kernel"] = _v(profile.kernel if profile else None, psource)
    out["cmdline"] = _v(profile.cmdline if profile else "", psource)
    out["kernel_args"] = _v(eff.kernel_args, sources.get("kernel_args", "default"))
    variables = {k: _v(v, psource) for k, v in (profile.vars if profile else {}).items()}
    variables.update((k, _v(v, sources.get(f"var.{k}", "host")))
                     for k, v in eff.vars.items() if v)
    out["vars"] = dict(sorted(variables.items()))
    subnet = subnet_of(host, records["subnet"]) if host.ip else None
    options: dict[str, Any] = {}
    if subnet is not None:
        options = {dhcpoptions.canonical_name(dhcpoptions.code_of(k)): _v(v, f"subnet:{subnet.name}")
                   for k, v in subnet.options.items()}
    for name, value in eff.options.items():
        canonical = dhcpoptions.canonical_name(dhcpoptions.code_of(name))
        options[canonical] = _v(value, sources.get(dhcpoptions.PREFIX + canonical, "host"))
    out["options"] = dict(sorted(options.items()))
    if host.once_profile:
        out["once"] = {"profile": host.once_profile, "mode": host.once_mode or "live"}
    out["plan"] = _plan(eff, profile, records, subnet)
    return out


def _plan(host: Host, profile, records, subnet) -> dict[str, Any]:
    from shared.checks import CHECK_FACTS

    if host.boot_mode != "local" and profile is None:
        return {"outcome": "error", "reason": "no profile"}
    name = host.vars.get("export") or (profile.export if profile else None)
    export = records["export"].get(name) if name else None
    facts = dataclasses.replace(CHECK_FACTS, subnet=subnet)
    try:
        plan = bootplan.plan(host.mac, host, profile, export, facts)
    except bootcmdline.TemplateFailed as exc:
        return {"outcome": "error", "reason": str(exc)}
    out: dict[str, Any] = {"outcome": plan.outcome}
    if plan.reason:
        out["reason"] = plan.reason
    if plan.kernel is not None:
        out["kernel"] = plan.kernel.value
        out["initrds"] = [i.value for i in plan.initrds]
        out["cmdline"] = plan.cmdline
    if plan.target is not None:
        out["target"] = plan.target.san_uri
    return out
