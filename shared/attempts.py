"""Boot attempts decided where they begin: the DHCP service, when it sees the firmware's DISCOVER.

A boot attempt is one power-on-to-up (or to stuck) of a machine. Its id, ``<mac>@<start in ms>``
(the same shape :mod:`shared.bootstate` derives for events written without one), is kept per
inventory host in ``bootyard:attempt:<mac>`` (:func:`shared.keys.attempt`), a hash:

``id``
    the current attempt's id;
``bound``
    ``1`` once an ACK was sent in this attempt, else ``0``;
``loader``
    ``1`` when that ACK handed out a loader that does its own DHCP next (``undionly.kpxe``,
    ``ipxe.efi``, GRUB: any boot file but iPXE's script URL), else ``0``;
``acked``
    Unix time of that ACK.

Every event of an inventory host carries its current attempt id as the field ``attempt`` (the
last field), written in the same Redis step as the event: by the DHCP lease script
(:mod:`shared.lease_script`) for the events of its steps, and by :meth:`EventLog.flush
<shared.events.EventLog.flush>` for every other service's (one script per batch, as the
pipeline was: no extra round trip). Events of MACs the inventory does not know carry none (they
have no stream of their own, and no attempt key is made for them).

When does a DISCOVER begin a new attempt? A DISCOVER with a client architecture (option 93:
firmware and boot loaders send it, an OS's DHCP client does not) starts one unless it is

- a retry before the attempt got an address (no ACK yet in it: ``bound`` is ``0``), or
- the chain-loaded loader's own DHCP: the attempt's ACK handed out a loader (``loader`` is
  ``1``) and this is iPXE asking for its script (boot reason ``ipxe-script``), or any loader
  within :data:`CHAIN_SECONDS` of that ACK.

An ACK records ``bound``, ``loader`` and ``acked``. An OS's DHCP (no option 93) never starts
an attempt: it belongs to the boot that started it. ``bootyard doctor`` restores the hash after
its probes (cli/doctor.py), so its DISCOVER leaves the host's attempt as it was.
"""

from __future__ import annotations

from shared import keys
from shared.store import redis_errors

CHAIN_SECONDS = 60  # a loader's own DISCOVER within this long of the ACK that handed it out

# The decision, in Lua: one function both scripts include (the lease script and the events
# flush). op: 'discover' (a DISCOVER with option 93: may start an attempt), 'ack' (an ACK was
# sent: recorded), '' (any other event: read only). ts: the event's time (text, seconds with
# milliseconds); now: integer seconds. Returns the attempt id, or nil (none yet).
LUA = """
-- (pcall: a key of another type, written by hand, must not fail the step: no attempt then)
local function attempt_hash(key, ...)
  local v = redis.pcall('HMGET', key, ...)
  if v.err then return nil end
  return v
end
local function attempt_read(mac)  -- the id, and 'bound loader' of the attempt
  local v = attempt_hash('%(prefix)s' .. mac, 'id', 'bound', 'loader')
  if not v or not v[1] then return nil, nil end
  return v[1], tostring(v[2]) .. tostring(v[3])
end
-- the attempt's ACK was sent (bl: attempt_read's 'bound loader'; written only if it changes,
-- or to renew acked for a loader's chain window)
local function attempt_acked(mac, now, boot_file, boot_reason, bl)
  local loader = '0'
  if boot_file ~= '' and boot_reason ~= 'ipxe-script' then loader = '1' end
  if bl == '1' .. loader and loader == '0' then return end
  redis.pcall('HSET', '%(prefix)s' .. mac, 'bound', '1', 'loader', loader, 'acked',
              tostring(now))
end
local function attempt_of(mac, op, ts, now, boot_file, boot_reason)
  local key = '%(prefix)s' .. mac
  if op == 'discover' then
    local v = attempt_hash(key, 'id', 'bound', 'loader', 'acked')
    if not v then return nil end
    if v[1] and (v[2] ~= '1' or (v[3] == '1' and (boot_reason == 'ipxe-script'
        or now - (tonumber(v[4]) or 0) < %(chain)d))) then
      return v[1]
    end
    local id = mac .. '@' .. string.format('%%.0f', tonumber(ts) * 1000)
    redis.pcall('HSET', key, 'id', id, 'bound', '0', 'loader', '0', 'acked', '0')
    return id
  end
  local id, bl = attempt_read(mac)
  if id and op == 'ack' then attempt_acked(mac, now, boot_file, boot_reason, bl) end
  return id
end
""" % {"prefix": keys.ATTEMPT_PREFIX, "chain": CHAIN_SECONDS}


async def current(client, mac: str) -> dict[str, str]:
    """The host's attempt hash as it is now (``bootyard doctor`` keeps it across its probes)."""
    with redis_errors("attempts"):
        return await client.hgetall(keys.attempt(mac))


async def put_back(client, mac: str, saved: dict[str, str]) -> None:
    """Make the host's attempt hash ``saved`` again (none if it was empty), in one step."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.attempt(mac))
    if saved:
        pipe.hset(keys.attempt(mac), mapping=saved)
    with redis_errors("attempts"):
        await pipe.execute()
