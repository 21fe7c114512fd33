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
transaction as the change (:func:`recorder`), so a change is never without its entry.
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

    def json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def entry_fields(who: str, key: str, before: dict[str, str] | None,
                 after: dict[str, str] | None, ts: float | None = None) -> dict[str, str]:
    op = "delete" if not after else "add" if not before else "set"
    return {"ts": f"{time.time() if ts is None else ts:.3f}", "who": who, "key": key, "op": op,
            "before": json.dumps(before or {}, sort_keys=True),
            "after": json.dumps(after or {}, sort_keys=True)}


def queue(pipe, who: str, key: str, before, after) -> None:
    """Queue one entry into a Redis pipeline or transaction."""
    pipe.xadd(keys.AUDIT_STREAM, entry_fields(who, key, before, after), maxlen=MAX_ENTRIES,
              approximate=True)


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
                 load(fields.get("after")))


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
    return f"{when}  {entry.who}  {entry.op}  {entry.key}" + (
        "  " + "; ".join(changes) if changes else "")
