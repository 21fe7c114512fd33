"""``bootyard``: the operator's command line for the inventory and the boot timeline.

Every user error (unknown host, bad MAC, a value that fails validation, a bad Redis URL, Redis
unreachable) is one line on stderr and exit status 1; usage errors exit 2; never a traceback.
Run ``bootyard --help`` for the commands.

Start-up is kept short: this module imports only the standard library at the top; each command
imports what it needs (Redis client, YAML, templates) when it runs (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from cli.parser import LIST_COLUMNS, NOUNS, build_parser, completion_script


class CliError(Exception):
    pass


def _changes(args: argparse.Namespace, kind) -> dict[str, str]:
    changes = {}
    for fname in kind.fields:
        value = getattr(args, f"field_{fname}", None)
        if value is not None:
            changes[fname] = value
    for fname, spec in kind.fields.items():
        if spec.secret and changes.get(fname) == "-":  # the secret from standard input
            import getpass
            changes[fname] = (getpass.getpass(f"{fname}: ") if sys.stdin.isatty()
                              else sys.stdin.readline().rstrip("\n"))
    for item in getattr(args, "var", []) or []:
        if "=" not in item:
            raise CliError(f"--var {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        changes[f"var.{key}"] = value
    if kind.families:
        from cli import groups
        try:
            changes.update(groups.family_changes(args, kind))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    for fname in getattr(args, "unset", []) or []:
        if fname not in kind.fields and not fname.startswith("var.") and \
                kind.family(fname) is None:
            raise CliError(f"--unset {fname}: {kind.name} has no field {fname!r} "
                           f"(fields: {', '.join(kind.fields)})")
        changes[fname] = ""
    return changes


def who() -> str:
    """The CLI user as the audit trail names them: user@host."""
    import getpass
    import socket
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


async def run(args: argparse.Namespace, url: str, out=None) -> int:
    from shared.store import InventoryStore, connect

    out = out or sys.stdout
    client = connect(url)
    store = InventoryStore(client, url)
    try:
        return await _dispatch(args, store, client, out)
    finally:
        await client.aclose()


async def _dispatch(args, store, client, out) -> int:
    from shared.schema import KINDS

    if args.command in NOUNS:
        kind = KINDS[NOUNS[args.command]]
        return await _object_command(args, kind, store, out)
    if args.command == "discovered":
        from cli import discovered
        return await discovered.run(args, store, out)
    if args.command == "export":
        from shared import inventory_file
        text = await inventory_file.export_yaml(store, getattr(args, "show_secrets", False))
        if args.output:
            from pathlib import Path
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            out.write(text)
        return 0
    if args.command == "import":
        return await _import(args, store, out)
    if args.command == "validate":
        return await _validate(args, store, out)
    if args.command == "events":
        return await _events(args, client, out)
    if args.command == "leases":
        return await _leases(args, client, out)
    if args.command == "history":
        return await _history(args, client, out)
    if args.command == "doctor":
        from cli import doctor
        return await doctor.run(args, store, client, out)
    if args.command == "power":
        from cli import power
        return await power.run(args, store, client, out)
    raise CliError(f"unknown command {args.command}")


def _print_warnings(written) -> None:
    for problem in written.warnings:
        print(f"{problem.severity}: {problem}", file=sys.stderr)
    for note in written.notes:
        print(f"note: {note}", file=sys.stderr)


def _print_diff(written, out, *, fields: bool = True) -> None:
    """One line per object: ``+`` added, ``~`` changed (with its fields), ``-`` deleted."""
    from shared.secrets import mask_change

    for key in sorted(written.after):
        before, after = written.before.get(key) or {}, written.after[key]
        if after is not None:
            before, after = mask_change(key, before, after)
        if after is None:
            print(f"- {key}", file=out)
        elif not before:
            print(f"+ {key}", file=out)
        else:
            print(f"~ {key}", file=out)
            if fields:
                for fname in sorted(set(before) | set(after)):
                    if before.get(fname) != after.get(fname):
                        print(f"    {fname}: {before.get(fname, '(unset)')!r} -> "
                              f"{after.get(fname, '(unset)')!r}", file=out)


async def _select(args, kind, store) -> list[str]:
    from shared import inventory, inventory_view
    ids = list(getattr(args, "ids", []) or [])
    selectors = {name: getattr(args, f"select_{name}", None)
                 for name in ("tag", "profile", "subnet", "group")}
    if not ids and not any(selectors.values()):
        if args.verb == "list":
            return await inventory_view.select(store, kind)
        raise CliError(f"name the {kind.plural} to {args.verb}: one or more "
                       f"{'MACs' if kind.name == 'host' else 'names'}"
                       + (", or --tag, --of-profile, --subnet or --group" if kind.name == "host"
                          else ""))
    if not any(selectors.values()) and args.verb != "list":
        return ids  # the write checks that each exists (one read of the inventory, not two)
    try:
        return await inventory_view.select(store, kind, ids, **selectors)
    except inventory.NotFound as exc:
        if args.verb == "set":
            raise CliError(f"{exc}; use 'bootyard {args.command} add' to create it") from None
        raise


async def _object_command(args, kind, store, out) -> int:
    from shared import audit, inventory, inventory_view

    verb = args.verb
    if verb in ("overlays", "reset"):
        from cli import blockexport
        return await blockexport.run(args, store, out)
    if verb in ("sync", "status"):
        from cli import mirrors
        return await mirrors.run(args, kind, store, out)
    if verb == "adopt":
        from cli import discovered
        return await discovered.adopt(args, store, out)
    if verb in ("import", "verify"):
        from cli import images
        return await images.run(args, kind, store, out)
    record = audit.recorder(who())
    if verb in ("reinstall", "rescue"):
        from cli import groups
        ids = await _select(args, kind, store)
        if not ids:
            raise CliError(f"no {kind.name} matches")
        return await groups.run_host_verb(args, ids, store, out, record, _print_diff,
                                          _print_warnings)
    if verb in ("add", "set"):
        changes = _changes(args, kind)
        if verb == "set" and not changes:
            raise CliError("nothing to change: give at least one --FIELD, --var or --unset")
        ids = [args.id] if verb == "add" else await _select(args, kind, store)
        if not ids:
            raise CliError(f"no {kind.name} matches")
        written = await inventory.write_many(store, kind, ids, changes, mode=verb,
                                             force=args.force, dry_run=args.dry_run,
                                             record=record)
        _print_warnings(written)
        if args.dry_run:
            _print_diff(written, out)
            print(f"dry run: {len(written.after)} {kind.plural} would change, nothing written",
                  file=out)
            return 0
        done = "added" if verb == "add" else "updated"
        names = [kind.canonical_id(i) for i in ids]
        print(f"{done} {kind.name} {names[0]}" if len(names) == 1 else
              f"{done} {len(written.after)} of {len(names)} {kind.plural} "
              f"({len(names) - len(written.after)} already so)", file=out)
        return 0
    if verb == "rm":
        ids = await _select(args, kind, store)
        if not ids:
            raise CliError(f"no {kind.name} matches")
        written = await inventory.delete_objects(store, kind, ids, force=args.force,
                                                 dry_run=args.dry_run, record=record)
        _print_warnings(written)
        if args.dry_run:
            _print_diff(written, out)
            print(f"dry run: {len(written.after)} {kind.plural} would be removed, nothing "
                  "written", file=out)
            return 0
        for key in sorted(written.after):
            print(f"removed {kind.name} {key.split(':', 2)[2]}", file=out)
        return 0
    if verb == "show" and getattr(args, "effective", False):
        from cli import groups
        return await groups.show_effective(args, store, out)
    if verb == "show":
        secrets = getattr(args, "show_secrets", False)
        shown = await inventory_view.show(store, kind, args.id, secrets)
        if args.format:
            _dump(shown, args.format, out)
        else:
            from shared.secrets import mask
            raw = await store.raw(kind, shown["id"])
            raw = raw if secrets else mask(kind, raw)
            print(shown["key"], file=out)
            width = max((len(f) for f in raw), default=0)
            for fname in sorted(raw):
                print(f"  {fname:<{width}}  {raw[fname]}", file=out)
            if kind.name == "host" and raw.get("hw"):
                from cli import discovered
                discovered.print_hw(raw["hw"], out)
            for problem in shown["problems"]:
                print(f"  {problem['severity']}: {problem['field']}: {problem['reason']}",
                      file=out)
            if kind.name == "group":
                from cli import groups
                await groups.print_matches(store, shown["id"], out)
            if kind.name == "host":  # its boot attempts, newest last (cli/states.py)
                from cli import states as boot_states
                await boot_states.print_attempts(store.redis, store, shown["id"], raw, out)
        return 0 if shown["valid"] else 1
    if verb == "list":
        skipped: list = []
        objects = await inventory_view.list_objects(
            store, kind, getattr(args, "select_tag", None), ids=args.ids,
            profile=getattr(args, "select_profile", None),
            subnet=getattr(args, "select_subnet", None), skipped=skipped,
            group=getattr(args, "select_group", None))
        for problem in skipped:
            print(f"warning: {problem}", file=sys.stderr)
        extra: dict = {}  # hosts: their boot states (cli/states.py)
        now = time.time()
        if kind.name == "host":
            from cli import states as boot_states
            found = await boot_states.host_states(store.redis, store, objects, now,
                                                  getattr(args, "bootstate", None))
            objects = {i: r for i, r in objects.items()
                       if not getattr(args, "state", None) or found[i].state == args.state}
            extra = {i: found[i] for i in objects}
        if args.format:
            listed = inventory_view.list_json(kind, objects, getattr(args, "show_secrets", False))
            if extra:
                listed = {i: dict(v, boot_state=extra[i].as_dict()) if i in extra else v
                          for i, v in listed.items()}
            _dump(listed, args.format, out)
            return 0
        columns = LIST_COLUMNS[kind.name]
        rows = [(kind.id_field.upper(),) + tuple(c.upper() for c in columns)
                + (tuple(c.upper() for c in boot_states.COLUMNS) if extra else ())]
        from_groups: dict = {}  # hosts: the profile and boot mode their groups give them
        if kind.name == "host":
            from cli import groups
            from_groups = await groups.effective_columns(store, objects)
        for ident, raw in objects.items():
            shown = inventory_view.effective(kind, raw)
            shown.update(from_groups.get(ident, {}))
            if kind.name == "group":
                from cli import groups
                shown["match"] = groups.match_text(raw)
            rows.append((ident,) + tuple(shown.get(c, "") for c in columns)
                        + (boot_states.cells(extra[ident], now) if ident in extra else ()))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
        return 0
    raise CliError(f"unknown verb {verb}")


def _dump(data, fmt: str, out) -> None:
    if fmt == "json":
        import json
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        import yaml
        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                                 allow_unicode=True))


async def _import(args, store, out) -> int:
    from pathlib import Path

    from shared import audit, inventory, inventory_file

    source = "stdin" if args.file == "-" else args.file
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    fmt = args.format or ("csv" if source.lower().endswith(".csv") else "yaml")
    try:
        dump = (inventory_file.csv_to_dump(text, NOUNS[args.kind], source) if fmt == "csv"
                else inventory_file.yaml_to_dump(text, source))
        written = await inventory.import_dump(store, dump, replace=args.replace, yes=args.yes,
                                              dry_run=args.dry_run, source=source,
                                              record=audit.recorder(who()))
    except inventory_file.ImportRefused as exc:
        for problem in exc.problems:
            print(f"{problem.severity}: {problem}", file=sys.stderr)
        raise
    except inventory.ConfirmationNeeded as exc:
        _print_diff(exc.written, sys.stderr, fields=False)
        raise
    _print_warnings(written)
    diff = written.diff()
    if args.dry_run or args.replace or len(written.after) <= 20:
        _print_diff(written, out)
    summary = (f"{len(diff['added'])} added, {len(diff['changed'])} changed, "
               f"{len(diff['deleted'])} deleted")
    if args.dry_run:
        print(f"dry run: {source} would give {summary}; nothing written", file=out)
    else:
        print(f"imported {source}: {summary}", file=out)
    return 0


async def _validate(args, store, out) -> int:
    from shared import checks

    problems = await checks.validate(store)
    templates = None if args.no_templates else args.templates or _configured_templates()
    if templates:
        problems += await _render_install_files(store, templates)
    for problem in problems:
        print(f"{problem.severity}: {problem}", file=out)
    errors = sum(p.severity == "error" for p in problems)
    if problems:
        print(f"{len(problems)} problem(s): {errors} error(s), "
              f"{len(problems) - errors} warning(s)", file=sys.stderr)
    if errors or (problems and args.strict):
        return 1
    print("inventory is valid" + (" (with warnings)" if problems else ""), file=sys.stderr)
    return 0


def _configured_templates() -> str | None:
    """http.templates_dir from BOOTYARD_CONFIG / BOOTYARD_HTTP__TEMPLATES_DIR, if it exists."""
    from pathlib import Path
    value = os.environ.get("BOOTYARD_HTTP__TEMPLATES_DIR")
    if value is None and os.environ.get("BOOTYARD_CONFIG"):
        import yaml
        try:
            loaded = yaml.safe_load(Path(os.environ["BOOTYARD_CONFIG"]).read_text()) or {}
            value = ((loaded.get("http") or {}).get("templates_dir")
                     if isinstance(loaded, dict) else None)
        except (OSError, yaml.YAMLError):
            value = None
    if value is None:  # http.templates_dir's default, else the templates shipped with bootyard
        shipped = Path(__file__).resolve().parent.parent / "templates"
        value = "templates" if Path("templates").is_dir() else str(shipped)
    return value if value and Path(value).is_dir() else None


async def _render_install_files(store, templates: str):
    from cli import dryrun
    return dryrun.install_problems(await store.dump(), templates)


async def _events(args, client, out) -> int:
    from shared.events import GLOBAL_SCAN, EventLog, format_event
    from shared.schema import KINDS

    mac = KINDS["host"].canonical_id(args.host) if args.host else None
    mirror = KINDS["mirror"].canonical_id(args.mirror) if args.mirror else None
    log = EventLog(client, "cli")
    previous = None

    def wanted(event) -> bool:
        if args.since is not None and event.ts < args.since:
            return False
        if mirror is not None and event.fields.get("mirror") != mirror:
            return False
        return not args.kind or event.kind == args.kind or \
            event.kind.startswith(args.kind.rstrip(".") + ".")

    def show(event) -> None:
        nonlocal previous
        if args.json:
            import json
            print(json.dumps(event.json()), file=out, flush=args.follow)
        else:
            print(format_event(event, previous), file=out, flush=args.follow)
        previous = event.ts

    # a mirror's events are in the global stream among the others: read more, keep its own
    past = await log.history(mac, count=args.count if mirror is None else GLOBAL_SCAN)
    shown = [e for e in past.events if wanted(e)][-args.count:]
    labels: dict = {}  # a host's events -> the boot attempt each belongs to (cli/states.py)
    if mac and not args.json:
        from cli import states as boot_states
        from shared.store import InventoryStore
        labels = await boot_states.attempt_labels(InventoryStore(client), mac, past.events,
                                                  getattr(args, "bootstate", None))
        if len({a for a in labels.values() if a}) < 2:
            labels = {}  # one boot attempt (or none): nothing to tell apart
    attempt = None
    for event in shown:
        if labels.get(event.id) and labels[event.id] != attempt:  # a boot attempt begins
            attempt = labels[event.id]
            print(f"--- boot attempt {attempt}", file=out)
        show(event)
    out.flush()
    if args.follow:
        async for event in log.follow(mac, last_id=past.cursor):
            if wanted(event):
                show(event)
    return 0


async def _history(args, client, out) -> int:
    from shared import audit
    from shared.schema import KINDS

    key = KINDS["host"].key(args.host) if args.host else args.key
    entries = await audit.history(client, key, count=args.count)
    if args.json:
        _dump([e.json() for e in entries], "json", out)
        return 0
    for entry in entries:
        print(audit.format_entry(entry), file=out)
    return 0


async def _leases(args, client, out) -> int:
    import dataclasses
    import json
    import time

    from shared import leases

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


def _settings(args):
    """The CLI's settings (BOOTYARD_CONFIG and BOOTYARD_* variables: cli/settings.py); the
    boot-stage times go on ``args`` for the commands that show boot states."""
    from cli.settings import CliSettings
    from shared import settings as settings_mod

    try:
        cfg = settings_mod.load_settings(CliSettings, None, os.environ)
        if args.command == "doctor":
            from cli import doctor
            args.doctor_settings = doctor.load_settings(os.environ)
    except settings_mod.SettingsError as exc:
        raise CliError(f"settings error: {exc}") from None
    args.bootstate = cfg.bootstate  # expected seconds per boot stage (host list's states)
    return cfg


def _redis_url(args) -> str:
    cfg = _settings(args)
    return getattr(args, "redis_url", None) or cfg.redis.url


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        sys.stdout.write(completion_script(parser))
        return 0
    import asyncio

    from shared.addresses import AddressError
    from shared.store import InventoryError, InventoryUnavailable

    try:
        url = _redis_url(args)
        return asyncio.run(run(args, url))
    except InventoryUnavailable as exc:
        hint = (" (is redis-server running? set BOOTYARD_REDIS_URL or --redis-url)"
                if str(exc).startswith(("Redis unreachable", "no free Redis")) else "")
        print(f"bootyard: {exc}{hint}", file=sys.stderr)
    except (InventoryError, AddressError, CliError) as exc:
        print(f"bootyard: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"bootyard: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
    except UnicodeDecodeError as exc:
        print(f"bootyard: the input is not UTF-8 text: {exc.reason}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback; BOOTYARD_DEBUG=1 shows it
        if os.environ.get("BOOTYARD_DEBUG"):
            raise
        print(f"bootyard: internal error: {type(exc).__name__}: {exc} "
              "(BOOTYARD_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 1
