"""The DHCP lease steps as one Lua script (:data:`BATCH`), run atomically in Redis by
:class:`shared.leases.LeaseStore`: a batch of packed steps in (fields joined by :data:`SEP`,
steps by :data:`RS`), one packed result per step out, and each step's boot timeline event
appended to the event streams by the same script. Key prefixes and the event layout are passed
in from :mod:`shared.keys` and :mod:`shared.events` (no key shape is spelled here)."""

from __future__ import annotations

import hashlib

from shared import attempts, events, keys

SEP = events.SEP  # separates the fields of one packed step (never in MACs, IPs, names or URLs)
RS = events.RS  # separates the steps of a batch, and the results


# One script runs a whole batch of steps atomically. ARGV[1]: the batch's time (ts: its events'
# time, Unix seconds with milliseconds, one per batch) ended by RS, then the packed steps, each
# ended by RS:
#   op, subnet, mac, client, now, emit, interface, boot_file, boot_reason, op args...
# (a step holds no batch-wide value: the DHCP service packs it when it builds it)
# client: the client identity (services.dhcp.codec.client_identity()), which owns leases; mac:
# its chaddr, recorded for TFTP and HTTP, for events, and to recognise a reserved host (reserved
# by MAC).
# emit: '0' no event, '1' the global event stream only (a MAC not in the inventory: no stream of
# its own, shared/events.py), '2' the global stream and the host's.
# offer:   hold_until, reserved ip or '', requested ip or '', hostname, discover ('1': write the
#          DISCOVER's dhcp.discover event before the step's own, '0'), the client's arches
#          (option 93, comma-separated; '' without it: with emit '2', a DISCOVER with arches
#          may begin a new boot attempt, shared/attempts.py)
# request: expires, reserved ip or '', requested ip, hostname
# release: ip, only_offered ('1'/'0')
# decline: ip, quarantine_until
# restore: ip, state, expires, hostname (journal replay after a Redis failure; no event)
# Returns one string: per step "kind SEP ip SEP state SEP expires SEP reason RS" (one argument
# and one flat reply instead of a table per step: cheaper to pack and to parse in Python).
# With emit '1' or '2' the step's
# timeline event (dhcp.offer, dhcp.ack, dhcp.nak, dhcp.release, dhcp.decline, dhcp.ignored) is
# appended to the event streams in the same atomic step, with the fields of
# events.EVENT_FIELDS (the emitters are generated from it: _lua_emitters).
# Numbers given to redis.call are passed as text (nows, '0', the MAXLENs): Lua would format a
# number with sprintf for every call. An inventory host's
# events (emit '2') end with its boot attempt's id (field attempt: shared/attempts.py).
_HELPERS = """
local prefix = '%(lease_prefix)s'
local call  -- redis.call, set by each run: a function library cannot reach it while it loads
local results, nresults
local pool, bymac, subnet, mac, client, now, nows  -- nows: now as the step's text
local ts  -- the batch's time (its events'), set by each run
local att, ab  -- the step's boot attempt id (emit '2' only) or nil, and its bound/loader

local sub, match  -- string.sub, string.match: set by each run, as call
-- A step's fields are taken by one match of its op's pattern (picked by the op's first three
-- letters): the op's count of fields, then the position after the step's RS. One C call with
-- its captures instead of a find and a sub per field (docs/benchmarks.md, sixth round).
local step_pattern = {%(step_patterns)s}
-- the lease of ip: its client identity (its mac in a record from before identities were
-- kept), state, expiry and mac
local function holder(ip)
  local v = call('HMGET', prefix .. ip, 'client', 'mac', 'state', 'expires')
  return v[1] or v[2], v[3], (tonumber(v[4]) or 0), v[2]
end
local function free_for_us(c, st, ex)  -- holder(ip)'s answer
  if c == client and st ~= 'declined' then return true end
  return (not c) or ex <= now
end
-- a reserved address is the inventory host's, found by MAC: its lease under any identity of
-- that MAC (its firmware's, its installed system's) is its own
local function ours_by_mac(c, m) return c == client or (m ~= nil and m == mac) end
-- old: the client's address in bymac when the caller read it ('' for none), nil if not read;
-- pooled: the caller found ip in the pool in this step (a reserved address is not in it)
local function put(ip, state, expires, hostname, old, pooled)
  call('HSET', prefix .. ip, 'mac', mac, 'client', client, 'state', state,
             'expires', expires, 'subnet', subnet, 'hostname', hostname)
  if pooled then  -- (one argument less for the command and its AOF text than with XX)
    call('ZADD', pool, expires, ip)
  else
    call('ZADD', pool, 'XX', expires, ip)  -- XX: only an address of the pool
  end
  if old == nil then old = call('HGET', bymac, client) end
  if old and old ~= '' and old ~= ip then
    local c, st = holder(old)
    if c == client and (st == 'offered' or st == 'bound') then
      call('HSET', prefix .. old, 'state', 'released', 'expires', nows)
      call('ZADD', pool, 'XX', nows, old)
    end
  end
  if old ~= ip then call('HSET', bymac, client, ip) end  -- a REQUEST after our OFFER: same
  return {'ok', ip, state, expires, ''}  -- expires: the step's text
end
local function conflict(ip)
  local c, st, ex, m = holder(ip)
  if c and not ours_by_mac(c, m) and ex > now and (st == 'offered' or st == 'bound') then
    return {'conflict', ip, '', '0', 'reserved address ' .. ip .. ' is leased to ' .. c}
  end
  return nil
end
local function take_from(ip, c)  -- c: holder(ip)'s client
  if c and c ~= client and call('HGET', bymac, c) == ip then call('HDEL', bymac, c) end
end

local function offer(a)
  local hold, reserved, requested, hostname = a[10], a[11], a[12], a[13]
  if reserved ~= '' then
    local c = conflict(reserved)
    if c then return c end
    local h, st, ex, m = holder(reserved)
    if ours_by_mac(h, m) and st == 'bound' and ex > now then
      return {'ok', reserved, 'bound', tostring(ex), ''}
    end
    return put(reserved, 'offered', hold, hostname)
  end
  local prev = call('HGET', bymac, client)
  local candidates = prev or ''  -- the client's last address, then the one it asks for
  for pass = 1, 2 do
    local ip = candidates
    if pass == 2 then ip = requested end
    if ip ~= '' and call('ZSCORE', pool, ip) then
      local c, st, ex = holder(ip)
      if c == client and st == 'bound' and ex > now then
        return {'ok', ip, 'bound', tostring(ex), ''}
      end
      if free_for_us(c, st, ex) then
        take_from(ip, c)
        return put(ip, 'offered', hold, hostname, prev or '', true)
      end
    end
  end
  local found = call('ZRANGEBYSCORE', pool, '-inf', nows, 'LIMIT', '0', '1')
  if #found == 0 then return {'exhausted', '', '', '0', 'no free address in subnet ' .. subnet} end
  take_from(found[1], (holder(found[1])))
  return put(found[1], 'offered', hold, hostname, prev or '', true)
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
  if not call('ZSCORE', pool, ip) then
    return {'nak', ip, '', '0', ip .. ' is not in a pool of subnet ' .. subnet}
  end
  local v = call('HMGET', prefix .. ip, 'client', 'mac', 'state', 'expires', 'subnet', 'hostname')
  local c, st, ex = v[1] or v[2], v[3], (tonumber(v[4]) or 0)
  if c == client and (st == 'bound' or (st == 'offered' and ex > now)) then
    -- a renewal, or the answer to our offer still held: put() recorded ip in bymac then;
    -- the record as put() would write it but for state and expiry: only those two written
    if v[1] == client and v[2] == mac and v[5] == subnet and v[6] == hostname then
      call('HSET', prefix .. ip, 'state', 'bound', 'expires', expires)
      call('ZADD', pool, expires, ip)  -- in the pool: ZSCORE above
      return {'ok', ip, 'bound', tostring(expires), ''}
    end
    return put(ip, 'bound', expires, hostname, ip, true)
  end
  if free_for_us(c, st, ex) then
    take_from(ip, c)
    return put(ip, 'bound', expires, hostname, nil, true)
  end
  return {'nak', ip, '', '0', ip .. ' is leased to another client'}
end

local function release(a)
  local ip, only_offered = a[10], a[11] == '1'
  local c, st = holder(ip)
  if c ~= client then return {'ignored', ip, '', '0', 'not leased to this client'} end
  if st ~= 'bound' and st ~= 'offered' then
    return {'ignored', ip, '', '0', 'lease is ' .. tostring(st)}
  end
  if only_offered and st ~= 'offered' then return {'ignored', ip, '', '0', 'lease is bound'} end
  call('HSET', prefix .. ip, 'state', 'released', 'expires', nows)
  call('ZADD', pool, 'XX', nows, ip)
  return {'ok', ip, 'released', nows, ''}
end

local function decline(a)
  local ip, untl = a[10], a[11]
  local c, st, ex = holder(ip)
  if c ~= client then return {'ignored', ip, '', '0', 'not leased to this client'} end
  -- only an address the client holds now: not one it released (or declined) already, nor one
  -- whose lease ran out, which may be handed to another client
  if st ~= 'bound' and st ~= 'offered' then
    return {'ignored', ip, '', '0', 'lease is ' .. tostring(st)}
  end
  if ex <= now then return {'ignored', ip, '', '0', 'lease expired'} end
  call('HSET', prefix .. ip, 'state', 'declined', 'expires', untl)
  call('ZADD', pool, 'XX', untl, ip)
  if call('HGET', bymac, client) == ip then call('HDEL', bymac, client) end
  return {'ok', ip, 'declined', untl, ''}
end

local function restore(a)
  local ip, state, expires, hostname = a[10], a[11], a[12], a[13]
  local c, st, ex = holder(ip)
  if c == client and ex >= tonumber(expires) then
    return {'ignored', ip, '', '0', 'already recorded'}
  end
  if c and c ~= client and ex > now then return {'conflict', ip, '', '0', 'now leased to ' .. c} end
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

-- The global stream is trimmed (MAXLEN ~) by the first event of each batch only: the stream
-- stays near its cap (at most a batch's events over it until the next batch), and the other
-- XADDs skip the trim, its rewrite for the AOF and four arguments (docs/benchmarks.md, DHCP,
-- eighth round). trimmed: set false by each run.
local trimmed
local function append(own_stream, ...)  -- the event's field/value pairs
  if trimmed then
    call('XADD', '%(global)s', '*', ...)
  else
    call('XADD', '%(global)s', 'MAXLEN', '~', '%(global_max)d', '*', ...)
    trimmed = true
  end
  if own_stream then
    call('XADD', '%(host_prefix)s' .. mac, 'MAXLEN', '~', '%(host_max)d', '*', ...)
  end
end
%(attempts)s

%(emitters)s
"""

# What each run does (ARGV[1]: the packed steps); the helpers above are made once per library
# load (LIBRARY) instead of once per call (BATCH run as a script).
_RUN = """
call, sub, match = redis.call, string.sub, string.match
results, nresults, trimmed = {}, 0, false
local batch, size = ARGV[1], #ARGV[1]
local pos = string.find(batch, '\\30', 1, true)
if not pos then
  return redis.error_reply('bootyard lease batch without its time (a bootyard version mismatch?)')
end
ts, pos = sub(batch, 1, pos - 1), pos + 1
local last_nows, last_subnet  -- a batch's steps share their now and mostly their subnet
while pos <= size do
  local a = {match(batch, step_pattern[sub(batch, pos, pos + 2)] or '^\\30', pos)}
  if not a[2] then
    return redis.error_reply('bootyard lease step at byte ' .. pos .. ' is not an op with its '
                             .. 'fields (a bootyard version mismatch?)')
  end
  pos = a[#a]
  subnet, mac, client, nows = a[2], a[3], a[4], a[5]
  if nows ~= last_nows then now, last_nows = tonumber(nows), nows end
  if subnet ~= last_subnet then
    pool, bymac = '%(pool_prefix)s' .. subnet, '%(by_client_prefix)s' .. subnet
    last_subnet = subnet
  end
  att, ab = nil, nil
  if a[6] == '2' then  -- an inventory host's step: its boot attempt
    if a[1] == 'offer' and a[15] ~= '' then
      att = attempt_of(mac, 'discover', ts, now, a[8], a[9])
    else
      att, ab = attempt_read(mac)
    end
  end
  if a[6] ~= '0' and a[1] == 'offer' and a[14] == '1' then
    -- the DISCOVER before the OFFER that answers it: one batch time, stream order is time order
    emitters['dhcp.discover'](a, nil, a[6] == '2')
  end
  local r = ops[a[1]](a)
  if att and a[1] == 'request' and r[1] == 'ok' then attempt_acked(mac, now, a[8], a[9], ab) end
  if a[6] ~= '0' then
    local kinds = event_kind[a[1]]
    local kind = kinds and kinds[r[1]]
    if kind then emitters[kind](a, r, a[6] == '2') end
  end
  nresults = nresults + 1
  results[nresults] = r[1] .. '\\31' .. r[2] .. '\\31' .. r[3] .. '\\31' .. r[4] .. '\\31' .. r[5]
                      .. '\\30'
end
return table.concat(results)
"""

# Where the lease script finds each event field's value (a: the packed step, r: its result).
_LUA_HEADER = {"ts": "ts", "service": "'dhcp'", "mac": "mac"}  # and kind: the kind
_LUA_VALUE = {"arch": "a[15]", "ip": "r[2]", "subnet": "subnet", "interface": "a[7]",
              "boot_file": "a[8]", "boot_reason": "a[9]", "result": "r[1]", "reason": "r[5]", "detail": "r[5]"}
_LUA_VALUE_OF = {("dhcp.ignored", "reason"): "ignored_reason[r[1]]"}
LEASE_EVENT_KINDS = ("dhcp.discover", "dhcp.offer", "dhcp.ack", "dhcp.nak", "dhcp.ignored",
                     "dhcp.release", "dhcp.decline")  # the events the lease script writes


def _lua_emitters() -> str:
    """One Lua function per event kind the script writes, laid out by events.EVENT_FIELDS. The
    common shapes (the kind's fields present up to some point, none after it: an offer with or
    without a boot file) append without building a table; any other shape builds one."""
    out = ["local emitters = {}"]
    for kind in LEASE_EVENT_KINDS:
        header = ", ".join(f"'{name}', {_LUA_HEADER.get(name, repr(kind))}"
                           for name in events.header("dhcp", kind))
        names = events.EVENT_FIELDS[kind]
        n = len(names)
        values = ", ".join(_LUA_VALUE_OF.get((kind, name), _LUA_VALUE[name]) for name in names)
        out += [f"emitters['{kind}'] = function(a, r, own)",
                f"  local {', '.join(f'v{i}' for i in range(n))} = {values}",
                f"  local {', '.join(f'p{i}' for i in range(n))} = "
                + ", ".join(f"(v{i} or '') ~= ''" for i in range(n))]
        for k in range(n, 0, -1):
            shape = " and ".join([f"p{i}" for i in range(k)] + [f"not p{i}" for i in range(k, n)])
            pairs = ", ".join(f"'{names[i]}', v{i}" for i in range(k))
            out.append(f"  if {shape} then")
            out.append(f"    if att then append(own, {header}, {pairs}, 'attempt', att)")
            out.append(f"    else append(own, {header}, {pairs}) end")
            out.append("    return")
            out.append("  end")
        out.append(f"  local e = {{{header}}}")
        out += [f"  if p{i} then e[#e + 1] = '{names[i]}'; e[#e + 1] = v{i} end"
                for i in range(n)]
        out += ["  if att then e[#e + 1] = 'attempt'; e[#e + 1] = att end",
                "  append(own, unpack(e))", "end"]
    return "\n".join(out)


def _step_pattern(fields: int) -> str:
    """The Lua pattern of a packed step of ``fields`` fields from its start, capturing each
    field and the position after the step's RS."""
    return "'^" + "([^\\31]*)\\31" * (fields - 1) + "([^\\31\\30]*)\\30()'"


# The fields of each op's step (the header of nine, then the op's arguments: the comment above
# _HELPERS and LeaseStore's *_step methods). The ops' first three letters differ.
STEP_FIELDS = {"offer": 15, "request": 13, "release": 11, "decline": 11, "restore": 13}

_VALUES = {
    "step_patterns": ", ".join(f"{op[:3]} = {_step_pattern(n)}" for op, n in STEP_FIELDS.items()),
    "lease_prefix": keys.LEASE_PREFIX, "pool_prefix": keys.POOL_PREFIX,
    "by_client_prefix": keys.BY_CLIENT_PREFIX, "global": events.GLOBAL_STREAM,
    "global_max": events.GLOBAL_MAXLEN, "host_prefix": keys.HOST_EVENTS_PREFIX,
    "host_max": events.HOST_MAXLEN, "emitters": _lua_emitters(),
    "attempts": attempts.LUA}
_HELPERS_TEXT, _RUN_TEXT = _HELPERS % _VALUES, _RUN % _VALUES

# The lease steps as one script (EVAL): the helpers, then the run.
BATCH = _HELPERS_TEXT + _RUN_TEXT

# The same as a Redis function library (Redis 7 FUNCTION LOAD, called with FCALL): Redis runs
# the library's code once when it is loaded, so the helpers (some forty closures and tables,
# ~51,000 of Redis's instructions per call as a script: docs/benchmarks.md) are made once, not
# once per batch. Its name carries a hash of its text: two bootyard versions sharing one Redis
# each call their own (an older version's library stays in Redis, unused, until deleted with
# FUNCTION DELETE).
FUNCTION = "bootyard_leases_" + hashlib.sha1(BATCH.encode()).hexdigest()[:16]
LIBRARY = (f"#!lua name={FUNCTION}\n{_HELPERS_TEXT}\n"
           f"redis.register_function('{FUNCTION}', function(_, ARGV)\n{_RUN_TEXT}\nend)\n")
