"""``bootyard discovered list|show|rm`` and ``bootyard host adopt``: machines that booted the
discovery image and reported their hardware, and how one becomes a host (docs/discovery.md)."""

from __future__ import annotations

import json
import time

COLUMNS = ("ip", "vendor", "product", "serial", "cpus", "memory", "disks", "firmware",
           "last_seen")


def add_parsers(commands, common, format_options) -> None:
    noun = commands.add_parser("discovered", help="machines that reported their hardware from "
                               "the discovery image (docs/discovery.md)")
    verbs = noun.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = verbs.add_parser("list", aliases=["ls"], parents=[common],
                           help="list discovered machines with their hardware")
    sub.set_defaults(verb="list")
    format_options(sub)
    sub = verbs.add_parser("show", aliases=["get"], parents=[common],
                           help="one discovered machine and its whole hardware report")
    sub.set_defaults(verb="show")
    sub.add_argument("id", metavar="MAC")
    format_options(sub)
    sub = verbs.add_parser("rm", aliases=["delete", "remove"], parents=[common],
                           help="forget discovered machines (a new report records them again)")
    sub.set_defaults(verb="rm")
    sub.add_argument("ids", nargs="+", metavar="MAC")
    sub.add_argument("--dry-run", action="store_true", help="print what would go; write nothing")


def add_host_verbs(verbs, common) -> None:
    sub = verbs.add_parser("adopt", parents=[common], help="make a discovered machine a host "
                           "(its hardware report becomes the host's hw)")
    sub.add_argument("id", metavar="MAC")
    sub.add_argument("--profile", required=True, help="the profile it boots")
    sub.add_argument("--hostname", help="its host name")
    sub.add_argument("--boot-mode", help="install (default), live, netroot, sanboot or local")
    sub.add_argument("--tag", action="append", default=[], dest="tags", metavar="TAG",
                     help="a tag (repeatable)")
    sub.add_argument("--dry-run", action="store_true", help="print what would change; write "
                     "nothing")
    sub.add_argument("--force", action="store_true",
                     help="write even if the checks find errors (they are printed)")


def ago(seconds: float) -> str:
    from cli.states import ago as states_ago
    return states_ago(seconds)


def rows(objects, now: float) -> list[tuple[str, ...]]:
    """The table of ``discovered list``: a header, then one row per machine."""
    from shared import hardware

    out = [("MAC",) + tuple(c.upper().replace("_", " ") for c in COLUMNS)]
    for mac, raw in objects.items():
        try:
            hw = hardware.parse_text(raw["hw"]) if raw.get("hw") else {}
        except hardware.HardwareError:
            hw = {}
        cells = dict(hardware.summary(hw), ip=raw.get("ip", ""))
        seen = raw.get("last_seen", "")
        cells["last_seen"] = ago(now - int(seen)) if seen.isdigit() else ""
        out.append((mac,) + tuple(cells.get(c, "") for c in COLUMNS))
    return out


async def run(args, store, out) -> int:
    from cli.commands import _dump, _print_warnings, who
    from shared import audit, inventory, inventory_view
    from shared.schema import KINDS

    kind = KINDS["discovered"]
    if args.verb == "list":
        objects = await inventory_view.list_objects(store, kind)
        if args.format:
            _dump(_structured(objects), args.format, out)
            return 0
        table = rows(objects, time.time())
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
        return 0
    if args.verb == "show":
        shown = await inventory_view.show(store, kind, args.id)
        raw = await store.raw(kind, shown["id"])
        if args.format:
            _dump(dict(shown, fields=_structured({shown["id"]: raw})[shown["id"]]),
                  args.format, out)
            return 0
        print(shown["key"], file=out)
        for fname in sorted(f for f in raw if f != "hw"):
            value = raw[fname]
            if fname in ("first_seen", "last_seen") and value.isdigit():
                value += time.strftime("  (%Y-%m-%d %H:%M:%S)", time.localtime(int(value)))
            print(f"  {fname:<10}  {value}", file=out)
        print_hw(raw.get("hw"), out)
        for problem in shown["problems"]:
            print(f"  {problem['severity']}: {problem['field']}: {problem['reason']}", file=out)
        print(f"adopt it: bootyard host adopt {shown['id']} --profile NAME [--hostname NAME]",
              file=out)
        return 0 if shown["valid"] else 1
    written = await inventory.delete_objects(store, kind, args.ids, dry_run=args.dry_run,
                                             record=audit.recorder(who()))
    _print_warnings(written)
    for key in sorted(written.after):
        print(f"{'would remove' if args.dry_run else 'removed'} discovered {key.split(':', 2)[2]}",
              file=out)
    return 0


def _structured(objects):
    """``{mac: fields}`` with ``hw`` as JSON (an object), not text."""
    out = {}
    for mac, raw in objects.items():
        fields = dict(raw)
        if raw.get("hw"):
            try:
                fields["hw"] = json.loads(raw["hw"])
            except ValueError:
                pass
        out[mac] = fields
    return out


def print_hw(text: str | None, out) -> None:
    """A hardware report, a few lines (``host show`` and ``discovered show``)."""
    from shared import hardware

    if not text:
        return
    try:
        hw = hardware.parse_text(text)
    except hardware.HardwareError as exc:
        print(f"  hardware: (not readable: {exc})", file=out)
        return
    dmi = hw.get("dmi") or {}
    print("  hardware:", file=out)
    print(f"    system    {dmi.get('vendor', '')} {dmi.get('product', '')}  serial "
          f"{dmi.get('serial') or '-'}  uuid {dmi.get('uuid') or '-'}", file=out)
    memory = hardware.size_text(hw["memory_bytes"]) if "memory_bytes" in hw else "?"
    print(f"    cpu       {hw.get('cpus', '?')} x {hw.get('cpu_model', '')}  memory {memory}  "
          f"firmware {hw.get('firmware', '?')}  arch {hw.get('arch', '?')}", file=out)
    for disk in hw.get("disks") or []:
        print(f"    disk      {disk['name']}  {disk['size_bytes']} bytes "
              f"({hardware.size_text(disk['size_bytes'])})  serial {disk.get('serial') or '-'}"
              f"  {disk.get('model', '')}".rstrip(), file=out)
    for nic in hw.get("nics") or []:
        print(f"    nic       {nic.get('name', '')}  {nic['mac']}  link {nic['link']}  "
              f"{nic.get('driver', '')}".rstrip(), file=out)


async def adopt(args, store, out) -> int:
    from cli.commands import _print_diff, _print_warnings, who
    from shared import discovery

    written = await discovery.adopt(store, args.id, args.profile, who=who(),
                                    hostname=args.hostname, boot_mode=args.boot_mode,
                                    tags=tuple(args.tags), force=args.force,
                                    dry_run=args.dry_run)
    _print_warnings(written)
    if args.dry_run:
        _print_diff(written, out)
        print("dry run: nothing written", file=out)
        return 0
    from shared.events import EventLog
    from shared.schema import KINDS

    mac = KINDS["host"].canonical_id(args.id)
    events = EventLog(store.redis, "cli")
    events.emit("discovery.adopted", mac, by=f"cli:{who()}", profile=args.profile,
                hostname=args.hostname)
    await events.flush()
    print(f"adopted {mac} as a host (profile {args.profile}"
          f"{', host name ' + args.hostname if args.hostname else ''}); it boots its profile "
          "at its next network boot", file=out)
    return 0
