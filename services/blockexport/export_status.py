"""What the service sees of each export it serves, published for the console's exports overview
(shared/attachments.ExportStatus; docs/console.md): kind, size, overlays and their bytes, free
space, up or why not. Shared by the AoE and iSCSI sides of the service."""

from __future__ import annotations

import asyncio
import os
import time

from services.blockexport.storage_cow import CowDisk
from shared import logs
from shared.attachments import ExportStatus
from shared.store import InventoryUnavailable

log = logs.get_logger("blockexport")


def overlay_count(disk) -> int | None:
    """How many hosts have an overlay on a copy-on-write export (None: not copy-on-write)."""
    if not isinstance(disk, CowDisk):
        return None
    try:
        with os.scandir(disk.dir) as entries:
            return sum(1 for e in entries if e.is_dir() and not e.name.endswith(".new"))
    except OSError:
        return 0


async def publish(status: ExportStatus, name: str, kind: str, disk, overlay_bytes: int,
                  free_bytes: int, missing: str | None, ttl: float) -> None:
    count = await asyncio.to_thread(overlay_count, disk)
    try:
        await status.publish(name, {
            "kind": kind, "size": getattr(disk, "size", None), "overlays": count,
            "overlay_bytes": overlay_bytes if count is not None else None,
            "free_bytes": free_bytes, "up": 0 if missing else 1, "reason": missing or None,
            "updated": f"{time.time():.0f}"}, ttl)
    except InventoryUnavailable as exc:  # the next round writes it again
        log.debug("export_status_not_written", export=name, reason=str(exc))
