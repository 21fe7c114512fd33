"""The mirror lock's keeper: renews the lock a sync holds for as long as the sync runs."""

from __future__ import annotations

import asyncio

from shared import logs
from shared.mirrors import MirrorLock
from shared.store import InventoryUnavailable

log = logs.get_logger("mirrorsync")

# How long leaving the keeper waits for its task to end: one renewal at most, itself bounded by
# the Redis client's timeouts (shared.store.connect). Past it the keeper is left to end on its
# own (it stops at its next turn) and the sync goes on: it is never waited for without bound.
STOP_WITHIN = 30.0


class LockKeeper:
    """Renews a held lock every ``every`` seconds for as long as a sync runs (rsync, the check,
    the publish); ``lost`` turns true when the lock is no longer ours. A failed renewal (Redis
    unreachable) is logged and tried again: the lease runs on, and the publish step asks Redis
    itself before it publishes.

    Leaving the ``async with`` stops the keeper by a flag its loop reads at every turn, and
    cancels its task to cut short the sleep or renewal in progress. The flag, not the
    cancellation, is what ends the loop: on Python 3.11 ``asyncio.wait_for``, which redis-py
    puts around every command it sends, drops a cancellation that arrives just after the
    command went out (it returns the command's result instead), so a keeper stopped only by
    ``cancel()`` could go on renewing for ever, and the sync waiting for it never ended
    (tests/mirrorsync/test_lockkeeper.py stops a keeper at every step of its renewals)."""

    def __init__(self, lock: MirrorLock, every: float) -> None:
        self.lock = lock
        self.every = every
        self.lost = False
        self.renewals = 0  # renewals that kept the lock
        self._stopping = False
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> LockKeeper:
        self._task = asyncio.create_task(self._run(), name=f"lock-keeper-{self.lock.name}")
        return self

    async def __aexit__(self, *exc) -> None:
        self._stopping = True
        self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_WITHIN)
        if not done:
            log.error("lock_keeper_not_stopped", mirror=self.lock.name, waited_s=STOP_WITHIN,
                      action="the sync goes on; the keeper ends at its next turn")
        elif not self._task.cancelled() and self._task.exception() is not None:
            log.error("lock_keeper_failed", mirror=self.lock.name,
                      reason=repr(self._task.exception()))

    async def _run(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.every)
            if self._stopping:
                return
            try:
                if await self.lock.renew():
                    self.renewals += 1
                else:
                    self.lost = True
                    log.warning("lock_lost", mirror=self.lock.name,
                                action="the sync stops and publishes nothing")
            except InventoryUnavailable as exc:
                log.warning("lock_renew_failed", mirror=self.lock.name, reason=str(exc))
            if self._stopping:
                return
