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

from cli import doctor, states as boot_states
from shared import inventory, leases, settings as settings_mod
from shared.addresses import AddressError
from shared.bootstate import STATES, Expected
from shared.events import EventLog, format_event
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
    bootstate: Expected = dataclasses.field(default_factory=Expected)


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
            sub.add_argument("--state", choices=STATES,
                             help="only hosts whose latest boot is in this state (docs/console.md)")

    sub = commands.add_parser("export", help="print the whole inventory as YAML")
    sub.add_argument("-o", "--output", help="write to this file instead of stdout")
    sub = commands.add_parser("import", help="load a YAML file made by 'bootyard export'")
    sub.add_argument("file", help="YAML file, or - for standard input")
    sub.add_argument("--replace", action="store_true",
                     help="also delete objects that are not in the file (Redis matches the file)")
    commands.add_parser("validate", help="check every record; exit 1 if anything is wrong")
    sub = commands.add_parser("events", help="print the boot timeline")
    sub.add_argument("--host", metavar="MAC", help="only this host's events")
    sub.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sub.add_argument("--count", "-n", type=int, default=200, help="how many past events (200)")
    sub = commands.add_parser("leases", help="list DHCP leases (current ones unless --all)")
    sub.add_argument("--all", action="store_true",
                     help="also expired, released, declined and offered addresses")
    sub.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_parser(commands)  # cli/doctor.py
    return parser


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
    if args.command == "doctor":
        return await doctor.run(args, store, client, out)
    raise CliError(f"unknown command {args.command}")


async def _object_command(args, kind: Kind, store: InventoryStore, out) -> int:
    verb = args.verb
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
        extra: dict = {}  # hosts: their boot states (cli/states.py)
        if kind.name == "host":
            now = time.time()
            found = await boot_states.host_states(store.redis, store, objects, now,
                                                  getattr(args, "bootstate", None))
            objects = {i: r for i, r in objects.items()
                       if not args.state or found[i].state == args.state}
            extra = {i: found[i] for i in objects}
        if args.json:
            json.dump({i: dict(from_hash(kind, r), **({"boot_state": extra[i].as_dict()}
                                                      if i in extra else {}))
                       for i, r in sorted(objects.items())}, out, indent=2)
            out.write("\n")
            return 0
        rows = [(kind.id_field.upper(),) + tuple(c.upper() for c in columns)
                + (tuple(c.upper() for c in boot_states.COLUMNS) if kind.name == "host" else ())]
        for ident in sorted(objects):
            rows.append((ident,) + tuple(objects[ident].get(c, "") for c in columns)
                        + (boot_states.cells(extra[ident], now) if ident in extra else ()))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
        return 0
    raise CliError(f"unknown verb {verb}")


async def _events(args, client, out) -> int:
    mac = KINDS["host"].canonical_id(args.host) if args.host else None
    log = EventLog(client, "cli")
    previous = None
    past = await log.history(mac, count=args.count)
    labels = await boot_states.attempt_labels(InventoryStore(client), mac, past.events,
                                              getattr(args, "bootstate", None)) if mac else {}
    if len({a for a in labels.values() if a}) < 2:
        labels = {}  # one boot attempt (or none): nothing to tell apart
    attempt = None
    for event in past.events:
        if labels.get(event.id) and labels[event.id] != attempt:  # a boot attempt begins
            attempt = labels[event.id]
            print(f"--- boot attempt {attempt}", file=out)
        print(format_event(event, previous), file=out)
        previous = event.ts
    out.flush()
    if args.follow:
        async for event in log.follow(mac, last_id=past.cursor):
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
    args.bootstate = cfg.bootstate  # expected seconds per boot stage (host list's states)
    if args.command == "doctor":
        try:
            args.doctor_settings = doctor.load_settings(os.environ)
        except settings_mod.SettingsError as exc:
            print(f"bootyard: settings error: {exc}", file=sys.stderr)
            return 2
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

