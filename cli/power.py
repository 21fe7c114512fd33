"""``bootyard power on|off|cycle|status``: power control of hosts (docs/power.md).

Hosts are chosen as elsewhere in the CLI: MACs, ``--tag``, ``--profile``, ``--subnet`` (or
``--all``); several hosts are handled at once (``power.concurrency``), and each gets one line:
MAC, method, action, outcome, power state, and what was done or why it failed. The exit status is
1 if any host failed. The settings (``power`` section, and ``dhcp.interfaces`` for the
Wake-on-LAN interface) come from BOOTYARD_CONFIG and BOOTYARD_POWER__* variables.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from services.dhcp.settings import DhcpSection
from shared import settings as settings_mod
from shared.powerctl import PowerSection


@dataclasses.dataclass(frozen=True)
class PowerCliSettings(settings_mod.CommonSettings):
    dhcp: DhcpSection = dataclasses.field(default_factory=DhcpSection)
    power: PowerSection = dataclasses.field(default_factory=PowerSection)


def add_parser(commands, common) -> None:
    from shared.power import ACTIONS

    sub = commands.add_parser(
        "power", parents=[common], help="power hosts on, off, cycle them, or read their state",
        description="Power control through each host's BMC (IPMI, Redfish) or Wake-on-LAN "
                    "(docs/power.md). One line per host; exit status 1 if any failed.")
    sub.add_argument("action", choices=ACTIONS)
    sub.add_argument("ids", nargs="*", metavar="MAC", help="one or more MACs (or a selector)")
    sub.add_argument("--tag", dest="select_tag", metavar="TAG", help="hosts with this tag")
    sub.add_argument("--profile", dest="select_profile", metavar="NAME",
                     help="hosts of this profile")
    sub.add_argument("--subnet", dest="select_subnet", metavar="NAME",
                     help="hosts whose fixed address is in this subnet")
    sub.add_argument("--all", action="store_true", help="every host with power control")
    sub.add_argument("--no-pxe", action="store_true",
                     help="on, cycle: do not ask the BMC for a one-time network (PXE) boot")
    sub.add_argument("--json", action="store_true", help="one JSON object per host")


def load_settings(environ) -> PowerCliSettings:
    return settings_mod.load_settings(PowerCliSettings, None, environ)


async def run(args, store, client, out) -> int:
    from cli.commands import CliError, who
    from shared import inventory_view, powerctl
    from shared.events import EventLog
    from shared.schema import KINDS

    try:
        cfg = load_settings(os.environ)
    except settings_mod.SettingsError as exc:
        raise CliError(f"settings error: {exc}") from None
    host = KINDS["host"]
    selectors = {"tag": args.select_tag, "profile": args.select_profile,
                 "subnet": args.select_subnet}
    if not args.ids and not any(selectors.values()) and not args.all:
        raise CliError(f"name the hosts to power {args.action}: one or more MACs, --tag, "
                       "--profile, --subnet or --all")
    objects = await store.raw_all(host)
    if args.all:
        macs = sorted(m for m, raw in objects.items() if raw.get("power"))
    else:
        macs = await inventory_view.select(store, host, args.ids, objects=objects, **selectors)
    if not macs:
        raise CliError("no host matches" + (" (none has power control set)" if args.all else ""))
    events = EventLog(client, "cli")
    results = await powerctl.act(store, events, macs, args.action, who=who(),
                                 settings=cfg.power, deploy_interfaces=cfg.dhcp.interfaces,
                                 pxe=False if args.no_pxe else None)
    await events.flush()
    for result in results:
        if args.json:
            print(json.dumps(result.json()), file=out)
        else:
            print(result.line(), file=out)
    bad = [r for r in results if not r.ok]
    if len(results) > 1:
        counts = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        print(f"{len(results)} hosts: " + ", ".join(f"{n} {o}" for o, n in sorted(
            counts.items())), file=sys.stderr)
    return 1 if bad else 0
