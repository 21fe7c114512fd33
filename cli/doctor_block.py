"""``bootyard doctor MAC``: the block export of a netroot or sanboot host (filled in below)."""

from __future__ import annotations


async def block_checks(report, target, cfg, interface) -> None:
    report.add("block", f"{target.kind} target", None, "not probed yet")
