"""The one door to Redis: the client, error translation, and reads/writes of inventory records.

This is the only module that imports ``redis``. It builds every client (:func:`connect`: URLs
``redis://``, ``rediss://`` and ``unix://``, bounded timeouts, a bounded connection pool), turns
Redis failures into :class:`InventoryUnavailable` (:func:`redis_errors`), and re-exports the
few Redis exception types other modules must tell apart (:data:`ResponseError`,
:data:`NoScriptError`, :data:`WatchError`). :mod:`shared.cache`, :mod:`shared.events` and
:mod:`shared.leases` use the clients it builds; services ask those questions and never build
keys (:mod:`shared.keys` holds every key) or clients of their own.
"Redis is down" is :class:`InventoryUnavailable` (abnormal: counted, logged), "no such object"
is ``None`` or :class:`NotFound` (normal).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared import keys, metrics
from shared.schema import KINDS, Kind, Problem, parse_record, split_key

# Redis error replies other modules tell apart (so that they need not import redis)
ResponseError = redis_exceptions.ResponseError  # an error reply (e.g. CONFIG renamed, a bad key)
NoScriptError = redis_exceptions.NoScriptError  # EVALSHA of a script Redis no longer has
WatchError = redis_exceptions.WatchError  # a WATCHed key changed before EXEC

# Connections one client keeps open at most. A command that finds them all busy waits for one
# (up to the client's timeout) instead of opening another, so a burst of look-ups (a TFTP flood
# ending hundreds of transfers at once) cannot leave hundreds of idle connections behind.
MAX_CONNECTIONS = 32

class InventoryError(Exception):
    """An error the operator caused and can fix; the message is one line for the CLI."""


class InventoryUnavailable(InventoryError):
    """Redis cannot be reached (or answered with an error)."""


class NotFound(InventoryError):
    pass


class AlreadyExists(InventoryError):
    pass


class PreconditionFailed(InventoryError):
    """A conditional write whose condition did not hold (nothing was written)."""


class RecordInvalid(InventoryError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("; ".join(str(p) for p in errors or problems))


def connect(url: str, timeout: float = 2.0, *, max_connections: int = MAX_CONNECTIONS,
            retries: bool = True) -> aioredis.Redis:
    """A Redis client returning text (``decode_responses``) with bounded timeouts and a bounded
    connection pool: at most ``max_connections`` open; a command that finds them all in use
    waits up to ``timeout`` seconds for one, then fails as InventoryUnavailable (through
    :func:`redis_errors`). ``retries=False``: no silent retries and no idle health checks, so a
    Redis restart surfaces as an error on the next command (the lease store wants that)."""
    if retries:
        options: dict[str, Any] = {"health_check_interval": 30}
    else:
        options = {"retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, decode_responses=True,
        socket_timeout=timeout, socket_connect_timeout=timeout, **options)
    return aioredis.Redis.from_pool(pool)


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("", url)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@contextlib.contextmanager
def redis_errors(operation: str, url: str | None = None) -> Iterator[None]:
    """Translate Redis failures into InventoryUnavailable and count them under ``operation``."""
    try:
        yield
    except (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError) as exc:
        metrics.REDIS_ERRORS.labels(operation).inc()
        where = f" at {describe_url(url)}" if url else ""
        if isinstance(exc, redis_exceptions.ConnectionError) and \
                isinstance(exc.__cause__, TimeoutError):  # the bounded pool's wait ran out
            raise InventoryUnavailable(
                f"no free Redis connection{where} within the timeout: all of this client's "
                f"connections (at most {MAX_CONNECTIONS}) were busy") from None
        raise InventoryUnavailable(f"Redis unreachable{where}: {exc}") from None
    except redis_exceptions.ResponseError as exc:
        metrics.REDIS_ERRORS.labels(operation).inc()
        raise InventoryUnavailable(f"Redis refused the command: {exc}") from None


def db_index(client: aioredis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


class InventoryStore:
    """Reads and validated writes of inventory records (used by the CLI, the admin API, tests)."""

    def __init__(self, client: aioredis.Redis, url: str | None = None) -> None:
        self.redis = client
        self.url = url

    def _errors(self):
        return redis_errors("admin", self.url)

    async def ping(self) -> None:
        with self._errors():
            await self.redis.ping()

    async def persistence(self) -> dict[str, str]:
        """Redis's persistence settings (``appendonly``, ``appendfsync``, ``save``), for
        ``bootyard doctor``; raises InventoryUnavailable if Redis refuses CONFIG GET."""
        out: dict[str, str] = {}
        with self._errors():
            for name in ("appendonly", "appendfsync", "save"):
                out.update(await self.redis.config_get(name))
        return out

    async def raw(self, kind: Kind, ident: str) -> dict[str, str]:
        with self._errors():
            return await self.redis.hgetall(kind.key(ident))

    async def keys(self, kind: Kind) -> list[str]:
        """Every key of ``kind`` (SCAN, so it also finds objects made by hand with redis-cli)."""
        with self._errors():
            found = [k async for k in self.redis.scan_iter(match=kind.pattern, count=1000)]
        return sorted(k for k in found if split_key(k))

    async def raw_all(self, kind: Kind) -> dict[str, dict[str, str]]:
        """{id: hash} for every object of ``kind`` (ids exactly as in the keys)."""
        names = await self.keys(kind)
        with self._errors():
            pipe = self.redis.pipeline(transaction=False)
            for key in names:
                pipe.hgetall(key)
            hashes = await pipe.execute() if names else []
        return {split_key(k)[1]: h for k, h in zip(names, hashes) if h}

    async def get(self, kind: Kind, ident: str):
        """(record or None, problems); raises NotFound if there is no such object."""
        canonical = kind.canonical_id(ident)
        raw = await self.raw(kind, canonical)
        if not raw:
            raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)})")
        return parse_record(kind, canonical, raw)

    async def write(self, kind: Kind, ident: str, changes: Mapping[str, str], *,
                    mode: str, precondition: Callable[[dict[str, str]], str | None] | None = None
                    ) -> Any:
        """Create (``mode='add'``), update (``'set'``) or overwrite (``'replace'``) one object.

        ``changes`` are hash fields; an empty value removes the field. The merged result is
        validated before anything is written, and the write is atomic (WATCH/MULTI), so a
        concurrent edit with redis-cli is never half-overwritten. ``precondition(current_hash)``
        returns None to go on or a reason to refuse (PreconditionFailed); it is checked inside
        the same transaction, so "switch only if not switched yet" happens exactly once.
        """
        canonical = kind.canonical_id(ident)
        key = kind.key(canonical)
        with self._errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        current = await pipe.hgetall(key)
                        if mode == "add" and current:
                            raise AlreadyExists(
                                f"{kind.name} {canonical} already exists; use "
                                f"'bootyard {kind.name} set' to change it")
                        if mode == "set" and not current:
                            raise NotFound(f"no {kind.name} {canonical} (key {key}); use "
                                           f"'bootyard {kind.name} add' to create it")
                        if precondition is not None:
                            refused = precondition(current)
                            if refused:
                                raise PreconditionFailed(refused)
                        merged = {} if mode == "replace" else dict(current)
                        merged.update(changes)
                        merged = {f: v for f, v in merged.items() if v != ""}
                        if not merged:
                            raise RecordInvalid([Problem(
                                key, "(all)", "", "a Redis hash cannot be empty: give at least "
                                "one field (for a host, e.g. --enabled yes)")])
                        record, problems = parse_record(kind, canonical, merged)
                        if record is None:
                            raise RecordInvalid(problems)
                        pipe.multi()
                        pipe.delete(key)
                        if merged:
                            pipe.hset(key, mapping=merged)
                        await pipe.execute()
                        return record
                    except WatchError:
                        continue

    async def delete(self, kind: Kind, ident: str) -> None:
        canonical = kind.canonical_id(ident)
        with self._errors():
            removed = await self.redis.delete(kind.key(canonical))
        if not removed:
            raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)})")

    async def dump(self) -> dict[str, dict[str, dict[str, str]]]:
        """{kind: {id: hash}} for the whole inventory."""
        return {name: await self.raw_all(kind) for name, kind in KINDS.items()}

    async def load(self, data: Mapping[str, Mapping[str, Mapping[str, str]]], *,
                   replace: bool) -> dict[str, int]:
        """Write ``{kind: {id: hash}}`` in one transaction; with ``replace``, delete the rest.

        Each object in ``data`` is written whole (fields absent from it are removed), so loading
        the same data twice gives the same Redis contents. Returns counts of what changed.
        """
        existing = await self.dump() if replace else {}
        counts = {"written": 0, "deleted": 0}
        with self._errors():
            pipe = self.redis.pipeline(transaction=True)
            for kind_name, objects in data.items():
                kind = KINDS[kind_name]
                for ident, fields in objects.items():
                    key = kind.key(ident)
                    pipe.delete(key)
                    pipe.hset(key, mapping=dict(fields))
                    counts["written"] += 1
            for kind_name, objects in existing.items():
                kind = KINDS[kind_name]
                for ident in objects:
                    if ident not in data.get(kind_name, {}):
                        pipe.delete(keys.object_key(kind.name, ident))
                        counts["deleted"] += 1
            await pipe.execute()
        return counts
