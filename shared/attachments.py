"""Which initiators are attached to which block export, shared between the block export service
(which writes it) and the CLI (whose ``blockexport reset`` refuses to reset an attached host's
overlay). One hash per export (:func:`shared.keys.export_attached`): field = the initiator's
MAC, value = the Unix time until which it counts as attached (its last frame plus the service's
``attach_timeout``). The hash expires by itself once nothing refreshes it."""

from __future__ import annotations

import time

from shared import keys
from shared.store import redis_errors


class Attachments:
    def __init__(self, client) -> None:
        self._redis = client

    async def touch(self, export: str, mac: str, until: float) -> None:
        """Record that ``mac`` counts as attached to ``export`` until ``until``."""
        key = keys.export_attached(export)
        with redis_errors("attachments"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(key, mac, f"{until:.0f}")
            pipe.expireat(key, int(until) + 60)
            await pipe.execute()

    async def attached(self, export: str, now: float | None = None) -> dict[str, float]:
        """The MACs attached to ``export`` now, with the time each stays attached until."""
        now = time.time() if now is None else now
        with redis_errors("attachments"):
            raw = await self._redis.hgetall(keys.export_attached(export))
        out = {}
        for mac, value in raw.items():
            try:
                until = float(value)
            except ValueError:
                continue
            if until > now:
                out[mac] = until
        return out

    async def forget(self, export: str, mac: str) -> None:
        with redis_errors("attachments"):
            await self._redis.hdel(keys.export_attached(export), mac)
