"""The mirror lock's keeper: renews the lock a sync holds for as long as the sync runs."""

from __future__ import annotations

import asyncio

from shared import logs
from shared.mirrors import MirrorLock
from shared.store import InventoryUnavailable

log = logs.get_logger("mirrorsync")


class LockKeeper:
    """Renews a held lock every ``every`` seconds for as long as a sync runs (rsync, the check,
    the publish); ``lost`` turns true when the lock is no longer ours. A failed renewal (Redis
    unreachable) is logged and tried again: the lease runs on, and the publish step asks Redis
    itself before it publishes."""

    def __init__(self, lock: MirrorLock, every: float) -> None:
        self.lock = lock
        self.every = every
        self.lost = False
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> LockKeeper:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.every)
            try:
                if not await self.lock.renew():
                    self.lost = True
                    log.warning("lock_lost", mirror=self.lock.name,
                                action="the sync stops and publishes nothing")
            except InventoryUnavailable as exc:
                log.warning("lock_renew_failed", mirror=self.lock.name, reason=str(exc))
