"""``GET /api/v1/overview``: the mirrors and block exports at a glance (the console's
"Mirrors and exports" page, docs/console.md).

Mirrors: each mirror record with the mirrorsync service's status (shared/mirrors.py): its state,
when it was last published, its age against the stale limit (twice its interval, the
BootyardMirrorStale rule), size and files of the published snapshot, the last error. Exports:
each export record with what the blockexport service publishes of it (shared/attachments.py
``ExportStatus``: size, overlays and their bytes, free space, up) and the hosts attached to it
now (sessions). Read-only; a few Redis reads per call, no scan of the hosts.
"""

from __future__ import annotations

from typing import Any

from shared.attachments import Attachments, ExportStatus
from shared.mirrors import MirrorState
from shared.schema import KINDS
from shared.store import InventoryStore
from shared.validation import parse_record


def _number(value: str | None) -> float | int | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


async def read(store: InventoryStore, now: float) -> dict[str, Any]:
    mirrors = {n: parse_record(KINDS["mirror"], n, r)[0]
               for n, r in (await store.raw_all(KINDS["mirror"])).items()}
    exports = {n: parse_record(KINDS["export"], n, r)[0]
               for n, r in (await store.raw_all(KINDS["export"])).items()}
    statuses = await MirrorState(store.redis).statuses(mirrors) if mirrors else {}
    out: dict[str, Any] = {"mirrors": {}, "exports": {}}
    for name, mirror in sorted(mirrors.items()):
        if mirror is None:
            continue
        status = statuses.get(name, {})
        last = _number(status.get("last_success"))
        age = round(now - last) if last is not None else None
        state = status.get("state", "never synced")
        if state == "syncing" and not status.get("lock"):
            state = "interrupted"  # the replica died: its lock's lease ran out
        out["mirrors"][name] = {
            "source": mirror.source, "path": mirror.path, "interval": mirror.interval,
            "enabled": mirror.enabled, "state": state, "last_success": last,
            "last_attempt": _number(status.get("last_attempt")), "age": age,
            "stale_after": 2 * mirror.interval,
            "fresh": age is not None and age <= 2 * mirror.interval,
            "size": _number(status.get("size")), "files": _number(status.get("files")),
            "snapshot": status.get("snapshot"), "failures": _number(status.get("failures")) or 0,
            "last_error": status.get("last_error") or None}
    published = await ExportStatus(store.redis).read(exports) if exports else {}
    attachments = Attachments(store.redis)
    for name, export in sorted(exports.items()):
        if export is None:
            continue
        status = published.get(name) or {}
        target = (f"e{export.aoe_shelf}.{export.aoe_slot}" if export.kind == "aoe"
                  else export.iqn)
        sessions = sorted(await attachments.attached(name, now))
        out["exports"][name] = {
            "kind": export.kind, "backing": export.backing, "cow": export.cow,
            "readonly": export.readonly, "target": target,
            "served": bool(status), "up": status.get("up") == "1" if status else None,
            "reason": status.get("reason") or None, "size": _number(status.get("size")),
            "overlays": _number(status.get("overlays")),
            "overlay_bytes": _number(status.get("overlay_bytes")),
            "free_bytes": _number(status.get("free_bytes")),
            "updated": _number(status.get("updated")), "sessions": sessions}
    return out
