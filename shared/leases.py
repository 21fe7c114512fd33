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

Every step of an exchange (offer, request, release, decline) runs inside one Lua script, atomically
in Redis, so two DHCP processes on one Redis never hand one address to two clients.
:meth:`LeaseStore.run` sends a whole batch of steps (one per packet of a worker's batch) as one
script call: one command and one round trip per batch, and the step's boot timeline event is
appended to the event streams by the same script.

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

from shared import events
from shared.store import InventoryUnavailable, redis_errors

LEASE_PREFIX = "bootyard:lease:"
POOL_PREFIX = "bootyard:leases:pool:"
BYMAC_PREFIX = "bootyard:leases:mac:"
STATES = ("offered", "bound", "declined", "released")
JOURNAL_SECONDS = 10.0

SEP = "\x1f"  # separates the fields of one packed step (never in MACs, IPs, names or URLs)
RS = "\x1e"  # separates the steps of a batch, and the results

# One script runs a whole batch of steps atomically. ARGV[1]: the packed steps, each ended by RS:
#   op, subnet, mac, now, emit, ts, interface, boot_file, boot_reason, op args...
# emit: '0' no event, '1' the global event stream only (a MAC not in the inventory: no stream of
# its own, shared/events.py), '2' the global stream and the host's.
# offer:   hold_until, reserved ip or '', requested ip or '', hostname
# request: expires, reserved ip or '', requested ip, hostname
# release: ip, only_offered ('1'/'0')
# decline: ip, quarantine_until
# restore: ip, state, expires, hostname (journal replay after a Redis failure; no event)
# Returns one string: per step "kind SEP ip SEP state SEP expires SEP reason RS" (one argument
# and one flat reply instead of a table per step: cheaper to pack and to parse in Python).
# With emit '1' or '2' the step's
# timeline event (dhcp.offer, dhcp.ack, dhcp.nak, dhcp.release, dhcp.decline, dhcp.ignored) is
# appended to the event streams in the same atomic step.
BATCH = """
local prefix = 'bootyard:lease:'
local results = {}
local pool, bymac, subnet, mac, now

local function split(s)
  local t = {}
  for f in string.gmatch(s .. '\\31', '([^\\31]*)\\31') do t[#t + 1] = f end
  return t
end
local function holder(ip)
  local v = redis.call('HMGET', prefix .. ip, 'mac', 'state', 'expires')
  return v[1], v[2], (tonumber(v[3]) or 0)
end
local function free_for_us(m, st, ex)  -- holder(ip)'s answer
  if m == mac and st ~= 'declined' then return true end
  return (not m) or ex <= now
end
-- old: the client's address in bymac when the caller read it ('' for none), nil if not read
local function put(ip, state, expires, hostname, old)
  redis.call('HSET', prefix .. ip, 'mac', mac, 'state', state, 'expires', expires,
             'subnet', subnet, 'hostname', hostname)
  redis.call('ZADD', pool, 'XX', expires, ip)  -- XX: only an address of the pool
  if old == nil then old = redis.call('HGET', bymac, mac) end
  if old and old ~= '' and old ~= ip then
    local m, st = holder(old)
    if m == mac and (st == 'offered' or st == 'bound') then
      redis.call('HSET', prefix .. old, 'state', 'released', 'expires', now)
      redis.call('ZADD', pool, 'XX', now, old)
    end
  end
  if old ~= ip then redis.call('HSET', bymac, mac, ip) end  -- a REQUEST after our OFFER: same
  return {'ok', ip, state, tostring(expires), ''}
end
local function conflict(ip)
  local m, st, ex = holder(ip)
  if m and m ~= mac and ex > now and (st == 'offered' or st == 'bound') then
    return {'conflict', ip, '', '0', 'reserved address ' .. ip .. ' is leased to ' .. m}
  end
  return nil
end
local function take_from(ip, m)  -- m: holder(ip)'s mac
  if m and m ~= mac and redis.call('HGET', bymac, m) == ip then redis.call('HDEL', bymac, m) end
end

local function offer(a)
  local hold, reserved, requested, hostname = a[10], a[11], a[12], a[13]
  if reserved ~= '' then
    local c = conflict(reserved)
    if c then return c end
    local m, st, ex = holder(reserved)
    if m == mac and st == 'bound' and ex > now then
      return {'ok', reserved, 'bound', tostring(ex), ''}
    end
    return put(reserved, 'offered', hold, hostname)
  end
  local prev = redis.call('HGET', bymac, mac)
  for _, ip in ipairs({prev or '', requested}) do
    if ip ~= '' and redis.call('ZSCORE', pool, ip) then
      local m, st, ex = holder(ip)
      if m == mac and st == 'bound' and ex > now then return {'ok', ip, 'bound', tostring(ex), ''} end
      if free_for_us(m, st, ex) then
        take_from(ip, m)
        return put(ip, 'offered', hold, hostname, prev or '')
      end
    end
  end
  local found = redis.call('ZRANGEBYSCORE', pool, '-inf', now, 'LIMIT', 0, 1)
  if #found == 0 then return {'exhausted', '', '', '0', 'no free address in subnet ' .. subnet} end
  take_from(found[1], (holder(found[1])))
  return put(found[1], 'offered', hold, hostname, prev or '')
end

local function request(a)
  local expires, reserved, ip, hostname = a[10], a[11], a[12], a[13]
  if reserved ~= '' then
    if ip ~= reserved then
      return {'nak', ip, '', '0', 'this client has the reserved address ' .. reserved}
    end
    local c = conflict(ip)
    if c then return c end
    return put(ip, 'bound', expires, hostname)
  end
  -- always against this subnet's pool, even for the answer to our own offer: the address may
  -- have left the pool (a range removed, a reservation added) during the hold, or the offer
  -- was made in another subnet (a client heard through a relay and directly)
  if not redis.call('ZSCORE', pool, ip) then
    return {'nak', ip, '', '0', ip .. ' is not in a pool of subnet ' .. subnet}
  end
  local m, st, ex = holder(ip)
  if m == mac and (st == 'bound' or (st == 'offered' and ex > now)) then
    -- a renewal, or the answer to our offer still held: put() recorded ip in bymac then
    return put(ip, 'bound', expires, hostname, ip)
  end
  if free_for_us(m, st, ex) then
    take_from(ip, m)
    return put(ip, 'bound', expires, hostname)
  end
  return {'nak', ip, '', '0', ip .. ' is leased to another client'}
end

local function release(a)
  local ip, only_offered = a[10], a[11] == '1'
  local m, st = holder(ip)
  if m ~= mac then return {'ignored', ip, '', '0', 'not leased to this client'} end
  if st ~= 'bound' and st ~= 'offered' then
    return {'ignored', ip, '', '0', 'lease is ' .. tostring(st)}
  end
  if only_offered and st ~= 'offered' then return {'ignored', ip, '', '0', 'lease is bound'} end
  redis.call('HSET', prefix .. ip, 'state', 'released', 'expires', now)
  redis.call('ZADD', pool, 'XX', now, ip)
  return {'ok', ip, 'released', tostring(now), ''}
end

local function decline(a)
  local ip, untl = a[10], a[11]
  local m = holder(ip)
  if m ~= mac then return {'ignored', ip, '', '0', 'not leased to this client'} end
  redis.call('HSET', prefix .. ip, 'state', 'declined', 'expires', untl)
  redis.call('ZADD', pool, 'XX', untl, ip)
  if redis.call('HGET', bymac, mac) == ip then redis.call('HDEL', bymac, mac) end
  return {'ok', ip, 'declined', untl, ''}
end

local function restore(a)
  local ip, state, expires, hostname = a[10], a[11], tonumber(a[12]), a[13]
  local m, st, ex = holder(ip)
  if m == mac and ex >= expires then return {'ignored', ip, '', '0', 'already recorded'} end
  if m and m ~= mac and ex > now then return {'conflict', ip, '', '0', 'now leased to ' .. m} end
  return put(ip, state, expires, hostname)
end

local ops = {offer = offer, request = request, release = release, decline = decline,
             restore = restore}
local event_kind = {
  offer = {ok = 'dhcp.offer', exhausted = 'dhcp.ignored', conflict = 'dhcp.ignored'},
  request = {ok = 'dhcp.ack', nak = 'dhcp.nak', conflict = 'dhcp.ignored'},
  release = {ok = 'dhcp.release', ignored = 'dhcp.release'},
  decline = {ok = 'dhcp.decline', ignored = 'dhcp.decline'},
}
local ignored_reason = {exhausted = 'pool_exhausted', conflict = 'lease_conflict'}

local function append(own_stream, ...)  -- the event's field/value pairs
  redis.call('XADD', '%(global)s', 'MAXLEN', '~', %(global_max)d, '*', ...)
  if own_stream then
    redis.call('XADD', '%(host_prefix)s' .. mac, 'MAXLEN', '~', %(host_max)d, '*', ...)
  end
end

local function emit(a, r, own_stream)
  local kinds = event_kind[a[1]]
  local kind = kinds and kinds[r[1]]
  if not kind then return end
  if r[1] == 'ok' and a[7] ~= '' and (a[1] == 'offer' or a[1] == 'request') then
    -- the common case, an offer or an ack: no table to build
    if a[9] ~= '' then
      append(own_stream, 'ts', a[6], 'service', 'dhcp', 'kind', kind, 'mac', mac, 'ip', r[2],
             'subnet', subnet, 'interface', a[7], 'boot_file', a[8], 'boot_reason', a[9])
    else
      append(own_stream, 'ts', a[6], 'service', 'dhcp', 'kind', kind, 'mac', mac, 'ip', r[2],
             'subnet', subnet, 'interface', a[7])
    end
    return
  end
  local e = {'ts', a[6], 'service', 'dhcp', 'kind', kind, 'mac', mac}
  local function add(k, v) if v and v ~= '' then e[#e + 1] = k; e[#e + 1] = v end end
  add('ip', r[2])
  add('subnet', subnet)
  add('interface', a[7])
  if kind == 'dhcp.offer' or kind == 'dhcp.ack' then
    add('boot_file', a[8])
    add('boot_reason', a[9])
  elseif kind == 'dhcp.ignored' then
    add('reason', ignored_reason[r[1]])
    add('detail', r[5])
  elseif kind == 'dhcp.release' or kind == 'dhcp.decline' then
    add('result', r[1])
    add('reason', r[5])
  else
    add('reason', r[5])
  end
  append(own_stream, unpack(e))
end

for packed in string.gmatch(ARGV[1], '([^\\30]*)\\30') do
  local a = split(packed)
  subnet, mac, now = a[2], a[3], tonumber(a[4])
  pool, bymac = 'bootyard:leases:pool:' .. subnet, 'bootyard:leases:mac:' .. subnet
  local r = ops[a[1]](a)
  if a[5] ~= '0' then emit(a, r, a[5] == '2') end
  results[#results + 1] = table.concat(r, '\\31')
  results[#results + 1] = '\\30'
end
return table.concat(results)
""" % {"global": events.GLOBAL_STREAM, "global_max": events.GLOBAL_MAXLEN,
       "host_prefix": events.host_stream(""), "host_max": events.HOST_MAXLEN}


# Outcome and Step are built per packet: slotted, not frozen (cheaper); treat them as immutable.
@dataclasses.dataclass(slots=True)
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


@dataclasses.dataclass(slots=True)
class Step:
    op: str  # offer, request, release, decline, restore
    subnet: str
    mac: str
    now: int
    args: tuple[str, ...]
    journal: bool = False  # remember an acknowledged bind for replay after a Redis failure
    # (interface, boot_file, boot_reason, known) to record; known: the MAC is an inventory
    # host, whose event also goes to its own stream
    event: tuple[str, str, str, bool] | None = None

    def packed(self, ts: str) -> str:
        """The step for the lease script; ``ts``: its event's time (one per batch)."""
        event = self.event
        if event is None:
            head = (self.op, self.subnet, self.mac, str(self.now), "0", "", "", "", "")
        else:
            head = (self.op, self.subnet, self.mac, str(self.now), "2" if event[3] else "1",
                    ts, event[0], event[1], event[2])
        fields = head + self.args
        text = SEP.join(fields)
        if text.count(SEP) != len(fields) - 1 or RS in text:  # a separator inside a field
            text = SEP.join(v.replace(SEP, "").replace(RS, "") for v in fields)
        return text


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
    with :meth:`run` (one command, one round trip, atomic in Redis)."""

    def __init__(self, client, *, offer_hold: int = 30, quarantine: int = 600) -> None:
        self.redis = client
        self.offer_hold = offer_hold
        self.quarantine = quarantine
        self._sha: str | None = None
        # (monotonic time, step, outcome) of recent acknowledged binds; replayed as restore
        # steps (built only then) after a Redis failure
        self._journal: collections.deque[tuple[float, Step, Outcome]] = collections.deque()
        self._replay: list[Step] = []
        self._idle: list = []  # connections of _evalsha with no call in flight
        self._open: set = set()
        self.failed = False

    # -- steps (``event``: (interface, boot_file, boot_reason, known), see Step) ---------------
    def offer_step(self, subnet: str, mac: str, *, reserved: str | None, requested: str | None,
                   hostname: str, now: int, event=None) -> Step:
        return Step("offer", subnet, mac, now, (str(now + self.offer_hold), reserved or "",
                                                requested or "", hostname), event=event)

    def request_step(self, subnet: str, mac: str, ip: str, *, reserved: str | None,
                     hostname: str, lease_time: int, now: int, event=None) -> Step:
        return Step("request", subnet, mac, now, (str(now + lease_time), reserved or "", ip,
                                                  hostname), journal=True, event=event)

    def release_step(self, subnet: str, mac: str, ip: str, *, now: int,
                     only_offered: bool = False, event=None) -> Step:
        return Step("release", subnet, mac, now, (ip, "1" if only_offered else "0"),
                    event=event)

    def decline_step(self, subnet: str, mac: str, ip: str, *, now: int, event=None) -> Step:
        return Step("decline", subnet, mac, now, (ip, str(now + self.quarantine)), event=event)

    # -- running -------------------------------------------------------------------------------
    async def run(self, steps: Sequence[Step]) -> list[Outcome]:
        """Run ``steps`` atomically in one round trip; raise InventoryUnavailable if Redis
        fails (then nothing of the batch may be assumed done)."""
        try:
            with redis_errors("leases"):
                if self._replay:
                    await self._execute([Step("restore", s.subnet, s.mac, int(time.time()),
                                              s.args) for s in self._replay])
                    self._replay = []
                results = await self._execute(steps)
        except InventoryUnavailable:
            # After a failure no kept connection is trusted, ours or the client's.
            await self.aclose()
            await self.redis.connection_pool.disconnect()
            self._fail()
            raise
        self.failed = False
        outcomes = []
        for kind, ip, state, expires, reason in results:
            try:
                seconds = int(expires)
            except ValueError:
                seconds = int(float(expires or 0))
            outcomes.append(Outcome(kind, ip, state, seconds, reason))
        now = time.monotonic()
        journal = self._journal
        for step, outcome in zip(steps, outcomes):
            if step.journal and outcome.kind == "ok":
                journal.append((now, step, outcome))
        while self._journal and self._journal[0][0] < now - JOURNAL_SECONDS:
            self._journal.popleft()
        return outcomes

    async def _execute(self, steps: Sequence[Step]) -> list:
        if not steps:
            return []
        ts = f"{time.time():.3f}"
        packed = RS.join([s.packed(ts) for s in steps]) + RS
        if self._sha is None:
            self._sha = await self._command("SCRIPT", "LOAD", BATCH)
        try:
            reply = await self._command("EVALSHA", self._sha, 0, packed)
        except redis_exceptions.NoScriptError:  # Redis restarted and lost its script cache
            self._sha = await self._command("SCRIPT", "LOAD", BATCH)
            reply = await self._command("EVALSHA", self._sha, 0, packed)
        results = [r.split(SEP) for r in reply.split(RS)[:-1]]
        if len(results) != len(steps):
            raise InventoryUnavailable(f"lease script answered {len(results)} results for "
                                       f"{len(steps)} steps (a bootyard version mismatch?)")
        return results

    async def _command(self, *args):
        """One command on a connection of our own (the client's pool, retry and observability
        layers cost more per call than a small batch's own work, docs/benchmarks.md). One
        connection per call in flight; one that fails in any way is closed, never reused."""
        conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.redis.connection_pool.make_connection()
            self._open.add(conn)
        try:
            await conn.send_command(*args)
            reply = await conn.read_response()
        except redis_exceptions.ResponseError:
            self._idle.append(conn)  # an error reply: the connection itself is fine
            raise
        except BaseException:
            self._open.discard(conn)
            await conn.disconnect()
            raise
        self._idle.append(conn)
        return reply

    async def aclose(self) -> None:
        """Close the connections :meth:`run` opened (the client is closed by its owner)."""
        for conn in list(self._open):
            await conn.disconnect()
        self._open.clear()
        self._idle.clear()

    def _fail(self) -> None:
        if not self.failed:
            self.failed = True
            self._replay = [Step("restore", step.subnet, step.mac, step.now, (
                outcome.ip, outcome.state, str(outcome.expires), step.args[3]))
                for _, step, outcome in self._journal]
            self._sha = None

    # -- one-step helper (tests, CLI) ----------------------------------------------------------
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
