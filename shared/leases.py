"""DHCP leases in Redis: atomic allocation (Lua), the lease contract hash, and lookups.

Keys (docs/dhcp.md documents them for operators):

``bootyard:lease:<ip>`` (the contract read by TFTP and HTTP)
    hash: ``mac`` (canonical), ``state`` (``offered``, ``bound``, ``declined``, ``released``),
    ``expires`` (Unix seconds, integer text), ``subnet`` (subnet name), ``hostname`` (may be
    empty). A lease is current when ``state == bound`` and ``expires`` > now.
``bootyard:leases:pool:<subnet>``
    sorted set of the subnet's dynamic addresses; the score is the Unix time from which the
    address may be handed out (0: never used; an offer's hold time; a lease's expiry; the end of
    a DECLINE quarantine). Allocation takes the lowest score not in the future, so expired leases
    return to the pool by themselves and recently used addresses are reused last.
``bootyard:leases:mac:<subnet>``
    hash ``mac -> ip``: the address each client last held, offered to it again when free.

Every step of an exchange is one Lua script run atomically by Redis, so two DHCP processes on
one Redis never hand one address to two clients. :meth:`LeaseStore.run` sends a batch of steps
(one per packet in a worker's batch) in one round trip.

Acknowledged leases and a Redis crash: Redis persists with ``appendfsync everysec`` (up to a
second of writes can be lost when it is killed). The store keeps the leases it acknowledged in
the last :data:`JOURNAL_SECONDS` seconds and, after any Redis failure, writes them again (only
where Redis has nothing newer) before its next step, so a crash and restart loses no acknowledged
lease.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import time
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared.store import InventoryUnavailable, redis_errors

LEASE_PREFIX = "bootyard:lease:"
POOL_PREFIX = "bootyard:leases:pool:"
BYMAC_PREFIX = "bootyard:leases:mac:"
STATES = ("offered", "bound", "declined", "released")
JOURNAL_SECONDS = 10.0

_COMMON = """
local pool, bymac = KEYS[1], KEYS[2]
local subnet, mac, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local prefix = 'bootyard:lease:'
local function holder(ip)
  local v = redis.call('HMGET', prefix .. ip, 'mac', 'state', 'expires')
  return v[1], v[2], (tonumber(v[3]) or 0)
end
local function free_for_us(ip)
  local m, st, ex = holder(ip)
  if m == mac and st ~= 'declined' then return true end
  return (not m) or ex <= now
end
local function put(ip, state, expires, hostname)
  redis.call('HSET', prefix .. ip, 'mac', mac, 'state', state, 'expires', expires,
             'subnet', subnet, 'hostname', hostname)
  if redis.call('ZSCORE', pool, ip) then redis.call('ZADD', pool, expires, ip) end
  local old = redis.call('HGET', bymac, mac)
  if old and old ~= ip then
    local m, st = holder(old)
    if m == mac and (st == 'offered' or st == 'bound') then
      redis.call('HSET', prefix .. old, 'state', 'released', 'expires', now)
      if redis.call('ZSCORE', pool, old) then redis.call('ZADD', pool, now, old) end
    end
  end
  redis.call('HSET', bymac, mac, ip)
  return {'ok', ip, state, tostring(expires)}
end
local function conflict(ip)
  local m, st, ex = holder(ip)
  if m and m ~= mac and ex > now and (st == 'offered' or st == 'bound') then
    return {'conflict', ip, 'reserved address ' .. ip .. ' is leased to ' .. m}
  end
  return nil
end
"""

# ARGV: subnet, mac, now, hold_until, reserved ip or '', requested ip or '', hostname
OFFER = _COMMON + """
local hold, reserved, requested, hostname = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if reserved ~= '' then
  local c = conflict(reserved)
  if c then return c end
  local m, st, ex = holder(reserved)
  if m == mac and st == 'bound' and ex > now then return {'ok', reserved, 'bound', tostring(ex)} end
  return put(reserved, 'offered', hold, hostname)
end
local prev = redis.call('HGET', bymac, mac)
for _, ip in ipairs({prev or '', requested}) do
  if ip ~= '' and redis.call('ZSCORE', pool, ip) then
    local m, st, ex = holder(ip)
    if m == mac and st == 'bound' and ex > now then return {'ok', ip, 'bound', tostring(ex)} end
    if free_for_us(ip) then return put(ip, 'offered', hold, hostname) end
  end
end
local found = redis.call('ZRANGEBYSCORE', pool, '-inf', now, 'LIMIT', 0, 1)
if #found == 0 then return {'exhausted', '', 'no free address in subnet ' .. subnet} end
local ip = found[1]
local m = holder(ip)
if m and m ~= mac and redis.call('HGET', bymac, m) == ip then redis.call('HDEL', bymac, m) end
return put(ip, 'offered', hold, hostname)
"""

# ARGV: subnet, mac, now, expires, reserved ip or '', requested ip, hostname
REQUEST = _COMMON + """
local expires, reserved, ip, hostname = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if reserved ~= '' then
  if ip ~= reserved then return {'nak', ip, 'this client has the reserved address ' .. reserved} end
  local c = conflict(ip)
  if c then return c end
  return put(ip, 'bound', expires, hostname)
end
if not redis.call('ZSCORE', pool, ip) then
  return {'nak', ip, ip .. ' is not in a pool of subnet ' .. subnet}
end
if free_for_us(ip) then
  local m = holder(ip)
  if m and m ~= mac and redis.call('HGET', bymac, m) == ip then redis.call('HDEL', bymac, m) end
  return put(ip, 'bound', expires, hostname)
end
return {'nak', ip, ip .. ' is leased to another client'}
"""

# ARGV: subnet, mac, now, ip, only_offered ('1' or '0')
RELEASE = _COMMON + """
local ip, only_offered = ARGV[4], ARGV[5] == '1'
local m, st = holder(ip)
if m ~= mac then return {'ignored', ip, 'not leased to this client'} end
if st ~= 'bound' and st ~= 'offered' then return {'ignored', ip, 'lease is ' .. tostring(st)} end
if only_offered and st ~= 'offered' then return {'ignored', ip, 'lease is bound'} end
redis.call('HSET', prefix .. ip, 'state', 'released', 'expires', now)
if redis.call('ZSCORE', pool, ip) then redis.call('ZADD', pool, now, ip) end
return {'ok', ip, 'released', tostring(now)}
"""

# ARGV: subnet, mac, now, ip, quarantine_until
DECLINE = _COMMON + """
local ip, untl = ARGV[4], ARGV[5]
local m = holder(ip)
if m ~= mac then return {'ignored', ip, 'not leased to this client'} end
redis.call('HSET', prefix .. ip, 'state', 'declined', 'expires', untl)
if redis.call('ZSCORE', pool, ip) then redis.call('ZADD', pool, untl, ip) end
if redis.call('HGET', bymac, mac) == ip then redis.call('HDEL', bymac, mac) end
return {'ok', ip, 'declined', untl}
"""

# Journal replay after a Redis failure. ARGV: subnet, mac, now, ip, state, expires, hostname
RESTORE = _COMMON + """
local ip, state, expires, hostname = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local m, st, ex = holder(ip)
if m == mac and ex >= expires then return {'ignored', ip, 'already recorded'} end
if m and m ~= mac and ex > now then return {'conflict', ip, 'now leased to ' .. m} end
return put(ip, state, expires, hostname)
"""

SCRIPTS = {"offer": OFFER, "request": REQUEST, "release": RELEASE, "decline": DECLINE,
           "restore": RESTORE}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A lease step's result: ``kind`` is ok, nak, conflict, exhausted or ignored."""

    kind: str
    ip: str = ""
    state: str = ""  # for ok: the lease state now (offered, bound, released, declined)
    expires: int = 0
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    ip: str
    mac: str
    state: str
    expires: int
    subnet: str
    hostname: str

    def current(self, now: float | None = None) -> bool:
        return self.state == "bound" and self.expires > (time.time() if now is None else now)


@dataclasses.dataclass(frozen=True)
class Step:
    script: str
    subnet: str
    mac: str
    args: tuple[str, ...]
    journal: bool = False  # remember an acknowledged bind for replay after a Redis failure


def _record(ip: str, raw: dict[str, str]) -> LeaseRecord | None:
    if not raw or "mac" not in raw:
        return None
    try:
        expires = int(raw.get("expires", "0"))
    except ValueError:
        expires = 0
    return LeaseRecord(ip, raw.get("mac", ""), raw.get("state", ""), expires,
                       raw.get("subnet", ""), raw.get("hostname", ""))


def connect(url: str, timeout: float = 2.0) -> aioredis.Redis:
    """A client for lease steps: no silent retries and no idle health checks, so a Redis restart
    surfaces as an error on the next step (and the journal is replayed before any new step)."""
    return aioredis.Redis.from_url(
        url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0), health_check_interval=0)


async def lookup_ip(client, ip: str) -> LeaseRecord | None:
    """The lease record of ``ip`` (current or not: check ``.current()``), None if none.

    Raises InventoryUnavailable when Redis cannot be reached. Used by TFTP and HTTP to learn
    which MAC holds an address."""
    with redis_errors("leases"):
        raw = await client.hgetall(LEASE_PREFIX + ip)
    return _record(ip, raw)


class LeaseStore:
    """Lease steps for the DHCP service. Build steps with the ``*_step`` methods, send a batch
    with :meth:`run` (one round trip)."""

    def __init__(self, client, *, offer_hold: int = 30, quarantine: int = 600) -> None:
        self.redis = client
        self.offer_hold = offer_hold
        self.quarantine = quarantine
        self._sha: dict[str, str] = {}
        self._journal: collections.deque[tuple[float, Step]] = collections.deque()
        self._replay: list[Step] = []
        self.failed = False

    # -- steps ---------------------------------------------------------------------------------
    def offer_step(self, subnet: str, mac: str, *, reserved: str | None, requested: str | None,
                   hostname: str, now: int) -> Step:
        return Step("offer", subnet, mac, (str(now), str(now + self.offer_hold),
                                           reserved or "", requested or "", hostname))

    def request_step(self, subnet: str, mac: str, ip: str, *, reserved: str | None,
                     hostname: str, lease_time: int, now: int) -> Step:
        return Step("request", subnet, mac, (str(now), str(now + lease_time), reserved or "",
                                             ip, hostname), journal=True)

    def release_step(self, subnet: str, mac: str, ip: str, *, now: int,
                     only_offered: bool = False) -> Step:
        return Step("release", subnet, mac, (str(now), ip, "1" if only_offered else "0"))

    def decline_step(self, subnet: str, mac: str, ip: str, *, now: int) -> Step:
        return Step("decline", subnet, mac, (str(now), ip, str(now + self.quarantine)))

    # -- running -------------------------------------------------------------------------------
    async def _load(self) -> None:
        for name, body in SCRIPTS.items():
            self._sha[name] = await self.redis.script_load(body)

    def _queue(self, pipe, step: Step) -> None:
        pipe.evalsha(self._sha[step.script], 2, POOL_PREFIX + step.subnet,
                     BYMAC_PREFIX + step.subnet, step.subnet, step.mac, *step.args)

    async def run(self, steps: Sequence[Step]) -> list[Outcome]:
        """Run ``steps`` in one pipeline; raise InventoryUnavailable if Redis fails."""
        try:
            with redis_errors("leases"):
                if not self._sha:
                    await self._load()
                if self._replay:
                    await self._run_replay()
                results = await self._execute(steps)
        except InventoryUnavailable:
            self._fail()
            raise
        self.failed = False
        outcomes = [self._outcome(r) for r in results]
        now = time.monotonic()
        for step, outcome in zip(steps, outcomes):
            if step.journal and outcome.kind == "ok":
                self._journal.append((now, dataclasses.replace(step, args=(
                    step.args[0], outcome.ip, outcome.state, str(outcome.expires), step.args[4]))))
        while self._journal and self._journal[0][0] < now - JOURNAL_SECONDS:
            self._journal.popleft()
        return outcomes

    async def _execute(self, steps: Sequence[Step]) -> list:
        pipe = self.redis.pipeline(transaction=False)
        for step in steps:
            self._queue(pipe, step)
        results = await pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(results) if isinstance(r, redis_exceptions.NoScriptError)]
        if missing:  # Redis restarted and lost its script cache: load and run those again
            await self._load()
            pipe = self.redis.pipeline(transaction=False)
            for i in missing:
                self._queue(pipe, steps[i])
            for i, value in zip(missing, await pipe.execute(raise_on_error=False)):
                results[i] = value
        for r in results:
            if isinstance(r, Exception):
                raise r if isinstance(r, redis_exceptions.RedisError) else \
                    redis_exceptions.ResponseError(str(r))
        return results

    def _fail(self) -> None:
        if not self.failed:
            self.failed = True
            self._replay = [step for _, step in self._journal]
            self._sha = {}

    async def _run_replay(self) -> None:
        steps = [Step("restore", s.subnet, s.mac, (str(int(time.time())),) + s.args[1:])
                 for s in self._replay]
        await self._execute(steps)
        self._replay = []

    @staticmethod
    def _outcome(result) -> Outcome:
        kind = result[0]
        if kind == "ok":
            return Outcome("ok", result[1], result[2], int(float(result[3])))
        return Outcome(kind, result[1] if len(result) > 1 else "",
                       reason=result[2] if len(result) > 2 else "")

    # -- one-step helpers (tests, CLI) ---------------------------------------------------------
    async def step(self, step: Step) -> Outcome:
        return (await self.run([step]))[0]

    # -- pools ---------------------------------------------------------------------------------
    async def sync_pool(self, subnet: str, ranges: Iterable[tuple[str, str]],
                        reserved: Iterable[str] = ()) -> int:
        """Make the pool of ``subnet`` hold exactly the range addresses that are not reserved;
        new ones are free now, existing ones keep their score. Returns the pool size."""
        wanted: set[str] = set()
        for first, last in ranges:
            start, end = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
            wanted.update(str(ipaddress.IPv4Address(n)) for n in range(start, end + 1))
        wanted -= set(reserved)
        key = POOL_PREFIX + subnet
        with redis_errors("leases"):
            present = set(await self.redis.zrange(key, 0, -1))
            new = sorted(wanted - present)
            gone = present - wanted
            scores = {}
            if new:  # an address with a lease record (a pool rebuilt after loss) keeps it
                pipe = self.redis.pipeline(transaction=False)
                for ip in new:
                    pipe.hmget(LEASE_PREFIX + ip, "state", "expires")
                for ip, (state, expires) in zip(new, await pipe.execute()):
                    held = state in ("offered", "bound", "declined") and (expires or "").isdigit()
                    scores[ip] = int(expires) if held else 0
            pipe = self.redis.pipeline(transaction=True)
            if new:
                pipe.zadd(key, scores, nx=True)
            if gone:
                pipe.zrem(key, *gone)
            if new or gone:
                await pipe.execute()
        return len(wanted)

    async def pool_usage(self, subnet: str, now: int | None = None) -> tuple[int, int]:
        """(addresses in the pool, addresses held: offered, bound or quarantined)."""
        now = int(time.time()) if now is None else now
        key = POOL_PREFIX + subnet
        with redis_errors("leases"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.zcard(key)
            pipe.zcount(key, f"({now}", "+inf")
            size, used = await pipe.execute()
        return int(size), int(used)

    async def expired_since(self, subnet: str, since: int, now: int) -> list[LeaseRecord]:
        """Bound leases of ``subnet`` whose expiry fell in (since, now] (for expire events)."""
        with redis_errors("leases"):
            ips = await self.redis.zrangebyscore(POOL_PREFIX + subnet, f"({since}", now)
            if not ips:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for ip in ips:
                pipe.hgetall(LEASE_PREFIX + ip)
            raws = await pipe.execute()
        out = []
        for ip, raw in zip(ips, raws):
            rec = _record(ip, raw)
            if rec is not None and rec.state == "bound" and since < rec.expires <= now:
                out.append(rec)
        return out


async def all_leases(client) -> list[LeaseRecord]:
    """Every lease record (any state), sorted by address."""
    with redis_errors("leases"):
        keys = [k async for k in client.scan_iter(match=LEASE_PREFIX + "*", count=1000)]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        raws = await pipe.execute() if keys else []
    records = [_record(k[len(LEASE_PREFIX):], raw) for k, raw in zip(keys, raws)]
    good = [r for r in records if r is not None]

    def sort_key(rec: LeaseRecord):
        try:
            return (0, int(ipaddress.IPv4Address(rec.ip)))
        except ValueError:
            return (1, 0)
    return sorted(good, key=sort_key)
