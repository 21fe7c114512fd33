"""``bootyard mirror sync|status``: ask the mirrorsync service for a sync now, and show each
mirror's sync state (docs/mirrorsync.md)."""

from __future__ import annotations

import json
import time


def add_verbs(verbs, common, id_name: str) -> None:
    sub = verbs.add_parser("sync", help="ask the mirrorsync service to sync a mirror now",
                           parents=[common])
    sub.add_argument("id", metavar=id_name)
    sub = verbs.add_parser("status", help="each mirror's sync state, last success, last "
                           "attempt, duration, size, files and last error", parents=[common])
    sub.add_argument("id", metavar=id_name, nargs="?", help="only this mirror")
    sub.add_argument("--json", action="store_true", help="print JSON")


async def run(args, kind, store, out) -> int:
    from shared.mirrors import MirrorState

    if args.verb == "sync":
        name = kind.canonical_id(args.id)
        record, _problems = await store.get(kind, name)  # NotFound names the key
        await MirrorState(store.redis).request_sync(name, time.time())
        paused = "" if record is None or record.enabled else " (the mirror is paused: enabled=no)"
        print(f"asked for a sync of mirror {name}{paused}; follow it with 'bootyard mirror "
              f"status {name}' or 'bootyard events --mirror {name} -f'", file=out)
        return 0
    return await _status(args, kind, store, out)


MIRROR_STATUS_COLUMNS = ("state", "last_success", "last_attempt", "duration", "size", "files",
                         "last_error")


async def _status(args, kind, store, out) -> int:
    from shared.mirrors import MirrorState

    names = [kind.canonical_id(args.id)] if args.id else \
        sorted((await store.raw_all(kind)).keys())
    if args.id:
        await store.get(kind, names[0])  # NotFound names the key
    statuses = await MirrorState(store.redis).statuses(names)
    if args.json:
        json.dump(statuses, out, indent=2)
        out.write("\n")
        return 0
    rows = [("MIRROR",) + tuple(c.upper() for c in MIRROR_STATUS_COLUMNS)]
    for name in names:
        status = statuses[name]
        state = status.get("state", "never synced")
        if state == "syncing" and not status.get("lock"):
            state = "interrupted"  # the replica died: its lock's lease ran out
        rows.append((name, state, _when(status.get("last_success")),
                     _when(status.get("last_attempt")),
                     f"{status['duration']}s" if status.get("duration") else "",
                     status.get("size", ""), status.get("files", ""),
                     (f"{status.get('last_result', '')}: {status['last_error']}"
                      if status.get("last_error") else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
    return 0


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))
