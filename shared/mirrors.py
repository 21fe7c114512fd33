"""Mirror sync state in Redis: the one-sync-per-mirror lock, each mirror's status, sync requests.

Keys (:mod:`shared.keys`; docs/mirrorsync.md documents them for operators):

``bootyard:mirrorsync:lock:<name>``
    string: the owner token of the replica syncing the mirror, set with ``SET NX PX`` (a lease of
    ``ttl`` milliseconds). The holder renews it for the whole sync (:meth:`MirrorLock.renew`); a
    replica that dies loses the lock when the lease runs out. Renew and release are Lua scripts
    that act only if the key still holds the caller's token, so a holder whose lease ran out can
    neither extend nor delete the next holder's lock; the publish step asks
    :meth:`MirrorLock.renew` first and does not publish when it is no longer the owner (fencing).
``bootyard:mirrorsync:status:<name>``
    hash: ``state`` (``idle``, ``syncing``, ``failed``, ``waiting``), ``last_attempt``,
    ``last_success`` (Unix seconds), ``last_result`` (``published`` or a failure reason),
    ``failures`` (consecutive), ``duration`` (seconds), ``size`` and ``files`` (published
    snapshot), ``bytes_transferred``, ``files_transferred``, ``snapshot`` (published id),
    ``last_error``, ``holder`` (replica syncing it now), ``phases`` (seconds of each phase of
    the last sync up to its publish or failure: ``prepare=0.002 rsync=0.250 ...``).
``bootyard:mirrorsync:requests``
    hash: mirror name -> Unix time ``bootyard mirror sync`` asked for a sync now; the replica
    that deletes the field (HDEL answers 1 to one replica only) runs it.
"""

from __future__ import annotations

import os
import socket
import uuid

from shared import keys
from shared.store import redis_errors

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
OPERATION = "mirrors"  # the bootyard_redis_errors_total label of these commands

STATUS_FIELDS = ("state", "last_attempt", "last_success", "last_result", "failures", "duration",
                 "size", "files", "bytes_transferred", "files_transferred", "snapshot",
                 "last_error", "holder", "next_attempt", "phases")


def owner_token() -> str:
    """A token naming this replica and one acquisition: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class MirrorLock:
    """One mirror's lock, held by ``token`` while acquired."""

    def __init__(self, client, name: str, ttl_ms: int) -> None:
        self._redis = client
        self.name = name
        self.key = keys.mirror_lock(name)
        self.ttl_ms = ttl_ms
        self.token = owner_token()

    async def acquire(self) -> bool:
        with redis_errors(OPERATION):
            return bool(await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease; False if this replica no longer owns the lock."""
        with redis_errors(OPERATION):
            return bool(await self._redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    async def release(self) -> bool:
        with redis_errors(OPERATION):
            return bool(await self._redis.eval(_RELEASE, 1, self.key, self.token))

    async def holder(self) -> str | None:
        with redis_errors(OPERATION):
            return await self._redis.get(self.key)


class MirrorState:
    """Status hashes and sync requests of every mirror."""

    def __init__(self, client) -> None:
        self._redis = client

    async def status(self, name: str) -> dict[str, str]:
        with redis_errors(OPERATION):
            return await self._redis.hgetall(keys.mirror_status(name))

    async def statuses(self, names) -> dict[str, dict[str, str]]:
        names = sorted(names)
        with redis_errors(OPERATION):
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(keys.mirror_status(name))
                pipe.get(keys.mirror_lock(name))
            replies = await pipe.execute() if names else []
        out = {}
        for i, name in enumerate(names):
            status = dict(replies[2 * i])
            if replies[2 * i + 1]:
                status["lock"] = replies[2 * i + 1]
            out[name] = status
        return out

    async def update(self, name: str, fields: dict[str, object]) -> None:
        """Set status fields (None or "" removes a field)."""
        values = {k: str(v) for k, v in fields.items() if v is not None and v != ""}
        gone = [k for k, v in fields.items() if v is None or v == ""]
        with redis_errors(OPERATION):
            pipe = self._redis.pipeline(transaction=False)
            if values:
                pipe.hset(keys.mirror_status(name), mapping=values)
            if gone:
                pipe.hdel(keys.mirror_status(name), *gone)
            await pipe.execute()

    async def forget(self, name: str) -> None:
        """Remove a deleted mirror's status."""
        with redis_errors(OPERATION):
            await self._redis.delete(keys.mirror_status(name))

    async def request_sync(self, name: str, when: float) -> None:
        with redis_errors(OPERATION):
            await self._redis.hset(keys.MIRROR_REQUESTS, name, f"{when:.3f}")

    async def requested(self) -> list[str]:
        with redis_errors(OPERATION):
            return sorted(await self._redis.hkeys(keys.MIRROR_REQUESTS))

    async def take_request(self, name: str) -> bool:
        """True for the one replica that takes the request for ``name``."""
        with redis_errors(OPERATION):
            return bool(await self._redis.hdel(keys.MIRROR_REQUESTS, name))
