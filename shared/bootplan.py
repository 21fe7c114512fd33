"""What a host boots: one pure answer that every loader formats (docs/inventory.md "Boot plan").

``plan(mac, host, profile, export, facts)`` turns the inventory records and what the service
knows about itself (:class:`Facts`) into a :class:`Plan`: the boot mode's outcome, the kernel and
initrd :class:`Location` s, the kernel arguments (generated for the mode, then the profile's
``cmdline`` template rendered once), the block export's :class:`Target` and the install-file URL.
``records`` gives the host's effective record (its groups' settings and one-shot boot,
shared/groups.py, under its own fields: one resolution for every service); a host's
``kernel`` replaces the profile's and its ``kernel_args`` go after the cmdline.
The formatters only write it out: ``services/http/policy.py`` (iPXE script, GRUB over HTTP) and
``services/tftp/render.py`` (PXELINUX, GRUB over TFTP, iPXE over TFTP). So a host in a given mode
gets the same kernel arguments through every loader (tests/bootplan).

The checks of what goes into a script live in shared/scriptvalues.py (locations, kernel
arguments) and shared/bootcmdline.py (the cmdline template's sandbox), the context templates
see in shared/bootcontext.py, and the export -> target contract in shared/boottarget.py.

Pure: no sockets, no Redis, no clock. :func:`records` reads an in-memory inventory view.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from shared.bootcmdline import render_cmdline
from shared.bootcontext import (
    BOOTED_ARG,
    BOOTED_MODES,
    booted_url,
    install_urls,
    merged_vars,
)
from shared.boottarget import Target, initiator_iqn, target
from shared.groups import effective_host
from shared.records import Export, Host, Image, Profile, Subnet
from shared.schema import KINDS
from shared.scriptvalues import Location, PathMapper, PlanError, check_args, parse_location

# ------------------------------------------------------------------------------ vocabulary

OUTCOMES = ("install", "live", "netroot", "sanboot", "local", "disabled", "unknown", "error",
            "discovery")
# What an unknown MAC gets, for every service (http.unknown_host and tftp.unknown_host):
# discovery: record the machine, show a message, boot the next device (iPXE reports its details);
# with discovery.enabled (Facts.discovery), the discovery boot instead (discovery_plan);
# local: boot the local disk at once; none: no boot config at all (TFTP: ERROR 1 file not found,
# so the loader tries its next name; HTTP: a bare iPXE exit / GRUB exit); menu: an iPXE menu
# (menu_entries: discovery, the local disk, every profile with menu=yes); profile:<name>: that
# profile, as if the machine were a host of it (default_host).
UNKNOWN_HOST = ("discovery", "local", "none", "menu")
DEFAULT_PROFILE = "profile:"  # profile:<name>
# Old spellings, still accepted (deprecated): HTTP's "exit" was a bare exit, i.e. "none".
UNKNOWN_HOST_DEPRECATED = {"exit": "none"}



def unknown_host_choice(value: str) -> str:
    """The canonical unknown-host action for a setting value (old spellings mapped)."""
    low = value.strip().lower()
    low = UNKNOWN_HOST_DEPRECATED.get(low, low)
    if low.startswith(DEFAULT_PROFILE):
        name = low[len(DEFAULT_PROFILE):].strip()
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
            raise ValueError(f"{value!r}: profile:<name> names a profile (lower-case letters, "
                             "digits, '.', '_', '-')")
        return DEFAULT_PROFILE + name
    if low not in UNKNOWN_HOST:
        raise ValueError(f"must be one of {', '.join(UNKNOWN_HOST)} or profile:<name>")
    return low


def check_unknown_host(value: str) -> None:
    """The settings' check of ``http.unknown_host`` / ``tftp.unknown_host``."""
    unknown_host_choice(value)



# ------------------------------------------------------------------------------ the plan

@dataclasses.dataclass(frozen=True)
class Discovery:
    """The discovery boot (docs/discovery.md), from the ``discovery`` settings: the live image
    an unknown machine boots to report its hardware, and what it does afterwards."""

    kernel: str = "discovery/vmlinuz"
    initrd: tuple[str, ...] = ("discovery/initrd.img",)
    cmdline: str = ""  # more kernel arguments (a console)
    after: str = "poweroff"  # poweroff or wait, once reported
    poll: int = 30  # waiting: seconds between its questions "adopted yet?"


@dataclasses.dataclass(frozen=True)
class MenuEntry:
    """One entry of the unknown-host menu: ``discovery`` (the discovery boot's script),
    ``local`` (the local disk) or ``profile`` (boot that profile, :func:`default_host`)."""

    key: str  # iPXE label and menu item name: discovery, local, profile-<name>
    label: str  # what the menu shows
    kind: str  # discovery, local, profile
    profile: Profile | None = None
    export: Export | None = None


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the service knows about itself (all text, no I/O)."""

    base_url: str | None  # the HTTP service, http://10.0.0.1:8080 (None: TFTP without it)
    san_server: str = ""  # address of the AoE/iSCSI target
    initiator_prefix: str = "iqn.2026-11.org.bootyard"
    unknown_host: str = "discovery"
    unknown_delay: int = 10
    token: str | None = None  # the host's token, only when http.token_in_scripts is on
    subnet: Subnet | None = None
    discovery: Discovery | None = None  # discovery.enabled: the discovery boot, else None
    menu: tuple[MenuEntry, ...] = ()  # unknown_host menu: its entries (menu_entries)


@dataclasses.dataclass(frozen=True)
class Plan:
    mac: str
    outcome: str  # one of OUTCOMES
    who: str  # "web1 (52:54:00:12:34:56)" or the MAC
    host: Host | None = None
    profile: str | None = None  # profile name
    kernel: Location | None = None
    initrds: tuple[Location, ...] = ()
    args: tuple[str, ...] = ()  # kernel arguments: generated for the mode, then the cmdline
    target: Target | None = None  # netroot / sanboot
    initiator: str = ""  # iSCSI initiator name (iPXE initiator-iqn, rd.iscsi.initiator)
    hook: bool = False  # netroot over iBFT: iPXE must sanhook the target before the kernel
    install_url: str | None = None  # the profile's install file (kickstart, preseed, nocloud)
    reason: str = ""  # outcome "error": what is missing; "unknown": the unknown_host action

    @property
    def mode(self) -> str:
        return self.host.boot_mode if self.host else "unknown"

    @property
    def cmdline(self) -> str:
        return " ".join(self.args)


def records(inventory: Any, mac: str | None, unknown: str | None = None
            ) -> tuple[Host | None, Profile | None, Export | None]:
    """The one host -> profile -> export lookup: (host, its profile, its block export).
    The host is its effective record: its groups' settings under its own fields, and its
    one-shot boot (shared/groups.py); services never resolve groups themselves. An unknown MAC
    with ``unknown`` = ``profile:<name>`` (the unknown-host setting) is a host of that profile
    (:func:`default_host`). The export is the host's ``var.export``, else its profile's
    ``export``."""
    host = inventory.host(mac) if mac else None
    if host is not None:
        host = effective_host(inventory, host)
    elif mac and unknown and unknown.startswith(DEFAULT_PROFILE):
        host = default_host(mac, inventory.profile(unknown[len(DEFAULT_PROFILE):]))
    if host is None:  # (a pool client: the DHCP service asks once a packet)
        return None, None, None
    profile = inventory.profile(host.profile) if host.profile else None
    if profile is not None and profile.image:
        profile = with_image(profile, inventory.image(profile.image))
    name = host.vars.get("export") or (profile.export if profile else None)
    return host, profile, (inventory.export(name) if name else None)


def default_mode(profile: Profile) -> str:
    """How a profile boots a machine that is not a host (the unknown-host default and menu):
    ``live`` with a root image, else ``install`` with a kernel, else ``sanboot``."""
    if profile.root_image:
        return "live"
    if profile.kernel or not profile.export:
        return "install"
    return "sanboot"


UNKNOWN_DESCRIPTION = "bootyard: not in the inventory (the unknown-host default)"


def default_host(mac: str, profile: Profile | None) -> Host | None:
    """The host record an unknown MAC boots as under ``profile:<name>`` (None: no such
    profile, so the machine stays unknown)."""
    if profile is None:
        return None
    return Host(mac, profile=profile.name, boot_mode=default_mode(profile),
                description=UNKNOWN_DESCRIPTION)


def menu_entries(profiles, discovery: Any, exports: Any = None) -> tuple[MenuEntry, ...]:
    """The unknown-host menu: ``discovery`` when the discovery boot is on (``discovery``
    truthy: the :class:`Discovery` of ``discovery.enabled``), the local disk, then every
    profile with ``menu`` yes, by name.
    ``exports(name)`` finds a profile's block export."""
    out = []
    if discovery:
        out.append(MenuEntry("discovery", "Discover this machine (report its hardware)",
                             "discovery"))
    out.append(MenuEntry("local", "Boot from the local disk", "local"))
    for profile in sorted((p for p in profiles if p.menu), key=lambda p: p.name):
        label = f"{profile.name}: {profile.description}" if profile.description else \
            f"{profile.name} ({default_mode(profile)})"
        export = exports(profile.export) if exports and profile.export else None
        out.append(MenuEntry(f"profile-{profile.name}", label, "profile", profile, export))
    return tuple(out)


def with_image(profile: Profile, image: Image | None) -> Profile:
    """The profile with the files of its ``image`` where it names none of its own (its own
    kernel, initrd or root_image win). A missing image leaves the profile as it is: the plan
    then says so if the profile has no kernel of its own."""
    if image is None or not profile.image:
        return profile
    return dataclasses.replace(profile, kernel=profile.kernel or image.kernel,
                               initrd=profile.initrd or image.initrd,
                               root_image=profile.root_image or image.squashfs)


_INSTALL_URL = {"kickstart": "kickstart", "preseed": "preseed", "cloud-init": "nocloud"}

# The kernel arguments that make each installer fetch its file: a profile written with
# ``install`` and no ``cmdline`` gets this one (shared/inventory.py), so an installer boots
# with its file's URL (Debian/Ubuntu preseed, anaconda kickstart, cloud-init NoCloud).
INSTALL_CMDLINE = {
    "preseed": "auto=true priority=critical url={{ urls.preseed }}",
    "kickstart": "inst.ks={{ urls.kickstart }} inst.ks.sendmac",
    "cloud-init": "ds=nocloud;s={{ urls.nocloud }}",
}



def plan(mac: str, host: Host | None, profile: Profile | None, export: Export | None,
         facts: Facts) -> Plan:
    """What ``mac`` boots. Inventory gaps give ``outcome="error"`` with the reason; a failing
    cmdline template raises :class:`TemplateFailed`."""
    if host is None:
        action = unknown_host_choice(facts.unknown_host)
        if action == "discovery" and facts.discovery is not None:
            return discovery_plan(mac, facts)
        return Plan(mac, "unknown", mac, reason=action)
    who = f"{host.hostname} ({mac})" if host.hostname else mac
    base = Plan(mac, host.boot_mode, who, host, host.profile)
    if not host.enabled:
        return dataclasses.replace(base, outcome="disabled")
    if host.boot_mode == "local":
        return base
    try:
        return _boot(base, host, profile, export, facts)
    except PlanError as exc:
        return dataclasses.replace(base, outcome="error", reason=str(exc))


def discovery_url(base_url: str, mac: str | None = None) -> str:
    """The discovery boot's iPXE script for ``mac`` (None: iPXE's own ``${mac}``, for a menu
    entry): ``<base>/boot/discovery.ipxe?mac=...``."""
    return f"{base_url.rstrip('/')}/boot/discovery.ipxe?mac={mac or '${mac}'}"


def discovery_plan(mac: str, facts: Facts) -> Plan:
    """The discovery boot of ``mac`` (any MAC, known or not): the discovery image's kernel and
    initrd, told which NIC is its own (``bootyard.mac``), where to report
    (``bootyard.server``) and what to do then (``bootyard.after``), plus
    ``discovery.cmdline``. ``outcome="error"`` when discovery is off or the image path is bad."""
    found = facts.discovery
    base = Plan(mac, "discovery", mac, reason="discovery")
    if found is None or not facts.base_url:
        return dataclasses.replace(base, outcome="error", reason="discovery is not enabled "
                                   "(discovery.enabled)")
    try:
        kernel = _location("discovery.kernel", found.kernel)
        initrds = tuple(_location("discovery.initrd", i) for i in found.initrd)
        args = [f"bootyard.mac={mac}", f"bootyard.server={facts.base_url.rstrip('/')}",
                f"bootyard.after={found.after}", f"bootyard.poll={found.poll}",
                *found.cmdline.split()]
        check_args(args, "discovery.cmdline")
    except PlanError as exc:
        return dataclasses.replace(base, outcome="error", reason=str(exc))
    return dataclasses.replace(base, kernel=kernel, initrds=initrds, args=tuple(args))


def _need_export(profile: Profile, export: Export | None) -> Export:
    if export is None:
        raise PlanError(f"profile {profile.name} names no usable block export "
                        f"(export={profile.export or 'unset'})")
    return export


def _location(what: str, value: str) -> Location:
    """``value`` as a :class:`Location`, or PlanError naming ``what`` it is (``profile debian12
    kernel``, ``discovery.initrd``) and why."""
    try:
        return parse_location(value)
    except ValueError as exc:
        raise PlanError(f"{what}={value!r}: {exc}") from None


def _boot(base: Plan, host: Host, profile: Profile | None, export: Export | None,
          facts: Facts) -> Plan:
    if profile is None:
        raise PlanError(f"no profile (host profile={host.profile or 'unset'})")
    mode = host.boot_mode
    mapper = PathMapper(facts.base_url)
    base = dataclasses.replace(base, profile=profile.name)
    if mode == "sanboot":
        tgt = target(_need_export(profile, export), facts.san_server)
        iqn = initiator_iqn(host, profile, facts.initiator_prefix) if tgt.kind == "iscsi" else ""
        _check_target(host, tgt, iqn)
        return dataclasses.replace(base, target=tgt, initiator=iqn)
    if host.kernel:  # the host's (or its group's) own kernel, rare
        kernel = _location(f"host {host.mac} kernel", host.kernel)
    elif not profile.kernel and profile.image:
        raise PlanError(f"profile {profile.name} image={profile.image}: no such image (key "
                        f"{KINDS['image'].key(profile.image)}; bootyard image import)")
    elif not profile.kernel:
        raise PlanError(f"profile {profile.name} has no kernel")
    else:
        kernel = _location(f"profile {profile.name} kernel", profile.kernel)
    initrds = tuple(_location(f"profile {profile.name} initrd", i) for i in profile.initrd)
    args: list[str] = []
    tgt, iqn, hook = None, "", False
    if mode == "live":
        if not profile.root_image:
            raise PlanError(f"profile {profile.name} has no root_image for live boot")
        root = mapper.http_url(_location(f"profile {profile.name} root_image",
                                         profile.root_image))
        args += ([f"root=live:{root}", "ip=dhcp", "rd.neednet=1"]
                 if profile.live_style == "dracut" else [f"rooturl={root}", "ip=dhcp"])
    elif mode == "netroot":
        tgt = target(_need_export(profile, export), facts.san_server)
        if tgt.kind == "aoe":
            args.append(f"root=/dev/etherd/{tgt.aoe_name}")
            if profile.netroot_style == "dracut":
                args += [f"netroot=aoe:{tgt.aoe_name}", "rd.neednet=1"]
            args.append("ip=dhcp")
        else:
            iqn = initiator_iqn(host, profile, facts.initiator_prefix)
            _check_target(host, tgt, iqn)
            if merged_vars(host, profile).get("iscsi") == "ibft":
                hook = True
                args += ["rd.iscsi.firmware=1", "rd.iscsi.ibft=1", "netroot=iscsi:ibft"]
            else:
                args += [f"netroot={tgt.san_uri}", f"rd.iscsi.initiator={iqn}", "ip=dhcp",
                         "rd.neednet=1"]
    if mode in BOOTED_MODES and facts.base_url:
        args.append(f"{BOOTED_ARG}={booted_url(facts.base_url.rstrip('/'), host.mac, facts.token)}")
    check_args(args, f"host {host.mac} {mode}")
    cmdline = render_cmdline(host, profile, facts) if profile.cmdline else ""
    if cmdline:
        args.append(cmdline)
    if host.kernel_args:  # the host's (or its group's) extra arguments, after the cmdline
        check_args((host.kernel_args,), f"host {host.mac} kernel_args")
        args.append(host.kernel_args)
    install = None
    if facts.base_url and profile.install in _INSTALL_URL:
        urls = install_urls(facts.base_url.rstrip("/"), host.mac, facts.token)
        install = urls[_INSTALL_URL[profile.install]]
    return dataclasses.replace(base, kernel=kernel, initrds=initrds, args=tuple(args),
                               target=tgt, initiator=iqn, hook=hook, install_url=install)


def _check_target(host: Host, tgt: Target, iqn: str) -> None:
    check_args((iqn,), f"{KINDS['host'].key(host.mac)} var.initiator_iqn (iSCSI initiator name)")
    check_args((tgt.san_uri,), f"{KINDS['export'].key(tgt.export)} (target)")
