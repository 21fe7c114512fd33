"""``bootyard group ...`` extras, ``bootyard host show --effective``, ``host reinstall`` and
``host rescue`` (docs/fleet.md).

``group add|set|rm|show|list`` are the generic object verbs of cli/commands.py (a group is an
inventory kind like the others); their selectors are ``--match KEY=VALUE`` and DHCP options
``--option NAME=VALUE`` (both repeatable; ``KEY=`` removes one). This module adds what is
particular: the hosts a group matches (``group show``), a host's effective values with where
each comes from, and the one-shot boots.
"""

from __future__ import annotations

import argparse
import sys


def family_options(sub: argparse.ArgumentParser, kind) -> None:
    """``--match KEY=VALUE`` / ``--option NAME=VALUE`` for a kind's field families."""
    helps = {"match": "selector (repeatable): tags=rack1,web, mac=52:54:00, arch=x86_64, "
                      "firmware=uefi, subnet=NAME, hw.dmi.vendor=QEMU; KEY= removes it",
             "options": "custom DHCP option (repeatable): NAME=[TYPE:]VALUE, e.g. "
                        "ntp-servers=10.0.0.1 or 224=text:rack-7; NAME= removes it"}
    for family in kind.families:
        flag = "--" + family.prefix.rstrip(".")
        sub.add_argument(flag, action="append", default=[], dest=f"family_{family.attr}",
                         metavar="KEY=VALUE", help=helps.get(family.attr, family.doc))


def family_changes(args: argparse.Namespace, kind) -> dict[str, str]:
    changes = {}
    for family in kind.families:
        for item in getattr(args, f"family_{family.attr}", []) or []:
            if "=" not in item:
                raise ValueError(f"--{family.prefix.rstrip('.')} {item!r}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            changes[family.prefix + key.strip()] = value
    return changes


def match_text(raw) -> str:
    """A group's selectors for ``group list``: ``tags=rack1,web hw.dmi.vendor=QEMU``."""
    return " ".join(f"{k[6:]}={v}" for k, v in sorted(raw.items()) if k.startswith("match."))


def add_host_verbs(verbs, common, selectors) -> None:
    """``host reinstall`` and ``host rescue`` (with the host selectors of ``set``)."""
    sub = verbs.add_parser("reinstall", parents=[common],
                           help="install once, then boot the local disk (the installer's done "
                                "callback switches the host to local)")
    selectors(sub)
    sub.add_argument("--profile", help="install this profile (it becomes the host's)")
    sub.add_argument("--dry-run", action="store_true", help="print what would change")
    sub.add_argument("--force", action="store_true", help="write even if the checks refuse")
    sub = verbs.add_parser("rescue", parents=[common],
                           help="boot a profile once (default live), then the host's usual boot")
    selectors(sub)
    sub.add_argument("--profile", help="the profile to boot once (e.g. live-rescue)")
    sub.add_argument("--mode", default="live", choices=("live", "install", "netroot",
                                                         "sanboot"),
                     help="its boot mode (default live)")
    sub.add_argument("--cancel", action="store_true", help="cancel a pending one-shot boot")
    sub.add_argument("--dry-run", action="store_true", help="print what would change")
    sub.add_argument("--force", action="store_true", help="write even if the checks refuse")


async def run_host_verb(args, ids, store, out, record, print_diff, print_warnings) -> int:
    from shared import oneshot

    if args.verb == "reinstall":
        written = await oneshot.reinstall(store, ids, profile=args.profile, force=args.force,
                                          dry_run=args.dry_run, record=record)
        what = "reinstall (install once, then local)"
    else:
        written = await oneshot.rescue(store, ids, profile=args.profile, mode=args.mode,
                                       cancel=args.cancel, force=args.force,
                                       dry_run=args.dry_run, record=record)
        what = ("one-shot boot cancelled" if args.cancel else
                f"rescue: {args.mode} {args.profile} once, at the next network boot")
    print_warnings(written)
    if args.dry_run:
        print_diff(written, out)
        print(f"dry run: {len(written.after)} hosts would change, nothing written", file=out)
        return 0
    for mac in sorted(ids):
        print(f"{mac}: {what}", file=out)
    return 0


async def show_effective(args, store, out) -> int:
    from shared import inventory_view

    found = await inventory_view.explain_host(store, args.id)
    if args.format:
        from cli.commands import _dump
        _dump(found, args.format, out)
        return 0
    print(f"host {found['mac']}: effective values (source in brackets)", file=out)
    groups = ", ".join(f"{g['name']} ({g['specificity']})" for g in found["groups"])
    print(f"  groups       {groups or '-'}", file=out)
    for name in ("profile", "boot_mode", "kernel", "cmdline", "kernel_args"):
        item = found[name]
        print(f"  {name:<12} {item['value'] if item['value'] not in (None, '') else '-'}  "
              f"[{item['source']}]", file=out)
    for section, label in (("vars", "var"), ("options", "option")):
        for key, item in found[section].items():
            print(f"  {label}.{key} = {item['value']}  [{item['source']}]", file=out)
    if "once" in found:
        print(f"  one-shot     {found['once']['mode']} {found['once']['profile']} at the next "
              "network boot", file=out)
    plan = found["plan"]
    line = plan["outcome"] + (f": {plan['reason']}" if plan.get("reason") else "")
    print(f"  boots        {line}", file=out)
    if plan.get("cmdline") is not None:
        print(f"  kernel args  {plan['cmdline'] or '-'}", file=out)
    for conflict in found["conflicts"]:
        print(f"  error: tie: {conflict}", file=out)
    return 1 if found["conflicts"] else 0


async def print_matches(store, name: str, out) -> None:
    """The hosts a group matches now, and whether it is their most specific group."""
    from shared.checks import parse_dump
    from shared.groups import matches, resolve, specificity

    records, _ = parse_dump(await store.dump())
    group = records["group"].get(name)
    if group is None:
        return
    hosts = [h for m, h in sorted(records["host"].items())
             if matches(group, h, records["subnet"])]
    print(f"  specificity  {specificity(group)}", file=out)
    print(f"  matches      {len(hosts)} host(s)", file=out)
    for host in hosts[:200]:
        found = resolve(host, records["group"].values(), records["subnet"])
        ties = [str(c) for c in found.conflicts if name in c.groups]
        print(f"    {host.mac} {host.hostname or ''}".rstrip()
              + (f"  tie: {'; '.join(ties)}" if ties else ""), file=out)
    if len(hosts) > 200:
        print(f"    ... and {len(hosts) - 200} more", file=sys.stderr)


async def effective_columns(store, objects) -> dict[str, dict[str, str]]:
    """For ``host list``: the profile and boot mode a host gets from its groups or its one-shot
    boot where they differ from its own fields, as ``debian12 (group:rack7)``. Nothing (and no
    extra read) when there is no group and no one-shot boot."""
    from shared.checks import parse_dump
    from shared.groups import resolve
    from shared.schema import KINDS

    if not any(raw.get("once_profile") for raw in objects.values()) and \
            not await store.keys(KINDS["group"]):
        return {}

    records, _ = parse_dump(await store.dump())
    out: dict[str, dict[str, str]] = {}
    for mac in objects:
        host = records["host"].get(mac)
        if host is None:
            continue
        found = resolve(host, records["group"].values(), records["subnet"])
        cells = {}
        for name in ("profile", "boot_mode"):
            source = found.sources.get(name, "host")
            if source != "host":
                cells[name] = f"{getattr(found.host, name)} ({source})"
        if cells:
            out[mac] = cells
    return out
