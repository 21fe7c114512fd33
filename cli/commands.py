"""``bootyard``: the operator's command line for the inventory and the boot timeline.

Every user error (unknown host, bad MAC, a value that fails validation, Redis unreachable) is one
line on stderr and exit status 1; usage errors exit 2. Run ``bootyard --help`` for the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from services.blockexport.settings import BlockexportSection
from services.blockexport.storage import CowDisk, StorageError
from shared import inventory, leases, settings as settings_mod
from shared.addresses import AddressError
from shared.attachments import Attachments
from shared.events import GLOBAL_SCAN, EventLog, format_event
from shared.mirrors import MirrorState
from shared.schema import KINDS, Kind, from_hash
from shared.store import InventoryError, InventoryStore, InventoryUnavailable, connect

# CLI noun -> inventory kind. Block exports are "blockexport" because "export" dumps the inventory.
NOUNS = {"host": "host", "profile": "profile", "subnet": "subnet",
         "blockexport": "export", "mirror": "mirror", "netboot": "netboot"}
LIST_COLUMNS = {
    "host": ("hostname", "ip", "profile", "boot_mode", "enabled", "tags"),
    "profile": ("install", "kernel", "root_image", "export"),
    "subnet": ("network", "ranges", "router", "relays"),
    "export": ("kind", "backing", "iqn", "aoe_shelf", "aoe_slot"),
    "mirror": ("source", "path", "interval", "enabled"),
    "netboot": ("index", "title", "boot_file", "root_path", "default", "enabled"),
}


@dataclasses.dataclass(frozen=True)
class CliSettings:
    redis: settings_mod.RedisSection = dataclasses.field(default_factory=settings_mod.RedisSection)
    blockexport: BlockexportSection = dataclasses.field(default_factory=BlockexportSection)


class CliError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootyard", description="Edit bootyard's inventory and read the boot timeline.",
        epilog="Redis is found through --redis-url, BOOTYARD_REDIS_URL or the redis section of "
               "BOOTYARD_CONFIG (default redis://127.0.0.1:6379/0).")
    parser.add_argument("--redis-url", help="Redis URL (overrides BOOTYARD_REDIS_URL)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for noun, kind_name in NOUNS.items():
        kind = KINDS[kind_name]
        id_name = "MAC" if kind_name == "host" else "NAME"
        noun_parser = commands.add_parser(noun, help=f"manage {kind.plural}")
        verbs = noun_parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        for verb, text in (("add", f"create a {noun}"), ("set", f"change fields of a {noun}")):
            sub = verbs.add_parser(verb, help=text)
            sub.add_argument("id", metavar=id_name)
            _add_field_options(sub, kind, verb)
        sub = verbs.add_parser("rm", help=f"delete a {noun}")
        sub.add_argument("id", metavar=id_name)
        sub = verbs.add_parser("show", help=f"print one {noun} and its problems")
        sub.add_argument("id", metavar=id_name)
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub = verbs.add_parser("list", help=f"list {kind.plural}")
        sub.add_argument("--json", action="store_true", help="print JSON")
        if kind_name == "host":
            sub.add_argument("--tag", help="only hosts with this tag")
        if kind_name == "export":
            _add_overlay_verbs(verbs)

        if kind_name == "mirror":
            sub = verbs.add_parser("sync", help="ask the mirrorsync service to sync a mirror now")
            sub.add_argument("id", metavar=id_name)
            sub = verbs.add_parser("status", help="each mirror's sync state, last success, last "
                                   "attempt, duration, size, files and last error")
            sub.add_argument("id", metavar=id_name, nargs="?", help="only this mirror")
            sub.add_argument("--json", action="store_true", help="print JSON")

    sub = commands.add_parser("export", help="print the whole inventory as YAML")
    sub.add_argument("-o", "--output", help="write to this file instead of stdout")
    sub = commands.add_parser("import", help="load a YAML file made by 'bootyard export'")
    sub.add_argument("file", help="YAML file, or - for standard input")
    sub.add_argument("--replace", action="store_true",
                     help="also delete objects that are not in the file (Redis matches the file)")
    commands.add_parser("validate", help="check every record; exit 1 if anything is wrong")
    sub = commands.add_parser("events", help="print the boot timeline")
    sub.add_argument("--host", metavar="MAC", help="only this host's events")
    sub.add_argument("--mirror", metavar="NAME", help="only this mirror's sync events")
    sub.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sub.add_argument("--count", "-n", type=int, default=200, help="how many past events (200)")
    sub = commands.add_parser("leases", help="list DHCP leases (current ones unless --all)")
    sub.add_argument("--all", action="store_true",
                     help="also expired, released, declined and offered addresses")
    sub.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_overlay_verbs(verbs) -> None:
    where = ("overlay directory (default: blockexport.overlay_root of BOOTYARD_CONFIG or "
             "BOOTYARD_BLOCKEXPORT__OVERLAY_ROOT); run where the block export service's "
             "overlays are, e.g. docker compose exec blockexport bootyard ...")
    sub = verbs.add_parser("overlays", help="list the per-host copy-on-write overlays of a "
                                            "cow export, with their allocated size")
    sub.add_argument("id", metavar="NAME")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--overlay-root", help=where)
    sub = verbs.add_parser("reset", help="drop a host's overlay: its next boot starts from the "
                                         "golden image again")
    sub.add_argument("id", metavar="NAME")
    sub.add_argument("mac", metavar="MAC")
    sub.add_argument("--force", action="store_true",
                     help="reset even while the host is attached (its unsynced writes are lost)")
    sub.add_argument("--overlay-root", help=where)


def _add_field_options(sub: argparse.ArgumentParser, kind: Kind, verb: str) -> None:
    for fname, spec in kind.fields.items():
        extra = " (required)" if spec.required and verb == "add" else ""
        sub.add_argument(f"--{fname.replace('_', '-')}", dest=f"field_{fname}", metavar="VALUE",
                         help=spec.doc + extra)
    if kind.has_vars:
        sub.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                         help="template variable (repeatable; KEY= removes it)")
    if verb == "set":
        sub.add_argument("--unset", action="append", default=[], metavar="FIELD",
                         help="remove a field (repeatable)")


def _changes(args: argparse.Namespace, kind: Kind) -> dict[str, str]:
    changes = {}
    for fname in kind.fields:
        value = getattr(args, f"field_{fname}", None)
        if value is not None:
            changes[fname] = value
    for item in getattr(args, "var", []) or []:
        if "=" not in item:
            raise CliError(f"--var {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        changes[f"var.{key}"] = value
    for fname in getattr(args, "unset", []) or []:
        if fname not in kind.fields and not fname.startswith("var."):
            raise CliError(f"--unset {fname}: {kind.name} has no field {fname!r} "
                           f"(fields: {', '.join(kind.fields)})")
        changes[fname] = ""
    return changes


async def run(args: argparse.Namespace, url: str, out=None) -> int:
    out = out or sys.stdout
    client = connect(url)
    store = InventoryStore(client, url)
    try:
        return await _dispatch(args, store, client, out)
    finally:
        await client.aclose()


async def _dispatch(args, store: InventoryStore, client, out) -> int:
    if args.command in NOUNS:
        kind = KINDS[NOUNS[args.command]]
        return await _object_command(args, kind, store, out)
    if args.command == "export":
        text = await inventory.export_yaml(store)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            out.write(text)
        return 0
    if args.command == "import":
        source = "stdin" if args.file == "-" else args.file
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        try:
            counts = await inventory.import_yaml(store, text, replace=args.replace, source=source)
        except inventory.ImportRefused as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            raise
        print(f"imported {counts['written']} object(s) from {source}"
              + (f", deleted {counts['deleted']}" if args.replace else ""), file=out)
        return 0
    if args.command == "validate":
        problems = await inventory.validate(store)
        for problem in problems:
            print(f"{problem.severity}: {problem}", file=out)
        if problems:
            errors = sum(p.severity == "error" for p in problems)
            print(f"{len(problems)} problem(s): {errors} error(s), "
                  f"{len(problems) - errors} warning(s)", file=sys.stderr)
            return 1
        print("inventory is valid", file=sys.stderr)
        return 0
    if args.command == "events":
        return await _events(args, client, out)
    if args.command == "leases":
        return await _leases(args, client, out)
    raise CliError(f"unknown command {args.command}")


async def _object_command(args, kind: Kind, store: InventoryStore, out) -> int:
    verb = args.verb
    if verb in ("overlays", "reset"):
        return await _overlays(args, store, out)

    if verb == "sync":
        name = kind.canonical_id(args.id)
        record, _problems = await store.get(kind, name)  # NotFound names the key
        state = MirrorState(store.redis)
        await state.request_sync(name, time.time())
        paused = "" if record is None or record.enabled else " (the mirror is paused: enabled=no)"
        print(f"asked for a sync of mirror {name}{paused}; follow it with 'bootyard mirror "
              f"status {name}' or 'bootyard events --mirror {name} -f'", file=out)
        return 0
    if verb == "status":
        return await _mirror_status(args, kind, store, out)
    if verb in ("add", "set"):
        changes = _changes(args, kind)
        if verb == "set" and not changes:
            raise CliError("nothing to change: give at least one --FIELD, --var or --unset")
        record = await store.write(kind, args.id, changes, mode=verb)
        ident = getattr(record, kind.id_field)
        print(f"{'added' if verb == 'add' else 'updated'} {kind.name} {ident}", file=out)
        return 0
    if verb == "rm":
        await store.delete(kind, args.id)
        print(f"removed {kind.name} {kind.canonical_id(args.id)}", file=out)
        return 0
    if verb == "show":
        shown = await inventory.show(store, kind, args.id)
        if args.json:
            json.dump({k: v for k, v in shown.items() if k != "id"}, out, indent=2)
            out.write("\n")
        else:
            raw = await store.raw(kind, shown["id"])
            print(shown["key"], file=out)
            width = max((len(f) for f in raw), default=0)
            for fname in sorted(raw):
                print(f"  {fname:<{width}}  {raw[fname]}", file=out)
            for problem in shown["problems"]:
                print(f"  {problem['severity']}: {problem['field']}: {problem['reason']}",
                      file=out)
        return 0 if shown["valid"] else 1
    if verb == "list":
        objects = await inventory.list_objects(store, kind, getattr(args, "tag", None))
        columns = LIST_COLUMNS[kind.name]
        if args.json:
            json.dump({i: from_hash(kind, r) for i, r in sorted(objects.items())}, out, indent=2)
            out.write("\n")
            return 0
        rows = [(kind.id_field.upper(),) + tuple(c.upper() for c in columns)]
        for ident in sorted(objects):
            rows.append((ident,) + tuple(objects[ident].get(c, "") for c in columns))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
        return 0
    raise CliError(f"unknown verb {verb}")


async def _overlays(args, store: InventoryStore, out) -> int:
    kind = KINDS["export"]
    export, problems = await store.get(kind, args.id)
    if export is None:
        raise CliError(f"export {kind.canonical_id(args.id)} is not valid: "
                       + "; ".join(f"{p.field}: {p.reason}" for p in problems))
    if not export.cow:
        raise CliError(f"export {export.name} has no overlays: it is not a copy-on-write export "
                       "(cow: yes)")
    attachments = await Attachments(store.redis).attached(export.name)
    try:
        cow = CowDisk(export.backing, args.overlay_root, export.name)
    except StorageError as exc:
        raise CliError(f"export {export.name}: {exc}") from None
    try:
        if args.verb == "overlays":
            overlays = cow.overlays()
            if args.json:
                json.dump([dict(dataclasses.asdict(o), attached=o.mac in attachments)
                           for o in overlays], out, indent=2)
                out.write("\n")
                return 0
            rows = [("MAC", "ALLOCATED", "BLOCKS", "ATTACHED", "PATH")]
            for o in overlays:
                rows.append((o.mac, str(o.allocated), str(o.blocks),
                             "yes" if o.mac in attachments else "no", o.path))
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for row in rows:
                print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
            return 0
        mac = KINDS["host"].canonical_id(args.mac)
        if mac in attachments and not args.force:
            left = attachments[mac] - time.time()
            raise CliError(f"export {export.name}: host {mac} is attached (it sent a frame "
                           f"recently; it counts as attached for {left:.0f}s more): stop the "
                           "host first, or use --force")
        if not cow.reset(mac):
            raise CliError(f"export {export.name}: host {mac} has no overlay under "
                           f"{cow.dir}")
        print(f"reset {export.name} for {mac}: its next read starts from the golden image",
              file=out)
        return 0
    finally:
        cow.close()
MIRROR_STATUS_COLUMNS = ("state", "last_success", "last_attempt", "duration", "size", "files",
                         "last_error")


async def _mirror_status(args, kind: Kind, store: InventoryStore, out) -> int:
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


async def _events(args, client, out) -> int:
    mac = KINDS["host"].canonical_id(args.host) if args.host else None
    mirror = KINDS["mirror"].canonical_id(args.mirror) if args.mirror else None

    def wanted(event) -> bool:
        return mirror is None or event.fields.get("mirror") == mirror

    log = EventLog(client, "cli")
    previous = None
    # a mirror's events are in the global stream among the others: read more, keep its own
    past = await log.history(mac, count=args.count if mirror is None else GLOBAL_SCAN)
    shown = [e for e in past.events if wanted(e)][-args.count:]
    for event in shown:
        print(format_event(event, previous), file=out)
        previous = event.ts
    out.flush()
    if args.follow:
        async for event in log.follow(mac, last_id=past.cursor):
            if wanted(event):
                print(format_event(event, previous), file=out, flush=True)
                previous = event.ts
    return 0


async def _leases(args, client, out) -> int:
    now = time.time()
    records = [r for r in await leases.Leases(client).all() if args.all or r.current(now)]
    if args.json:
        json.dump([dict(dataclasses.asdict(r), current=r.current(now)) for r in records], out,
                  indent=2)
        out.write("\n")
        return 0
    rows = [("IP", "MAC", "STATE", "EXPIRES", "SUBNET", "HOSTNAME")]
    for r in records:
        left = r.expires - now
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.expires))
        state = r.state if r.state != "bound" or left > 0 else "expired"
        rows.append((r.ip, r.mac, state, when, r.subnet, r.hostname))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = settings_mod.load_settings(CliSettings, None, os.environ)
    except settings_mod.SettingsError as exc:
        print(f"bootyard: settings error: {exc}", file=sys.stderr)
        return 2
    url = args.redis_url or cfg.redis.url
    if getattr(args, "verb", None) in ("overlays", "reset") and not args.overlay_root:
        args.overlay_root = cfg.blockexport.overlay_root
    try:
        return asyncio.run(run(args, url))
    except InventoryUnavailable as exc:
        print(f"bootyard: {exc} (is redis-server running? set BOOTYARD_REDIS_URL or --redis-url)",
              file=sys.stderr)
    except (InventoryError, AddressError, CliError) as exc:
        print(f"bootyard: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"bootyard: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1

