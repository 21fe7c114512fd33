"""The inventory's change history: who changed which object, when, and from what to what.

One capped Redis stream, ``bootyard:audit`` (:data:`shared.keys.AUDIT_STREAM`, about the last
:data:`MAX_ENTRIES` changes). Each entry is one object's change::

    ts      1764950400.123          (Unix time)
    who     alice@deploy1           (the CLI's user@host; "api:<token name>"; "direct" for a
                                     change made with redis-cli, seen by a service)
    key     bootyard:host:52:54:00:12:34:56
    op      add | set | delete
    before  {"boot_mode": "local", ...}   (JSON of the hash; {} when added)
    after   {"boot_mode": "install", ...} (JSON; {} when deleted)

Writers that are ours (the CLI, the admin API, ``import``) queue the entry in the same
transaction as the change (:func:`recorder`), so a change is never without its entry; they also
keep the digest of each object's recorded hash in ``bootyard:audit:last``, so that a service
seeing the change through keyspace notifications (:class:`DirectRecorder`) knows it is recorded.
``bootyard history [--host MAC]`` reads it (:func:`history`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from shared import keys

MAX_ENTRIES = 100_000


@dataclasses.dataclass(frozen=True)
class Entry:
    id: str
    ts: float
    who: str
    key: str
    op: str
    before: dict[str, str]
    after: dict[str, str]
    detail: dict[str, str] = dataclasses.field(default_factory=dict)  # an action's (op power)

    def json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def entry_fields(who: str, key: str, before: dict[str, str] | None,
                 after: dict[str, str] | None, ts: float | None = None) -> dict[str, str]:
    """The stream entry of one change; secret fields (``power_secret``) are masked
    (:func:`shared.secrets.mask_change`): the history says that a secret changed, never what it
    is."""
    from shared.secrets import mask_change

    op = "delete" if not after else "add" if not before else "set"
    shown_before, shown_after = mask_change(key, before or {}, after or {})
    return {"ts": f"{time.time() if ts is None else ts:.3f}", "who": who, "key": key, "op": op,
            "before": json.dumps(shown_before, sort_keys=True),
            "after": json.dumps(shown_after, sort_keys=True)}


def hash_digest(fields: dict[str, str] | None) -> str:
    """The digest ``bootyard:audit:last`` keeps of an object's hash (of the hash itself, so a
    change of a masked secret is a change too)."""
    return digest(json.dumps(fields or {}, sort_keys=True))


def digest(fields_json: str) -> str:
    """What ``bootyard:audit:last`` keeps of an object's recorded hash (its JSON's digest)."""
    import hashlib
    return hashlib.sha1(fields_json.encode()).hexdigest()


EMPTY = digest("{}")


def queue(pipe, who: str, key: str, before, after) -> None:
    """Queue one entry into a Redis pipeline or transaction, and the object's new digest."""
    fields = entry_fields(who, key, before, after)
    pipe.xadd(keys.AUDIT_STREAM, fields, maxlen=MAX_ENTRIES, approximate=True)
    if after:
        pipe.hset(keys.AUDIT_LAST, key, hash_digest(after))
    else:
        pipe.hdel(keys.AUDIT_LAST, key)


def recorder(who: str):
    """The ``record`` callback of :func:`shared.inventory.commit`: one entry per changed
    object, in the write's transaction."""
    def record(written, pipe) -> None:
        for key in sorted(written.after):
            queue(pipe, who, key, written.before.get(key), written.after[key])
    return record


def parse(entry_id: str, fields: dict[str, str]) -> Entry:
    def load(text: str | None) -> dict[str, str]:
        try:
            value = json.loads(text or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return Entry(entry_id, float(fields.get("ts", 0) or 0), fields.get("who", ""),
                 fields.get("key", ""), fields.get("op", ""), load(fields.get("before")),
                 load(fields.get("after")), load(fields.get("detail")))


async def record_action(client, who: str, key: str, op: str, detail: dict[str, str]) -> None:
    """Record an action on an object that is not a change of it (``op power``: a power
    action and its result, ``detail``), so the history shows who powered what, and when."""
    from shared.store import redis_errors

    fields = {"ts": f"{time.time():.3f}", "who": who, "key": key, "op": op, "before": "{}",
              "after": "{}", "detail": json.dumps(detail, sort_keys=True)}
    with redis_errors("admin"):
        await client.xadd(keys.AUDIT_STREAM, fields, maxlen=MAX_ENTRIES, approximate=True)


async def history(client, key: str | None = None, count: int = 100,
                  scan: int = 20_000) -> list[Entry]:
    """The last ``count`` entries, oldest first (only those of ``key``, among the newest
    ``scan``, if given)."""
    from shared.store import redis_errors

    with redis_errors("audit"):
        raw = await client.xrevrange(keys.AUDIT_STREAM, count=scan if key else count)
    entries = [parse(i, f) for i, f in raw]
    if key:
        entries = [e for e in entries if e.key == key][:count]
    return list(reversed(entries))


def format_entry(entry: Entry) -> str:
    """One line per change: time, who, op, key, then each field's change."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.ts))
    changes = []
    for fname in sorted(set(entry.before) | set(entry.after)):
        old, new = entry.before.get(fname), entry.after.get(fname)
        if old != new:
            changes.append(f"{fname}: {old if old is not None else '(unset)'} -> "
                           f"{new if new is not None else '(unset)'}")
    if entry.detail:
        changes.append(" ".join(f"{k}={v}" for k, v in sorted(entry.detail.items())))
    return f"{when}  {entry.who}  {entry.op}  {entry.key}" + (
        "  " + "; ".join(changes) if changes else "")


# Record a change seen through keyspace notifications unless the object's last recorded hash
# (bootyard:audit:last, kept by every writer in the write's transaction) already is this one: the
# change was ours, or another worker of the service recorded it first. Atomic, so several
# workers record a change once. KEYS: stream, last; ARGV: key, after, ts, who, op, before,
# maxlen, digest of after, digest of {}.
_DIRECT_SCRIPT = """
local last = redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[9]
if last == ARGV[8] then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*', 'ts', ARGV[3], 'who', ARGV[4],
           'key', ARGV[1], 'op', ARGV[5], 'before', ARGV[6], 'after', ARGV[2])
if ARGV[8] == ARGV[9] then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[8])
end
return 1
"""


class DirectRecorder:
    """Records inventory changes nobody recorded (made with redis-cli) as ``who=direct``.

    A service's inventory cache (:class:`shared.cache.InventoryCache` ``on_raw``) hands it every
    object hash it reads: at start (remembered, not recorded), on each keyspace notification and
    on each resync. A hash that differs from the one remembered is a change; it is recorded
    unless the object's last recorded hash already is it (``bootyard:audit:last``: our writers
    keep it in the write's transaction). The HTTP service runs one (its workers record a change once)."""

    def __init__(self, client, who: str = "direct") -> None:
        self._redis = client
        self._who = who
        self._last: dict[str, dict[str, str]] = {}

    async def seen(self, key: str, raw: dict[str, str], initial: bool = False) -> None:
        last = self._last.get(key)
        if raw:
            self._last[key] = dict(raw)
        else:
            self._last.pop(key, None)
        if initial or (last or {}) == (raw or {}):
            return
        fields = entry_fields(self._who, key, last, raw)
        from shared.store import InventoryUnavailable, redis_errors
        try:
            with redis_errors("audit"):
                await self._redis.eval(_DIRECT_SCRIPT, 2, keys.AUDIT_STREAM, keys.AUDIT_LAST,
                                       key, fields["after"], fields["ts"], fields["who"],
                                       fields["op"], fields["before"], str(MAX_ENTRIES),
                                       hash_digest(raw), EMPTY)
        except InventoryUnavailable:
            pass  # counted in bootyard_redis_errors_total{operation="audit"}; the change stands
