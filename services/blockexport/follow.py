"""What both targets (AoE in server.py, iSCSI in iscsi_server.py) do to follow the inventory:
an export record changed -> one more reconcile pass (passes never overlap; a failed pass is
logged and the next change retries it, the target keeps serving)."""

from __future__ import annotations

import asyncio

from shared import logs

log = logs.get_logger("blockexport")


class FollowsExports:
    """Mixin: call :meth:`_watch_exports` in ``__init__``; define ``async reconcile()``."""

    def _watch_exports(self, cache) -> None:
        self._dirty = asyncio.Event()
        self._dirty.set()  # the first pass loads what is there
        cache.on_change(self._on_change)

    def _on_change(self, kind: str, _ident: str) -> None:
        if kind == "export":
            self._dirty.set()

    async def follow_inventory(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - next change retries; never stop serving
                log.exception("reconcile_failed", reason=str(exc))

    async def reconcile(self) -> None:
        raise NotImplementedError
