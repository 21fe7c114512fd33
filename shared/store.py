"""The one door to Redis: the client, error translation, and reads/writes of inventory records.

This is the only module that imports ``redis``. It builds every client (:func:`connect`: URLs
``redis://``, ``rediss://``, ``unix://`` and ``redis+sentinel://`` (a master found through Redis
Sentinel and followed across failovers), bounded timeouts, a bounded connection pool), turns
Redis failures into :class:`InventoryUnavailable` (:func:`redis_errors`), and re-exports the
few Redis exception types other modules must tell apart (:data:`ResponseError`,
:data:`NoScriptError`, :data:`WatchError`). :mod:`shared.cache`, :mod:`shared.events` and
:mod:`shared.leases` use the clients it builds; services ask those questions and never build
keys (:mod:`shared.keys` holds every key) or clients of their own.
"Redis is down" is :class:`InventoryUnavailable` (abnormal: counted, logged), "no such object"
is ``None`` or :class:`NotFound` (normal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from shared import keys, metrics
from shared.fields import Problem
from shared.schema import KINDS, Kind, split_key
from shared.validation import parse_record

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


class WrongType(InventoryError):
    """A key holds another Redis type than its shape needs (a string where a hash belongs)."""


class RecordInvalid(InventoryError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("; ".join(str(p) for p in errors or problems))


def check_mode(kind: Kind, canonical: str, current: Mapping[str, str], mode: str) -> None:
    """Refuse a write of ``mode`` to an object that is ``current`` (``{}``: absent): ``add`` of
    one that exists (AlreadyExists), ``set`` of one that does not (NotFound)."""
    if mode == "add" and current:
        raise AlreadyExists(f"{kind.name} {canonical} already exists; use "
                            f"'bootyard {kind.name} set' to change it")
    if mode == "set" and not current:
        raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)}); use "
                       f"'bootyard {kind.name} add' to create it")


def connect(url: str, timeout: float = 2.0, *, max_connections: int = MAX_CONNECTIONS,
            retries: bool = True) -> aioredis.Redis:
    """A Redis client returning text (``decode_responses``) with bounded timeouts and a bounded
    connection pool: at most ``max_connections`` open; a command that finds them all in use
    waits up to ``timeout`` seconds for one, then fails as InventoryUnavailable (through
    :func:`redis_errors`). ``retries=False``: no silent retries and no idle health checks, so a
    Redis restart surfaces as an error on the next command (the lease store wants that).
    A ``redis+sentinel://`` URL gives a client of the master the sentinels name: every new
    connection asks them, so after a failover the next connection reaches the new master."""
    check_url(url)
    if retries:
        options: dict[str, Any] = {"health_check_interval": 30}
    else:
        options = {"retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
    common = dict(max_connections=max_connections, timeout=timeout, decode_responses=True,
                  socket_timeout=timeout, socket_connect_timeout=timeout, **options)
    try:
        if is_sentinel_url(url):
            target = parse_sentinel_url(url)
            sentinel = Sentinel(target.sentinels, sentinel_kwargs={
                "password": target.sentinel_password, "socket_timeout": timeout,
                "socket_connect_timeout": timeout})
            pool = _SentinelPool(target.service, sentinel, db=target.db,
                                 username=target.username, password=target.password, **common)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(url, **common)
    except (ValueError, TypeError) as exc:
        raise InventoryError(f"Redis URL {describe_url(url)!r}: {exc}") from None
    return aioredis.Redis.from_pool(pool)


class _SentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Connections to the master Sentinel names, with the bounded wait of the other clients."""


@dataclasses.dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]``
    ``[?sentinel_password=...]`` (port 26379 by default; the password is the master's)."""
    def bad(reason: str) -> InventoryError:
        return InventoryError(f"Redis URL {describe_url(url)!r}: {reason}; give "
                              "redis+sentinel://HOST:26379,HOST:26379/SERVICE/DB")
    rest = url.partition("://")[2]
    rest, _, query = rest.partition("?")
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = (user or None, secret) if colon else (None, user)
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise bad("no Sentinel service name (the name in 'sentinel monitor NAME ...')")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise bad(f"{path!r} is not SERVICE or SERVICE/DB")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":") if ":" in item else (item, "", "")
        host = host.strip("[]")
        if not host:
            raise bad(f"sentinel {item!r} has no host")
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise bad(f"sentinel port {port!r} is not a number from 1 to 65535")
        sentinels.append((host, int(port) if colon else SENTINEL_PORT))
    options = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise bad(f"unknown option {unknown[0]!r} (only sentinel_password)")
    return SentinelTarget(sentinels, parts[0], int(parts[1]) if len(parts) == 2 else 0,
                          username, password, options.get("sentinel_password") or None)


URL_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)


def check_url(url: str) -> None:
    """Refuse, with one line naming the URL, what is not a Redis URL (an ``http://`` URL, a
    bare host name, a bad port or database number)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        raise InventoryError(
            f"Redis URL {describe_url(url)!r}: not a Redis URL; give redis://HOST:PORT/DB, "
            "rediss://... (TLS), unix:///path/to/redis.sock or "
            "redis+sentinel://HOST:26379,HOST:26379/SERVICE/DB")
    if scheme.lower() == SENTINEL_SCHEME:
        parse_sentinel_url(url)
    elif scheme.lower() != "unix":
        hostport = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        port = hostport.rsplit(":", 1)[1] if ":" in hostport and "]" not in \
            hostport.rsplit(":", 1)[1] else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise InventoryError(f"Redis URL {describe_url(url)!r}: port {port!r} is not a "
                                 "number from 1 to 65535")
        db = rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else ""
        if db and not db.isdigit():
            raise InventoryError(f"Redis URL {describe_url(url)!r}: database {db!r} is not a "
                                 "number")


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("", url)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class redis_errors:  # noqa: N801 - used as a function: ``with redis_errors("leases"):``
    """Translate Redis failures into InventoryUnavailable and count them under ``operation``.
    (A class, not a generator context manager: ~0.6 µs less per use, and the DHCP service uses
    it once per lease batch.)"""

    __slots__ = ("operation", "url")

    def __init__(self, operation: str, url: str | None = None) -> None:
        self.operation = operation
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError,
                            OSError)):
            metrics.REDIS_ERRORS.labels(self.operation).inc()
            where = f" at {describe_url(self.url)}" if self.url else ""
            if isinstance(exc, redis_exceptions.ConnectionError) and \
                    isinstance(exc.__cause__, TimeoutError):  # the bounded pool's wait ran out
                raise InventoryUnavailable(
                    f"no free Redis connection{where} within the timeout: all of this client's "
                    f"connections (at most {MAX_CONNECTIONS}) were busy") from None
            raise InventoryUnavailable(f"Redis unreachable{where}: {exc}") from None
        if isinstance(exc, redis_exceptions.ResponseError):
            metrics.REDIS_ERRORS.labels(self.operation).inc()
            if str(exc).startswith("WRONGTYPE"):
                raise WrongType(f"a key has the wrong Redis type: {exc} (bootyard validate "
                                "names it)") from None
            raise InventoryUnavailable(f"Redis refused the command: {exc}") from None
        if isinstance(exc, redis_exceptions.RedisError):  # e.g. a server that does not speak Redis
            metrics.REDIS_ERRORS.labels(self.operation).inc()
            where = f" at {describe_url(self.url)}" if self.url else ""
            raise InventoryUnavailable(f"no Redis answer{where}: {type(exc).__name__}: {exc} "
                                       "(is that a Redis server?)") from None
        return False


# Reads many hashes in one reply (a key of another type answers its type instead).
_HASHES_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key).ok
  if kind == 'hash' then out[i] = redis.call('HGETALL', key) else out[i] = kind end
end
return out
"""
_HASHES_AT_ONCE = 1000


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

    async def raw_all(self, kind: Kind, skipped: list[Problem] | None = None
                      ) -> dict[str, dict[str, str]]:
        """{id: hash} for every object of ``kind`` (ids exactly as in the keys). A key of the
        kind's shape that is not a hash is left out, and named in ``skipped`` if given."""
        return {split_key(k)[1]: h
                for k, h in (await self._hashes(await self.keys(kind), skipped)).items()}

    async def _hashes(self, names: list[str], skipped: list[Problem] | None
                      ) -> dict[str, dict[str, str]]:
        """{key: hash} of ``names``, read by a script a thousand keys at a time (one reply
        for many hashes parses several times faster than a pipeline of HGETALLs: 5,000 hosts
        in 0.05 s instead of 0.15 s); empty keys left out, wrong-typed ones named in
        ``skipped``."""
        out = {}
        for start in range(0, len(names), _HASHES_AT_ONCE):
            chunk = names[start:start + _HASHES_AT_ONCE]
            with self._errors():
                found = await self.redis.eval(_HASHES_SCRIPT, len(chunk), *chunk)
            for key, flat in zip(chunk, found):
                if isinstance(flat, list):
                    if flat:
                        out[key] = dict(zip(flat[::2], flat[1::2]))
                elif flat != "none" and skipped is not None:
                    skipped.append(Problem(key, "(key)", flat, f"a Redis {flat}, not a hash: "
                                           "every service ignores it; delete it or rename it"))
        return out

    async def key_types(self) -> dict[str, str]:
        """{key: Redis type} of every key under ``bootyard:``."""
        with self._errors():
            found = sorted({k async for k in self.redis.scan_iter(match=keys.ANY_KEY,
                                                                    count=1000)})
            pipe = self.redis.pipeline(transaction=False)
            for key in found:
                pipe.type(key)
            types = await pipe.execute() if found else []
        return {k: t for k, t in zip(found, types) if t != "none"}

    async def atomically(self, watch: list[str],
                         compute: Callable[[], Awaitable[Mapping[str, Mapping[str, str] | None]]],
                         extra: Callable[[Any], None] | None = None) -> dict:
        """Write what ``compute()`` returns (``{key: whole hash, or None to delete}``) in one
        transaction, with ``watch`` WATCHed before ``compute`` reads anything: if one of them
        changes meanwhile (a redis-cli edit), compute again. ``extra(pipe)`` queues more
        commands into the same transaction (the audit entries)."""
        with self._errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                for _ in range(20):
                    try:
                        if watch:
                            await pipe.watch(*watch)
                        writes = dict(await compute())
                        pipe.multi()
                        for key, after in writes.items():
                            pipe.delete(key)
                            if after:
                                pipe.hset(key, mapping=dict(after))
                        if extra is not None:
                            extra(pipe)
                        await pipe.execute()
                        return writes
                    except WatchError:
                        await pipe.reset()
                        continue
        raise InventoryUnavailable("the objects changed 20 times while being written; "
                                   "nothing was written, try again")

    async def get(self, kind: Kind, ident: str):
        """(record or None, problems); raises NotFound if there is no such object."""
        canonical = kind.canonical_id(ident)
        raw = await self.raw(kind, canonical)
        if not raw:
            raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)})")
        return parse_record(kind, canonical, raw)

    async def write(self, kind: Kind, ident: str, changes: Mapping[str, str], *,
                    mode: str, precondition: Callable[[dict[str, str]], str | None] | None = None,
                    record: Callable[[Any, dict[str, str], dict[str, str]], None] | None = None
                    ) -> Any:
        """Create (``mode='add'``), update (``'set'``) or overwrite (``'replace'``) one object.

        ``changes`` are hash fields; an empty value removes the field. The merged result is
        validated before anything is written, and the write is atomic (WATCH/MULTI), so a
        concurrent edit with redis-cli is never half-overwritten. ``precondition(current_hash)``
        returns None to go on or a reason to refuse (PreconditionFailed); it is checked inside
        the same transaction, so "switch only if not switched yet" happens exactly once.
        ``record(pipe, before, after)`` queues more commands into the transaction (the audit
        entry, :func:`shared.audit.queue`). The CLI and the admin API write through
        :func:`shared.inventory.commit`, which also checks references; this is for a service's
        own narrow writes (the install-done callback).
        """
        canonical = kind.canonical_id(ident)
        key = kind.key(canonical)
        with self._errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        current = await pipe.hgetall(key)
                        check_mode(kind, canonical, current, mode)
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
                        parsed, problems = parse_record(kind, canonical, merged)
                        if parsed is None:
                            raise RecordInvalid(problems)
                        pipe.multi()
                        pipe.delete(key)
                        if merged:
                            pipe.hset(key, mapping=merged)
                        if record is not None:
                            record(pipe, current, merged)
                        await pipe.execute()
                        return parsed
                    except WatchError:
                        continue

    async def delete(self, kind: Kind, ident: str) -> None:
        canonical = kind.canonical_id(ident)
        with self._errors():
            removed = await self.redis.delete(kind.key(canonical))
        if not removed:
            raise NotFound(f"no {kind.name} {canonical} (key {kind.key(canonical)})")

    async def dump(self, skipped: list[Problem] | None = None
                   ) -> dict[str, dict[str, dict[str, str]]]:
        """{kind: {id: hash}} for the whole inventory (wrong-typed keys named in ``skipped``):
        one SCAN and one pipeline."""
        with self._errors():
            found = {k async for k in self.redis.scan_iter(match=keys.ANY_KEY, count=1000)}
        names = sorted(k for k in found if split_key(k))
        out: dict[str, dict[str, dict[str, str]]] = {name: {} for name in KINDS}
        for key, raw in (await self._hashes(names, skipped)).items():
            kind, ident = split_key(key)
            out[kind.name][ident] = raw
        return out

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
