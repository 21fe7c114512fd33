"""What the block export service keeps in Redis about its exports, besides the inventory.

- :class:`Attachments`: which initiators are attached to which export, shared between the
  service (which writes it) and the CLI (whose ``blockexport reset`` refuses to reset an attached
  host's overlay). One hash per export (:func:`shared.keys.export_attached`): field = the
  initiator's MAC, value = the Unix time until which it counts as attached (its last frame plus
  the service's ``attach_timeout``). The hash expires by itself once nothing refreshes it.
- :class:`TargetStates`: an AoE export's config string, Mac Mask List and reserve list, which
  initiators set over the wire and which survive a restart of the service, as they would on a
  disk with its own memory (:func:`shared.keys.export_target_state`: fields ``config`` (hex),
  ``masks`` and ``reserved`` (comma-separated MACs)).
- :class:`ExportStatus`: what the service sees of each export it serves, for the console's
  exports overview (:func:`shared.keys.export_status`: fields ``kind``, ``size`` (bytes),
  ``overlays`` (hosts with a copy-on-write overlay), ``overlay_bytes``, ``free_bytes``, ``up``
  (``1``/``0``), ``reason`` (why it is down), ``updated`` (Unix time)). Written every
  housekeeping round with an expiry of a few rounds: a stopped service's status goes away.
"""

from __future__ import annotations

import time

from shared import keys
from shared.store import redis_errors


class Attachments:
    def __init__(self, client) -> None:
        self._redis = client

    @property
    def client(self):
        return self._redis

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


class TargetStates:
    def __init__(self, client) -> None:
        self._redis = client

    async def load(self, export: str) -> dict[str, str]:
        with redis_errors("target_state"):
            return await self._redis.hgetall(keys.export_target_state(export))

    async def save(self, export: str, fields: dict[str, str]) -> None:
        key = keys.export_target_state(export)
        with redis_errors("target_state"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(key)
            if any(fields.values()):
                pipe.hset(key, mapping=fields)
            await pipe.execute()

    async def forget(self, export: str) -> None:
        with redis_errors("target_state"):
            await self._redis.delete(keys.export_target_state(export))


class ExportStatus:
    def __init__(self, client) -> None:
        self._redis = client

    async def publish(self, export: str, fields: dict[str, object], ttl: float) -> None:
        key = keys.export_status(export)
        with redis_errors("export_status"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, mapping={k: str(v) for k, v in fields.items() if v is not None})
            pipe.expire(key, max(1, int(ttl)))
            await pipe.execute()

    async def read(self, exports) -> dict[str, dict[str, str]]:
        """Each export's status (empty: no service published one lately)."""
        exports = sorted(exports)
        with redis_errors("export_status"):
            pipe = self._redis.pipeline(transaction=False)
            for name in exports:
                pipe.hgetall(keys.export_status(name))
            replies = await pipe.execute() if exports else []
        return dict(zip(exports, replies))
