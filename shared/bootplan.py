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

Everything that goes into a script is checked here, once: locations are typed and refused unless
they are a clean path under the images root, an http(s) URL or a tftp URL
(:func:`parse_location`, also used by shared/schema.py at write time); kernel arguments must be
printable, one line, with no ``$`` (iPXE and GRUB expand it) and no ``||``/``&&`` word (iPXE
runs them) (:func:`check_args`). The cmdline template renders in a sandbox with strict undefined
variables and hard limits (:func:`check_template`, :func:`render_cmdline`): no loops, macros,
blocks or ``set``, calls only to a few string methods, a size cap on ``*``/``+``/``**`` results
and on the output. Its context (:func:`template_context`) holds no secret (token, done URL)
unless ``http.token_in_scripts`` is on.

Pure: no sockets, no Redis, no clock. :func:`records` reads an in-memory inventory view.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import urllib.parse
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from shared.groups import effective_host
from shared.schema import KINDS, Export, Host, Image, Profile, Subnet, plain

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

MAX_CMDLINE = 2048       # rendered kernel arguments (x86 Linux COMMAND_LINE_SIZE)
MAX_TEMPLATE = 4096      # cmdline template source
MAX_VALUE = 4096         # any intermediate string/list a cmdline template builds
MAX_EXPONENT = 64

DEFAULT_PORTS = {"http": 80, "https": 443, "tftp": 69}


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


class PlanError(ValueError):
    """The inventory does not say enough to boot this host; the text names record and field."""


class TemplateFailed(Exception):
    """A template failed to render. ``template`` names it (``profile X cmdline``), ``reason``
    says why: both are for the log and events, not for the public answer."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"template {template}: {reason}")
        self.template = template
        self.reason = reason


# ------------------------------------------------------------------------------ locations

# Characters a location may hold: what a URL needs, minus what any loader's script syntax gives
# a meaning to (whitespace, quotes, $, ;, |, backquote, backslash, braces, <>, #).
_LOCATION_CHARS = re.compile(r"[A-Za-z0-9._~:/?=&%+,@!*()\[\]-]+")
_IMAGE_PATH = re.compile(r"[A-Za-z0-9._~+,@-]+(/[A-Za-z0-9._~+,@-]+)*")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a kernel, initrd or root image is: ``image`` (a path under the images root,
    served by TFTP under ``/<images_prefix>/`` and by HTTP under ``/images/``), or a URL
    (``http``, ``https``, ``tftp``) used as is."""

    scheme: str  # image, http, https, tftp
    value: str   # the path (no leading '/') or the whole URL
    host: str = ""  # URL host[:port] (netloc)
    path: str = ""  # URL path

    @property
    def name(self) -> str:
        """The file name (last path component)."""
        return posixpath.basename(self.value if self.scheme == "image" else self.path)


def parse_location(text: str) -> Location:
    """A profile's kernel/initrd/root_image value as a :class:`Location`; ValueError says why."""
    if not text or not _LOCATION_CHARS.fullmatch(text):
        raise ValueError("a path under the images root or an http://, https:// or tftp:// URL, "
                         "without spaces, quotes or any of $ ; | ` \\ { } < > #")
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https", "tftp"):
            raise ValueError(f"URL scheme {parts.scheme!r}: only http, https and tftp are "
                             "loaded by every loader")
        if not parts.hostname:
            raise ValueError("the URL names no server")
        if parts.scheme == "tftp" and (parts.query or parts.fragment):
            raise ValueError("a tftp URL has no query")
        return Location(parts.scheme, text, parts.netloc, parts.path or "/")
    path = text.lstrip("/")
    if not _IMAGE_PATH.fullmatch(path) or any(p in (".", "..") for p in path.split("/")):
        raise ValueError("a path under the images root: names of letters, digits and "
                         "'. _ ~ + , @ -', separated by '/', no '.' or '..'")
    return Location("image", path)


class PathMapper:
    """Where a :class:`Location` is fetched from, per transport: the one place that writes
    image paths as TFTP paths or HTTP URLs."""

    def __init__(self, base_url: str | None, images_prefix: str = "images") -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.images_prefix = images_prefix.strip("/")

    def tftp_path(self, loc: Location) -> str:
        """For a loader that fetches over TFTP from its own server: ``/<prefix>/<path>``."""
        return "/" + "/".join(p for p in (self.images_prefix, loc.value) if p)

    def http_url(self, loc: Location) -> str:
        """An image as a URL of the HTTP service (URLs unchanged)."""
        if loc.scheme != "image":
            return loc.value
        if self.base_url is None:
            raise PlanError(f"{loc.value}: an image served over HTTP needs the HTTP service's "
                            "base URL (tftp.http_base_url)")
        return f"{self.base_url}/images/{urllib.parse.quote(loc.value, safe='/._-~+')}"


def grub_device_path(url: str) -> str:
    """``scheme://server[:port]/path`` as GRUB's ``(scheme,server[:port])/path``; the
    scheme's default port is left out."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port
    server = parts.hostname or ""
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme):
        server = f"{server}:{port}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"({parts.scheme},{server}){path}"


_GRUB_PLAIN = re.compile(r"[A-Za-z0-9._,:/=@+%-]+")


def grub_word(word: str) -> str:
    """One GRUB word: plain, or single-quoted (no ``$`` expansion inside single quotes)."""
    if _GRUB_PLAIN.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


# ------------------------------------------------------------------------------ targets

@dataclasses.dataclass(frozen=True)
class Target:
    """The export -> target contract: how a host reaches its block export (shared with the
    block export service). AoE: ``e<shelf>.<slot>``; iSCSI: portal, target IQN and LUN."""

    export: str
    kind: str  # aoe or iscsi
    portal: str = ""  # iSCSI: address of the target (http.san_server)
    iqn: str = ""
    lun: int = 1
    shelf: int | None = None
    slot: int | None = None

    @property
    def aoe_name(self) -> str:
        return f"e{self.shelf}.{self.slot}"

    @property
    def san_uri(self) -> str:
        """iPXE's / dracut's SAN URI (``iscsi:SERVER:::LUN:IQN``, ``aoe:eS.L``)."""
        if self.kind == "aoe":
            return f"aoe:{self.aoe_name}"
        return f"iscsi:{self.portal}:::{self.lun}:{self.iqn}"


def target(export: Export, portal: str) -> Target:
    if export.kind == "aoe":
        return Target(export.name, "aoe", shelf=export.aoe_shelf, slot=export.aoe_slot)
    if not portal:
        raise PlanError(f"export {export.name}: the iSCSI target's address is not known "
                        "(set http.san_server, or tftp.http_base_url for TFTP loaders)")
    return Target(export.name, "iscsi", portal=portal, iqn=export.iqn or "", lun=export.lun)


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
    profile = inventory.profile(host.profile) if host and host.profile else None
    if profile is not None and profile.image:
        profile = with_image(profile, inventory.image(profile.image))
    name = (host.vars.get("export") if host else None) or (profile.export if profile else None)
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


def merged_vars(host: Host | None, profile: Profile | None) -> dict[str, str]:
    """The one host-over-profile variable overlay: the profile's ``var.*``, then the host's
    (a host's empty value does not hide the profile's: :func:`var` answers the same)."""
    out: dict[str, str] = dict(profile.vars) if profile else {}
    if host:
        out.update((k, v) for k, v in host.vars.items() if v)
    return out


def var(name: str, host: Host | None, profile: Profile | None) -> str | None:
    """One variable of :func:`merged_vars` without building the overlay (DHCP asks this per
    packet): the host's non-empty value, else the profile's, else None."""
    for record in (host, profile):
        if record is not None and record.vars.get(name):
            return record.vars[name]
    return None


def initiator_iqn(host: Host, profile: Profile | None, prefix: str) -> str:
    """The host's iSCSI initiator name: ``var.initiator_iqn``, else <prefix>:<hostname or MAC>."""
    named = merged_vars(host, profile).get("initiator_iqn")
    return named or f"{prefix}:{host.hostname or host.mac.replace(':', '')}"


def install_urls(base_url: str, mac: str, token: str | None = None) -> dict[str, str]:
    """The per-host install URLs (the contract in docs/http.md); ``token`` is appended if given."""
    suffix = f"?token={token}" if token else ""
    root = f"{base_url}/install/{mac}"
    return {
        "kickstart": f"{root}/ks.cfg{suffix}",
        "preseed": f"{root}/preseed.cfg{suffix}",
        "nocloud": f"{root}/",  # cloud-init ds=nocloud;s=<this> appends user-data, meta-data
        "user_data": f"{root}/user-data{suffix}",
        "meta_data": f"{root}/meta-data{suffix}",
        "vendor_data": f"{root}/vendor-data{suffix}",
        "done": f"{root}/done{suffix}",
        "booted": booted_url(base_url, mac, token),
        "script": f"{base_url}/boot/{mac}.ipxe",
    }


BOOTED_ARG = "bootyard.booted"  # the kernel argument naming the host's booted URL
BOOTED_MODES = ("live", "netroot", "sanboot")  # the OS says it is up (docs/http.md)


def booted_url(base_url: str, mac: str, token: str | None = None) -> str:
    """The URL a live, netroot or sanboot system calls once it is up (docs/http.md): its
    reserved or leased address, or its token, lets it in, as for the done callback."""
    return f"{base_url}/booted/{mac}" + (f"?token={token}" if token else "")


_INSTALL_URL = {"kickstart": "kickstart", "preseed": "preseed", "cloud-init": "nocloud"}

# The kernel arguments that make each installer fetch its file: a profile written with
# ``install`` and no ``cmdline`` gets this one (shared/inventory.py), so an installer boots
# with its file's URL (Debian/Ubuntu preseed, anaconda kickstart, cloud-init NoCloud).
INSTALL_CMDLINE = {
    "preseed": "auto=true priority=critical url={{ urls.preseed }}",
    "kickstart": "inst.ks={{ urls.kickstart }} inst.ks.sendmac",
    "cloud-init": "ds=nocloud;s={{ urls.nocloud }}",
}


def template_context(mac: str, host: Host | None, profile: Profile | None,
                     subnet: Subnet | None, base_url: str | None, *, url_token: str | None,
                     done_token: str | None, server_ip: str = "") -> dict[str, Any]:
    """The variables a template sees (docs/http.md "Template contexts").

    ``url_token`` goes on the install URLs (``urls.kickstart`` ...). ``done_token`` is the
    host's token for the done callback: with it the context holds ``token``, ``done_url`` and
    ``urls.done``; without it none of the three. Install files (served only to the host) get
    both; boot scripts and kernel command lines (which anyone may fetch) get neither unless
    ``http.token_in_scripts`` is on.
    """
    host_d = plain(host)
    out: dict[str, Any] = {"mac": mac, "host": host_d or {"mac": mac},
                           "profile": plain(profile), "vars": merged_vars(host, profile),
                           "hw": host_d.get("hw") or {}}
    subnet_d = plain(subnet) or None
    if subnet is not None:
        subnet_d["netmask"] = str(subnet.network.netmask)
        subnet_d["prefixlen"] = subnet.network.prefixlen
    out["subnet"] = subnet_d
    if base_url:
        base = base_url.rstrip("/")
        urls = install_urls(base, mac, url_token)
        urls.update(base=base, images=f"{base}/images", mirror=f"{base}/mirror")
        del urls["done"]
        if done_token:
            urls["done"] = install_urls(base, mac, done_token)["done"]
            out["done_url"] = urls["done"]
            out["token"] = done_token
        out["urls"] = urls
        out["server"] = {"url": base, "ip": server_ip,
                         "host": urllib.parse.urlsplit(base).netloc}
    return out


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
        kernel = _discovery_location("discovery.kernel", found.kernel)
        initrds = tuple(_discovery_location("discovery.initrd", i) for i in found.initrd)
        args = [f"bootyard.mac={mac}", f"bootyard.server={facts.base_url.rstrip('/')}",
                f"bootyard.after={found.after}", f"bootyard.poll={found.poll}",
                *found.cmdline.split()]
        check_args(args, "discovery.cmdline")
    except PlanError as exc:
        return dataclasses.replace(base, outcome="error", reason=str(exc))
    return dataclasses.replace(base, kernel=kernel, initrds=initrds, args=tuple(args))


def _discovery_location(setting: str, value: str) -> Location:
    try:
        return parse_location(value)
    except ValueError as exc:
        raise PlanError(f"{setting}={value!r}: {exc}") from None


def _need_export(profile: Profile, export: Export | None) -> Export:
    if export is None:
        raise PlanError(f"profile {profile.name} names no usable block export "
                        f"(export={profile.export or 'unset'})")
    return export


def _location(profile: Profile, field: str, value: str) -> Location:
    try:
        return parse_location(value)
    except ValueError as exc:
        raise PlanError(f"profile {profile.name} {field}={value!r}: {exc}") from None


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
        try:
            kernel = parse_location(host.kernel)
        except ValueError as exc:
            raise PlanError(f"host {host.mac} kernel={host.kernel!r}: {exc}") from None
    elif not profile.kernel and profile.image:
        raise PlanError(f"profile {profile.name} image={profile.image}: no such image (key "
                        f"{KINDS['image'].key(profile.image)}; bootyard image import)")
    elif not profile.kernel:
        raise PlanError(f"profile {profile.name} has no kernel")
    else:
        kernel = _location(profile, "kernel", profile.kernel)
    initrds = tuple(_location(profile, "initrd", i) for i in profile.initrd)
    args: list[str] = []
    tgt, iqn, hook = None, "", False
    if mode == "live":
        if not profile.root_image:
            raise PlanError(f"profile {profile.name} has no root_image for live boot")
        root = mapper.http_url(_location(profile, "root_image", profile.root_image))
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


# ------------------------------------------------------------------------------ the one check

_FORBIDDEN_WORDS = ("||", "&&")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def args_problem(text: str) -> str | None:
    """Why ``text`` cannot go on a kernel command line in a script, or None. One line of
    printable text; no ``$`` (iPXE and GRUB expand it); no ``||``/``&&`` word (iPXE runs what
    follows as a command)."""
    control = _CONTROL.search(text)
    if control is not None:
        return (f"control character {control.group()!r} (a line break would start a new script "
                "command)")
    if "$" in text:
        return "'$' (iPXE and GRUB expand ${...} in scripts)"
    for word in text.split():
        if word in _FORBIDDEN_WORDS or word.startswith(_FORBIDDEN_WORDS):
            return f"{word!r} (iPXE would run what follows as a command)"
    return None


def check_args(args, what: str) -> None:
    for arg in args:
        problem = args_problem(arg)
        if problem:
            raise PlanError(f"{what}={arg[:80]!r} cannot go into a boot script: {problem}")


# ------------------------------------------------------------------------------ cmdline template

_ALLOWED_FILTERS = frozenset({
    "default", "d", "lower", "upper", "trim", "string", "int", "join", "urlencode", "first",
    "last", "length", "count", "capitalize", "title", "e", "escape"})
_ALLOWED_METHODS = frozenset({"get", "lower", "upper", "strip", "startswith", "endswith"})
_ALLOWED_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.If,
                  nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem, nodes.Filter,
                  nodes.Test, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not, nodes.Compare,
                  nodes.Operand, nodes.Concat, nodes.Add, nodes.Sub, nodes.Mul,
                  nodes.Neg, nodes.Pos, nodes.Tuple, nodes.List, nodes.Keyword, nodes.Slice,
                  nodes.Call)


class _BoundedSandbox(SandboxedEnvironment):
    """A sandbox whose ``*``, ``+`` and ``**`` cannot build a value above MAX_VALUE."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise TemplateLimit(f"exponent above {MAX_EXPONENT}")
            return left ** right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_VALUE:
                    raise TemplateLimit(f"a value above {MAX_VALUE} characters")
            return left * right
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                and len(left) + len(right) > MAX_VALUE:
            raise TemplateLimit(f"a value above {MAX_VALUE} characters")
        return left + right


class TemplateLimit(Exception):
    """A cmdline template went over a limit."""


_ENV = _BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
_ENV.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
_COMPILED: dict[str, jinja2.Template | str] = {}


def check_template(source: str) -> str | None:
    """Why ``source`` cannot be a cmdline template, or None. The same rules hold at write time
    (shared/schema.py) and at render time."""
    if len(source) > MAX_TEMPLATE:
        return f"longer than {MAX_TEMPLATE} characters"
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            return (f"'{type(node).__name__}' is not allowed in a kernel command line template "
                    "(no loops, macros, blocks, set, include, % or ** there: use if/else, "
                    "variables and filters)")
        if isinstance(node, nodes.Mul) and any(
                isinstance(side, nodes.Const) and isinstance(side.value, int)
                and not isinstance(side.value, bool) and side.value > MAX_VALUE
                for side in (node.left, node.right)):
            return f"a repetition above {MAX_VALUE} (the command line is at most {MAX_CMDLINE})"
        if isinstance(node, nodes.Filter) and node.name not in _ALLOWED_FILTERS:
            return (f"filter {node.name!r} is not allowed in a kernel command line template "
                    f"(allowed: {', '.join(sorted(_ALLOWED_FILTERS))})")
        if isinstance(node, nodes.Call) and not (
                isinstance(node.node, nodes.Getattr) and node.node.attr in _ALLOWED_METHODS):
            return ("calls are not allowed in a kernel command line template except the methods "
                    f"{', '.join(sorted(_ALLOWED_METHODS))}")
    return None


def _compiled(source: str) -> jinja2.Template | str:
    found = _COMPILED.get(source)
    if found is None:
        if len(_COMPILED) > 1024:
            _COMPILED.clear()
        problem = check_template(source)
        found = problem if problem else _ENV.from_string(source)
        if not problem:
            found.literal = _literal(source)
        _COMPILED[source] = found
    return found


def _literal(source: str) -> str | None:
    """What a template with no Jinja syntax in it (most cmdlines) renders to, so that it needs
    no context; None for any other template."""
    body = _ENV.parse(source).body
    if not body:
        return ""
    if len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1 \
            and isinstance(body[0].nodes[0], nodes.TemplateData):
        return body[0].nodes[0].data
    return None


def render_cmdline(host: Host, profile: Profile, facts: Facts) -> str:
    """The profile's cmdline template for this host, rendered once with the boot-script
    context, within the limits, and checked (:func:`args_problem`)."""
    label = f"profile {profile.name} cmdline"
    compiled = _compiled(profile.cmdline)
    if isinstance(compiled, str):
        raise TemplateFailed(label, compiled)
    context = None if compiled.literal is not None else \
        template_context(host.mac, host, profile, facts.subnet, facts.base_url,
                         url_token=facts.token, done_token=facts.token,
                         server_ip=facts.san_server)
    out: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(context) if context is not None else (compiled.literal,):
            size += len(chunk)
            if size > MAX_CMDLINE:
                raise TemplateLimit(f"renders to more than {MAX_CMDLINE} characters")
            out.append(chunk)
    except TemplateLimit as exc:
        raise TemplateFailed(label, f"over a limit: {exc}") from None
    except jinja2.UndefinedError as exc:
        hint = (" (boot scripts carry no token or done URL unless http.token_in_scripts is on)"
                if any(s in str(exc) for s in ("token", "done")) else "")
        raise TemplateFailed(label, f"{exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a user template is a render error
        raise TemplateFailed(label, f"{type(exc).__name__}: {exc}") from None
    text = "".join(out).strip()
    problem = args_problem(text)
    if problem:
        raise TemplateFailed(label, f"the rendered command line has {problem}")
    return text
