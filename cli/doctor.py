"""``bootyard doctor [MAC]``: what will fail, before a machine is powered on (docs/doctor.md).

With a MAC: first the inventory (the host's record, its profile, its export, its subnet,
reservation conflicts, its boot plan and the files it names; the rules are those of
:mod:`shared.inventory` and :mod:`shared.bootplan`, never restated here), then live probes from
the deploy host acting as that host's firmware: a DHCP DISCOVER/REQUEST with the host's MAC for
each architecture its profile allows (then a RELEASE: no lease is left behind), the same as iPXE
would send it, a TFTP size probe of each boot file, an HTTP fetch of its iPXE script and HEAD of
its kernel, initrds and install file. Without a MAC: the deploy host itself (the services'
``/healthz``, Redis reachable and persistent, the DHCP interfaces, loaders and images present).

Each step is one line: ``PASS``, ``FAIL`` (with the reason and the fix) or ``SKIP`` (why). The
exit status is 1 if any step failed.

The DHCP probe sends only on an interface the DHCP service is configured for
(``dhcp.interfaces``), from a UDP socket bound to that interface: the broadcast DISCOVER is looped
back to the local DHCP service (as from a machine on that network) and goes out on the wire,
where another DHCP server would answer too (and is reported). The probes show in the host's
timeline between ``doctor.start`` and ``doctor.end`` events; its boot state ignores them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cli.doctor_block import block_checks
from cli.doctor_host import deploy_host_checks
from cli.doctor_probes import dhcp_checks, http_checks, tftp_checks
from cli.doctor_report import DoctorSettings, Found, Report, base_url
from shared import attempts, bootcmdline, bootplan, checks, paths, scriptvalues
from shared.addresses import normalise_mac
from shared.events import EventLog
from shared.leases import Leases
from shared.schema import KINDS
from shared.store import InventoryStore
from shared.validation import parse_record

__all__ = ["DoctorSettings", "Report", "load_settings", "run"]


# ------------------------------------------------------------------------------ the inventory
async def inventory_checks(report: Report, store: InventoryStore, client, mac: str,
                           cfg: DoctorSettings) -> Found:
    found = Found()
    dump = await store.dump()
    problems = checks.validate_dump(dump)
    host_key = KINDS["host"].key(mac)

    def problems_of(key: str, area: str, what: str, fix: str) -> bool:
        bad = [p for p in problems if p.key == key]
        for p in bad:
            report.add(area, what, False if p.severity == "error" else None,
                       f"{p.field}={p.value!r}: {p.reason}" + (" (warning)"
                                                               if p.severity != "error" else ""),
                       fix)
        return not any(p.severity == "error" for p in bad)

    raw = dump.get("host", {}).get(mac)
    if raw is None:
        report.add("inventory", "host record", False, f"no host {mac} in the inventory (it gets "
                   f"http.unknown_host: {cfg.http.unknown_host})",
                   f"bootyard host add {mac} --profile NAME")
        return found
    host, _ = parse_record(KINDS["host"], mac, raw)
    found.host = host
    if problems_of(host_key, "inventory", "host record", f"bootyard host set {mac} ...") and \
            host is not None:
        report.add("inventory", "host record", True,
                   f"{host.hostname or '(no hostname)'}, boot_mode {host.boot_mode}, "
                   f"profile {host.profile or '(none)'}, ip {host.ip or '(pool)'}")
    if host is None:
        return found
    if not host.enabled:
        report.add("inventory", "enabled", False, "the host is disabled: DHCP ignores it and "
                   "its script boots nothing", f"bootyard host set {mac} --enabled true")
    host_, profile, export = _records(dump, mac)
    netboots = [parse_record(KINDS["netboot"], n, r)[0] for n, r in
                dump.get("netboot", {}).items()]
    found.netboots = tuple(sorted(i.title or i.name for i in netboots
                                  if i is not None and i.enabled))
    found.profile, found.export = profile, export
    if host.profile:
        key = KINDS["profile"].key(host.profile)
        if host.profile in dump.get("profile", {}):
            if problems_of(key, "inventory", "profile", f"bootyard profile set {host.profile} ..."):
                report.add("inventory", "profile", True,
                           f"{host.profile}: install {profile.install}, kernel "
                           f"{profile.kernel or '(none)'}")
    if profile is not None and profile.export:
        key = KINDS["export"].key(profile.export)
        if problems_of(key, "inventory", "export", f"bootyard blockexport set {profile.export}"
                                                    " ...") and export is not None:
            report.add("inventory", "export", True, f"{export.name}: {export.kind}")
    subnets = {n: parse_record(KINDS["subnet"], n, r)[0]
               for n, r in dump.get("subnet", {}).items()}
    if host.ip:
        found.subnet = next((s for s in subnets.values() if s is not None and
                             _contains(s.network, host.ip)), None)
        if found.subnet is not None:
            report.add("inventory", "subnet", True, f"{host.ip} is in subnet {found.subnet.name}"
                       f" ({found.subnet.network})")
        lease = await Leases(client).lease(host.ip)
        if lease is not None and lease.mac != mac and lease.current():
            report.add("inventory", "reservation", False,
                       f"{host.ip} is leased to {lease.mac} until "
                       f"{time.strftime('%H:%M:%S', time.localtime(lease.expires))}",
                       "give the host another ip, or let that lease end (bootyard leases)")
        elif not [p for p in problems if p.key == host_key and p.field == "ip"]:
            report.add("inventory", "reservation", True, f"{host.ip} is this host's alone")
    elif not subnets:
        report.add("inventory", "subnet", False, "no subnet in the inventory: DHCP answers "
                   "nobody", "bootyard subnet add NAME --network ... --ranges ...")
    else:
        report.add("inventory", "subnet", True, "no reserved address: it gets one from the "
                   "pool of its network's subnet")
    facts = bootplan.Facts(base_url=base_url(cfg), san_server=cfg.http.san_server,
                           initiator_prefix=cfg.http.initiator_prefix,
                           unknown_host=cfg.http.unknown_host, subnet=found.subnet)
    try:
        plan = bootplan.plan(mac, host_, profile, export, facts)
    except bootcmdline.TemplateFailed as exc:
        report.add("inventory", "boot plan", False, f"the profile's cmdline does not render: "
                   f"{exc}", f"bootyard profile set {host.profile} --cmdline ...")
        return found
    found.plan = plan
    if plan.outcome == "error":
        report.add("inventory", "boot plan", False, plan.reason,
                   f"bootyard host show {mac}; bootyard profile show {host.profile or 'NAME'}")
    elif plan.outcome == "disabled":
        pass  # said above
    else:
        what = [plan.outcome]
        if plan.kernel:
            what.append(f"kernel {plan.kernel.value}")
        what += [f"initrd {i.value}" for i in plan.initrds]
        if plan.target:
            what.append(f"{plan.target.kind} target {plan.target.export}")
        report.add("inventory", "boot plan", True, ", ".join(what))
        _local_files(report, plan, profile, cfg)
    return found


def _records(dump, mac: str):
    """bootplan.records() on the dump (the one host -> profile -> export lookup)."""
    class View:
        def host(self, m):
            raw = dump.get("host", {}).get(m)
            return parse_record(KINDS["host"], m, raw)[0] if raw else None

        def profile(self, name):
            raw = dump.get("profile", {}).get(name)
            return parse_record(KINDS["profile"], name, raw)[0] if raw else None

        def export(self, name):
            raw = dump.get("export", {}).get(name)
            return parse_record(KINDS["export"], name, raw)[0] if raw else None

        def all(self, kind):  # groups and subnets: the host's groups are resolved
            found = (parse_record(KINDS[kind], i, raw)[0]
                     for i, raw in dump.get(kind, {}).items())
            return [r for r in found if r is not None]
        def image(self, name):
            raw = dump.get("image", {}).get(name)
            return parse_record(KINDS["image"], name, raw)[0] if raw else None
    return bootplan.records(View(), mac)


def _contains(network, ip: str) -> bool:
    import ipaddress
    return ipaddress.IPv4Address(ip) in network


def _local_files(report: Report, plan: bootplan.Plan, profile, cfg: DoctorSettings) -> None:
    """The plan's images under http.images_root, when the doctor runs where they are."""
    root = Path(cfg.http.images_root)
    if not root.is_dir():
        report.add("host", "images", None, f"http.images_root {root} is not here: the HTTP "
                   "probes check the files")
        return
    locations = [plan.kernel, *plan.initrds]
    if profile is not None and profile.root_image and plan.outcome == "live":
        locations.append(scriptvalues.parse_location(profile.root_image))
    for loc in locations:
        if loc is None or loc.scheme != "image":
            continue
        try:
            path = paths.resolve_under(root, loc.value)
        except paths.PathRefused as exc:
            report.add("host", f"image {loc.value}", False, str(exc), "fix the profile's path")
            continue
        if path.is_file():
            report.add("host", f"image {loc.value}", True, f"{path} ({path.stat().st_size} "
                       "bytes)")
        else:
            report.add("host", f"image {loc.value}", False, f"{path} is missing",
                       f"put the file at {path}")


# ------------------------------------------------------------------------------ entry
async def run(args, store: InventoryStore, client, out) -> int:
    cfg = getattr(args, "doctor_settings", None) or DoctorSettings()
    report = Report(out)
    if not args.mac:
        await deploy_host_checks(report, store, cfg)
        return report.summary()
    mac = normalise_mac(args.mac)
    found = await inventory_checks(report, store, client, mac, cfg)
    if args.no_probe or found.host is None:
        if found.host is None:
            report.add("dhcp", "probes", None, "no host record to probe for")
        return report.summary()
    log = EventLog(client, "cli")
    log.emit("doctor.start", mac)
    await log.flush()
    # the probes' DISCOVER would begin a boot attempt (shared/attempts.py): put it back after
    attempt = await attempts.current(client, mac)
    try:
        answers = await dhcp_checks(report, client, mac, found, cfg, args.interface, args.force)
        tftp_checks(report, answers, cfg)
        await http_checks(report, client, mac, found, answers, cfg)
        if found.plan is not None and found.plan.target is not None:
            await block_checks(report, found.plan.target, cfg, args.interface)
    finally:
        log.emit("doctor.end", mac)
        await log.flush()
        await attempts.put_back(client, mac, attempt)
    return report.summary()


def load_settings(environ=None) -> DoctorSettings:
    from shared import settings as settings_mod
    return settings_mod.load_settings(DoctorSettings, None, dict(environ or os.environ))
