"""The inventory's Redis key schema and its validation (pure: no Redis here).

Every object is one Redis hash of strings, named ``bootyard:<kind>:<id>`` (:mod:`shared.keys`
builds every key):

=========  ==================================  =============================================
kind       key                                 id
=========  ==================================  =============================================
host       ``bootyard:host:52:54:00:ab:cd:ef``  canonical MAC (lower case, colons)
profile    ``bootyard:profile:debian12``        name: ``[a-z0-9][a-z0-9._-]*``, up to 63
subnet     ``bootyard:subnet:lab``              name
export     ``bootyard:export:web1-root``        name (a block device exported over AoE/iSCSI)
mirror     ``bootyard:mirror:debian``           name (an OS mirror kept in sync by rsync)
netboot    ``bootyard:netboot:catalina``        name (an Apple NetBoot image offered over BSDP)
group      ``bootyard:group:rack1``             name (hosts matched by selectors: groups.py)
image      ``bootyard:image:debian12``          name (a kernel, initrds, a squashfs under the
                                               images root, written by ``bootyard image import``)
discovery_rule ``bootyard:discovery_rule:dell`` name (adopts discovered machines it matches)
discovered ``bootyard:discovered:52:54:...``    MAC of a machine that reported its hardware from the
                                               discovery image (docs/discovery.md), not yet a host
=========  ==================================  =============================================

docs/inventory.md documents every field. Parsing a hash gives a typed, frozen record and the list
of :class:`Problem` s found: an ``error`` makes the record invalid (services keep its last good
version, or treat the object as unknown); a ``warning`` (an unknown field, say a typo) is reported
by ``bootyard validate`` but does not stop the record being used.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared import keys
from shared.addresses import AddressError, normalise_ipv4, normalise_mac, normalise_network
from shared.hardware import HardwareError, dumps as hardware_dumps, parse_text as parse_hw_text

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# re.ASCII: without it IGNORECASE lets [a-z] match the Kelvin sign, a long s or a dotless i.
_HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE | re.ASCII)
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
VAR_PREFIX = "var."

BOOT_MODES = ("install", "live", "netroot", "sanboot", "local")
INSTALL_KINDS = ("none", "kickstart", "preseed", "cloud-init")
LIVE_STYLES = ("dracut", "rooturl")
NETROOT_STYLES = ("dracut", "kernel")
EXPORT_KINDS = ("aoe", "iscsi")
IMAGE_SOURCES = ("dir", "tarball", "iso", "url", "deb", "manual")
_TRUE = ("yes", "true", "1", "on")
_FALSE = ("no", "false", "0", "off")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one record; ``str()`` is the line operators read."""

    key: str
    field: str
    value: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.key} {self.field}={self.value!r}: {self.reason}"


class FieldError(ValueError):
    """Raised by a field parser; the message is the reason shown to operators."""


# ---------------------------------------------------------------- field parsers (str -> value)

def _text(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise FieldError("must be a single line")
    return value


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise FieldError("names are lower-case letters, digits, '.', '_' and '-', up to 63, "
                         "starting with a letter or digit")
    return value


def _hostname(value: str) -> str:
    if len(value) > 253 or not all(_HOSTNAME_LABEL.fullmatch(p) for p in value.split(".")):
        raise FieldError("not a valid host name (letters, digits and '-', dot-separated labels "
                         "of at most 63 characters)")
    return value.lower()


def parse_hostname(value: str) -> str:
    """``value`` as a host name, in lower case (RFC 1123: dot-separated labels of ASCII letters,
    digits and '-'), or FieldError: the one host-name check (inventory fields, DHCP option 12)."""
    return _hostname(value)


def _ipv4(value: str) -> str:
    try:
        return normalise_ipv4(value)
    except AddressError as exc:
        raise FieldError(str(exc)) from None


def _ipv4_list(value: str) -> tuple[str, ...]:
    return tuple(_ipv4(v) for v in _split(value))


def _network(value: str) -> ipaddress.IPv4Network:
    try:
        return normalise_network(value)
    except AddressError as exc:
        raise FieldError(str(exc)) from None


def _ranges(value: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in _split(value):
        if "-" not in item:
            raise FieldError(f"range {item!r} must be FIRST-LAST, e.g. 10.0.0.100-10.0.0.200")
        first, last = (_ipv4(x) for x in item.split("-", 1))
        if ipaddress.IPv4Address(first) > ipaddress.IPv4Address(last):
            raise FieldError(f"range {item!r} ends before it starts")
        out.append((first, last))
    return tuple(out)


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise FieldError("expected yes or no")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise FieldError("expected a whole number") from None
        if not low <= number <= high:
            raise FieldError(f"must be between {low} and {high}")
        return number
    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        low = value.strip().lower()
        if low not in choices:
            raise FieldError(f"must be one of {', '.join(choices)}")
        return low
    return parse


def _tags(value: str) -> tuple[str, ...]:
    tags = _split(value)
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise FieldError(f"tag {tag!r}: tags are letters, digits, '.', '_' and '-'")
    return tags


def _list(value: str) -> tuple[str, ...]:
    return tuple(_text(v) for v in _split(value))


MIRROR_CHECKS = ("auto", "apt", "yum", "files")


def _mirror_source(value: str) -> str:
    value = _text(value).strip()
    if value.startswith("rsync://"):
        rest = value[len("rsync://"):]
        if "/" not in rest or not rest.split("/", 1)[0] or not rest.split("/", 1)[1]:
            raise FieldError("an rsync URL names a host and a module: rsync://host[:port]/module/"
                             "[path]")
    elif not value.startswith("/"):
        raise FieldError("expected rsync://host/module/path or an absolute local directory")
    if any(c.isspace() for c in value):
        raise FieldError("no spaces in a source")
    return value


def _absolute_path(value: str) -> str:
    value = _text(value)
    if not value.startswith("/") or "/../" in value + "/":
        raise FieldError("expected an absolute path without '..'")
    return value


def _rsync_patterns(value: str) -> tuple[str, ...]:
    patterns = _list(value)
    for pattern in patterns:
        if pattern.startswith(("+ ", "- ", "-", "merge", ".")) or " " in pattern:
            raise FieldError(f"pattern {pattern!r}: give plain rsync patterns (e.g. *.iso or "
                             "/dists/sid/), no rule prefixes, options or spaces")
    return patterns


SECRET_MASK = "********"  # shown, exported and recorded instead of a secret (shared/secrets.py)


def _chap_name(value: str) -> str:
    if not 1 <= len(value) <= 255 or not value.isprintable():
        raise FieldError("1-255 printable characters")
    return value


def _chap_secret(value: str) -> str:
    if value == SECRET_MASK:
        raise FieldError("this value was masked by show/export: set the secret itself "
                         "(bootyard export --show-secrets includes them)")
    if not 12 <= len(value) <= 255 or not value.isprintable():
        raise FieldError("12-255 printable characters (RFC 7143 12.1.3: at least 96 bits)")
    return value


def _initiator_list(value: str) -> tuple[str, ...]:
    out = []
    for item in _split(value):
        if item.lower().startswith(("iqn.", "eui.", "naa.")):
            out.append(_iqn(item) if not item.lower().startswith("naa.") else item)
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise FieldError(f"{item!r} is neither an iSCSI name (iqn., eui., naa.) nor an "
                             "address or network") from None
    return tuple(out)


def _iqn(value: str) -> str:
    # RFC 3720 3.2.6.2: letters, digits, '-', '.' and ':' (it goes into iPXE scripts and kernel
    # command lines as it is, so nothing else is accepted)
    if not re.fullmatch(r"(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[A-Za-z0-9.:_-]+)?"
                        r"|eui\.[0-9A-Fa-f]{16})", value):
        raise FieldError("expected an iSCSI name such as iqn.2026-11.org.example:web1 "
                         "(letters, digits, '.', '-', ':' and '_' only)")
    return value


# Checks of values that go into boot scripts (iPXE, GRUB, PXELINUX, kernel command line): the
# rules live in shared/bootplan.py, which applies them again when it builds a plan.
def _location(value: str) -> str:
    from shared.bootplan import parse_location
    try:
        parse_location(value)
    except ValueError as exc:
        raise FieldError(str(exc)) from None
    return value


def _locations(value: str) -> tuple[str, ...]:
    return tuple(_location(v) for v in _split(value))


def _image_path(value: str) -> str:
    from shared.bootplan import parse_location
    try:
        found = parse_location(value)
    except ValueError as exc:
        raise FieldError(str(exc)) from None
    if found.scheme != "image":
        raise FieldError("an image's files are paths under the images root, not URLs")
    return found.value


def _image_paths(value: str) -> tuple[str, ...]:
    return tuple(_image_path(v) for v in _split(value))


def _checksums(value: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in _split(value):
        path, _, digest = item.rpartition("=")
        if not path or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FieldError(f"{item!r}: expected PATH=SHA256 (64 lower-case hex digits)")
        out.append((_image_path(path), digest))
    return tuple(out)


def _cmdline(value: str) -> str:
    from shared.bootplan import check_template
    _text(value)
    problem = check_template(value)
    if problem:
        raise FieldError(f"kernel command line template: {problem}")
    return value


def _loader_file(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._~/:+@-]{1,128}", value):
        raise FieldError("a boot file name or URL of at most 128 letters, digits and "
                         "'. _ ~ / : + @ -' (it goes into the DHCP reply and boot scripts)")
    return value


def _script_word(value: str) -> str:
    from shared.bootplan import args_problem
    problem = args_problem(value)
    if problem or not value.strip() or len(value.split()) != 1:
        raise FieldError(f"goes into boot scripts as one word: {problem or 'spaces'}")
    return value


def _kernel_args(value: str) -> str:
    from shared.bootplan import args_problem
    _text(value)
    problem = args_problem(value)
    if problem:
        raise FieldError(f"goes onto the kernel command line as it is: {problem}")
    if len(value) > 1024:
        raise FieldError("at most 1024 characters")
    return value.strip()


def _option_field(name: str, value: str) -> str:
    from shared.dhcpoptions import OptionError, parse
    try:
        parse(name, value)
    except OptionError as exc:
        raise FieldError(str(exc)) from None
    return value


def _match_field(name: str, value: str) -> str:
    from shared.groups import SelectorError, parse_selector
    try:
        return parse_selector(name, value)
    except SelectorError as exc:
        raise FieldError(str(exc)) from None


# var.<name> values that go into boot scripts or DHCP replies as they are: checked at write
# time (free-form variables reach scripts only through the cmdline template, whose rendered
# text is checked by shared/bootplan.py).
SCRIPT_VARS: dict[str, Callable[[str], Any]] = {
    "initiator_iqn": _iqn,
    "iscsi": _choice(("ibft", "dracut")),
    "export": _name,
    "boot_file_bios": _loader_file,
    "boot_file_uefi": _loader_file,
    "boot_file_uefi32": _loader_file,
    "boot_file_arm64": _loader_file,
    "http_boot_file": _loader_file,
    "http_boot_file_arm64": _loader_file,
}


def _hw(value: str) -> dict[str, Any]:
    try:
        return parse_hw_text(value)
    except HardwareError as exc:
        raise FieldError(f"hardware report: {exc}") from None


HOSTNAME_PLACEHOLDERS = ("mac", "serial", "uuid", "vendor", "product", "n")
HOSTNAME_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")


def _hw_match(value: str) -> tuple[str, ...]:
    """A discovery rule's ``match``: ``path=glob[,path=glob...]`` on the hardware report."""
    pairs = []
    for item in _split(value):
        path, sep, pattern = item.partition("=")
        path = path.strip()
        if not sep or not re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)*", path):
            raise FieldError(f"{item!r}: write PATH=GLOB with a hardware path such as "
                             "dmi.vendor=QEMU, dmi.product=PowerEdge*, firmware=uefi or "
                             "mac=52:54:00:*")
        pairs.append(f"{path}={pattern.strip()}")
    if not pairs:
        raise FieldError("give at least one PATH=GLOB")
    return tuple(pairs)


def _hostname_pattern(value: str) -> str:
    """A host name pattern: text and {mac} {serial} {uuid} {vendor} {product} {n}."""
    for name in HOSTNAME_PLACEHOLDER.findall(value):
        if name not in HOSTNAME_PLACEHOLDERS:
            raise FieldError(f"unknown placeholder {{{name}}} (known: "
                             f"{', '.join('{' + p + '}' for p in HOSTNAME_PLACEHOLDERS)})")
    try:
        _hostname(HOSTNAME_PLACEHOLDER.sub("a1", value))
    except FieldError:
        raise FieldError("with its placeholders filled in it must be a host name (letters, "
                         "digits and '-', e.g. node-{serial} or rack1-{n})") from None
    return value


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


POWER_METHODS = ("wol", "ipmi", "redfish")


def _power_check(name: str) -> Callable[[str], str]:
    """A power field's check, from shared/power.py (where the rules live)."""
    def parse(value: str) -> str:
        from shared import power
        try:
            return getattr(power, name)(value)
        except ValueError as exc:
            raise FieldError(str(exc)) from None
    return parse


def _mac(value: str) -> str:
    try:
        return normalise_mac(value)
    except AddressError as exc:
        raise FieldError(str(exc)) from None


# ---------------------------------------------------------------- records

@dataclasses.dataclass(frozen=True)
class Host:
    mac: str
    hostname: str | None = None
    ip: str | None = None
    profile: str | None = None
    boot_mode: str = "install"
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    enabled: bool = True
    description: str = ""
    hw: Mapping[str, Any] | None = None  # the hardware report (shared/hardware.py)
    # power control (shared/power.py, docs/power.md)
    power: str | None = None
    power_address: str | None = None
    power_user: str | None = None
    power_secret: str | None = dataclasses.field(default=None, repr=False,
                                                 metadata={"secret": True})
    power_system: str | None = None
    power_auth: str = "session"
    power_verify_tls: bool = True
    power_mac: str | None = None
    power_interface: str | None = None
    kernel: str | None = None  # overrides the profile's kernel (rare)
    kernel_args: str = ""  # appended after the profile's cmdline
    once_profile: str | None = None  # one-shot boot (bootyard host rescue)
    once_mode: str | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)  # option.<name>


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    kernel: str | None = None
    initrd: tuple[str, ...] = ()
    cmdline: str = ""
    install: str = "none"
    template: str | None = None
    root_image: str | None = None
    live_style: str = "dracut"
    netroot_style: str = "dracut"
    export: str | None = None
    arch: str | None = None
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""
    menu: bool = False  # offered in the unknown-host menu (http.unknown_host menu)
    image: str | None = None  # an image record: kernel/initrd/root_image the profile leaves unset


@dataclasses.dataclass(frozen=True)
class Subnet:
    name: str
    network: ipaddress.IPv4Network
    ranges: tuple[tuple[str, str], ...] = ()
    router: str | None = None
    dns: tuple[str, ...] = ()
    domain: str | None = None
    lease_time: int = 3600
    relays: tuple[str, ...] = ()
    next_server: str | None = None
    boot_file_bios: str | None = None
    boot_file_uefi: str | None = None
    boot_file_arm64: str | None = None
    enabled: bool = True
    description: str = ""
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)  # option.<name>


@dataclasses.dataclass(frozen=True)
class Export:
    name: str
    kind: str
    backing: str
    readonly: bool = False
    cow: bool = False
    aoe_shelf: int | None = None
    aoe_slot: int | None = None
    iqn: str | None = None
    lun: int = 0  # docs/blockexport.md: LUN 0 is the disk (iPXE's iscsi:server::::iqn)
    description: str = ""
    chap_user: str = ""
    chap_secret: str = dataclasses.field(default="", repr=False)
    chap_mutual_user: str = ""
    chap_mutual_secret: str = dataclasses.field(default="", repr=False)
    allow: tuple[str, ...] = ()
    unmatched: str = "plain"
    write_cache: bool = True  # iSCSI: WCE 1 (docs/blockexport.md "Durability and WCE")


@dataclasses.dataclass(frozen=True)
class Mirror:
    name: str
    source: str
    path: str
    interval: int = 21600
    enabled: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    bwlimit: int = 0
    check: str = "auto"
    keep: int | None = None
    keyring: str | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class NetbootImage:
    name: str
    index: int
    boot_file: str
    root_path: str
    title: str | None = None
    image_kind: str = "macosx"
    install: bool = False
    default: bool = False
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Discovered:
    """A machine that booted the discovery image and reported its hardware (docs/discovery.md):
    not a host until it is adopted."""

    mac: str
    ip: str | None = None
    first_seen: int = 0
    last_seen: int = 0
    reports: int = 0
    hw: Mapping[str, Any] | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class DiscoveryRule:
    """Adopts discovered machines whose report matches (docs/discovery.md)."""

    name: str
    match: tuple[str, ...]  # PATH=GLOB items
    profile: str
    hostname: str | None = None  # a pattern: node-{serial}, rack1-{n}
    boot_mode: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 100
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Group:
    """Hosts matched by selectors (``match.<key>``) and what they get (shared/groups.py)."""

    name: str
    match: Mapping[str, str] = dataclasses.field(default_factory=dict)
    profile: str | None = None
    kernel: str | None = None
    kernel_args: str = ""
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Family:
    """Fields ``<prefix><name>`` gathered into one record attribute (and one YAML section),
    as ``var.<name>`` are: ``option.<name>`` (DHCP options), ``match.<key>`` (selectors)."""

    prefix: str
    attr: str  # the record attribute and the YAML/JSON section
    parse: Callable[[str, str], Any]  # (name, value) -> value, or FieldError
    doc: str


OPTION_FAMILY = Family("option.", "options", _option_field,
                       "custom DHCP option: option.<name or number> = [TYPE:]VALUE")
MATCH_FAMILY = Family("match.", "match", _match_field,
                      "selector: match.tags, match.mac, match.arch, match.firmware, "
                      "match.subnet, match.hw.<path>")


@dataclasses.dataclass(frozen=True)
class Image:
    """Boot files under the images root (``bootyard image import``, docs/inventory.md)."""

    name: str
    kernel: str
    initrd: tuple[str, ...] = ()
    squashfs: str | None = None
    sha256: tuple[tuple[str, str], ...] = ()  # (path under the images root, hex digest)
    source_kind: str = "manual"
    source: str = ""
    imported: str = ""  # UTC time of the import, ISO 8601
    description: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        return (self.kernel,) + self.initrd + ((self.squashfs,) if self.squashfs else ())


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    parse: Callable[[str], Any]
    doc: str
    required: bool = False
    list_like: bool = False  # comma-separated: exported to YAML as a list
    secret: bool = False  # never printed, logged or recorded (shared/secrets.py mask(): power_secret, CHAP secrets)


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    record: type
    id_field: str
    fields: Mapping[str, FieldSpec]
    has_vars: bool = False
    families: tuple[Family, ...] = ()

    def family(self, fname: str) -> Family | None:
        """The family a field name belongs to (``option.ntp-servers``), or None."""
        for family in self.families:
            if fname.startswith(family.prefix):
                return family
        return None

    def key(self, ident: str) -> str:
        return keys.object_key(self.name, self.canonical_id(ident))

    @property
    def pattern(self) -> str:
        return keys.object_pattern(self.name)

    def canonical_id(self, ident: str) -> str:
        if self.name in MAC_KINDS:
            return normalise_mac(ident)
        value = ident.strip().lower()
        if not NAME_RE.fullmatch(value):
            raise AddressError(f"{ident!r} is not a valid {self.name} name (lower-case letters, "
                               "digits, '.', '_' and '-', up to 63)")
        return value


_ANY_TEXT = FieldSpec(_text, "free text")
MAC_KINDS = ("host", "discovered")  # kinds whose id is a MAC

KINDS: dict[str, Kind] = {
    "host": Kind("host", "hosts", Host, "mac", {
        "hostname": FieldSpec(_hostname, "host name handed out by DHCP and used in templates"),
        "ip": FieldSpec(_ipv4, "fixed (reserved) IPv4 address; empty for a pool address"),
        "profile": FieldSpec(_name, "name of the profile this host boots"),
        "boot_mode": FieldSpec(_choice(BOOT_MODES), "install, live, netroot, sanboot or local"),
        "tags": FieldSpec(_tags, "comma-separated labels", list_like=True),
        "enabled": FieldSpec(_bool, "yes (default) or no: services do not boot a disabled host"),
        "description": _ANY_TEXT,
        # power control (docs/power.md)
        "power": FieldSpec(_choice(POWER_METHODS), "power control: wol, ipmi or redfish"),
        "power_address": FieldSpec(_power_check("parse_address"), "BMC address: host[:port] (IPMI, Redfish) "
                                   "or https://host[:port] (Redfish)"),
        "power_user": FieldSpec(_text, "BMC user name"),
        "power_secret": FieldSpec(_text, "BMC password (a secret: never printed; '-' on the "
                                  "command line reads it from standard input)", secret=True),
        "power_system": FieldSpec(_power_check("parse_system"), "Redfish ComputerSystem path (default: the "
                                  "BMC's only system)"),
        "power_auth": FieldSpec(_choice(("session", "basic")), "Redfish authentication: "
                                "session (default) or basic"),
        "power_verify_tls": FieldSpec(_bool, "yes (default): verify the Redfish BMC's TLS "
                                      "certificate; no for a self-signed one"),
        "power_mac": FieldSpec(_mac, "MAC the Wake-on-LAN packet wakes (default: the host's)"),
        "power_interface": FieldSpec(_power_check("parse_interface"), "deploy interface Wake-on-LAN is sent on "
                                     "(default: every deploy interface)"),
        "kernel": FieldSpec(_location, "kernel overriding the profile's (rare): a path under "
                            "the images root or a URL"),
        "kernel_args": FieldSpec(_kernel_args, "extra kernel arguments, after the profile's "
                                 "cmdline (console=ttyS0,115200 net.ifnames=0)"),
        "once_profile": FieldSpec(_name, "one-shot boot: this profile once, then back "
                                  "(bootyard host rescue)"),
        "once_mode": FieldSpec(_choice(("install", "live", "netroot", "sanboot")),
                               "boot mode of the one-shot boot (default live)"),
        "hw": FieldSpec(_hw, "hardware report (JSON, docs/discovery.md); templates see it as hw"),
    }, has_vars=True, families=(OPTION_FAMILY,)),
    "profile": Kind("profile", "profiles", Profile, "name", {
        "kernel": FieldSpec(_location, "kernel path under the images root, or an http(s):// "
                            "or tftp:// URL"),
        "initrd": FieldSpec(_locations, "comma-separated initrd paths or URLs", list_like=True),
        "cmdline": FieldSpec(_cmdline, "kernel command line (Jinja2 template)"),
        "install": FieldSpec(_choice(INSTALL_KINDS), "none, kickstart, preseed or cloud-init"),
        "template": FieldSpec(_text, "install template file name in the templates directory"),
        "root_image": FieldSpec(_location, "squashfs root image path under the images root "
                                "or a URL (live)"),
        "live_style": FieldSpec(_choice(LIVE_STYLES), "dracut (root=live:URL) or rooturl"),
        "netroot_style": FieldSpec(_choice(NETROOT_STYLES), "AoE netroot: dracut "
                                   "(netroot=aoe:eS.L rd.neednet=1) or kernel (root= only)"),
        "export": FieldSpec(_name, "block export to boot from (netroot, sanboot)"),
        "arch": FieldSpec(_choice(("x86_64", "i386", "arm64")), "machine architecture"),
        "description": _ANY_TEXT,
        "menu": FieldSpec(_bool, "yes: offered in the unknown-host menu (http.unknown_host "
                          "menu); no (default)"),
        "image": FieldSpec(_name, "image (bootyard image import) whose kernel, initrds and "
                           "squashfs the profile boots where it sets none of its own"),
    }, has_vars=True),
    "subnet": Kind("subnet", "subnets", Subnet, "name", {
        "network": FieldSpec(_network, "IPv4 network in CIDR form", required=True),
        "ranges": FieldSpec(_ranges, "dynamic pools: FIRST-LAST[,FIRST-LAST...]", list_like=True),
        "router": FieldSpec(_ipv4, "default gateway (DHCP option 3)"),
        "dns": FieldSpec(_ipv4_list, "DNS servers (option 6)", list_like=True),
        "domain": FieldSpec(_hostname, "domain name (option 15)"),
        "lease_time": FieldSpec(_int_between(60, 31536000), "lease time in seconds"),
        "relays": FieldSpec(_ipv4_list, "relay (giaddr) addresses that reach this subnet",
                            list_like=True),
        "next_server": FieldSpec(_ipv4, "TFTP server address (siaddr)"),
        "boot_file_bios": FieldSpec(_text, "boot file for legacy BIOS PXE"),
        "boot_file_uefi": FieldSpec(_text, "boot file for x86 UEFI PXE"),
        "boot_file_arm64": FieldSpec(_text, "boot file for ARM64 UEFI PXE"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "description": _ANY_TEXT,
    }, families=(OPTION_FAMILY,)),
    "export": Kind("export", "exports", Export, "name", {
        "kind": FieldSpec(_choice(EXPORT_KINDS), "aoe or iscsi", required=True),
        "backing": FieldSpec(_text, "backing file or block device path", required=True),
        "readonly": FieldSpec(_bool, "yes or no (default)"),
        "cow": FieldSpec(_bool, "yes: backing is a golden image, never written; each host "
                                "writes to its own copy-on-write overlay. no (default)"),
        "aoe_shelf": FieldSpec(_int_between(0, 65534), "AoE shelf (major) number"),
        "aoe_slot": FieldSpec(_int_between(0, 254), "AoE slot (minor) number"),
        "iqn": FieldSpec(_iqn, "iSCSI target name"),
        "lun": FieldSpec(_int_between(0, 255), "iSCSI LUN of the disk (default 0: iPXE's "
                                               "iscsi:server::::iqn finds it)"),
        "description": _ANY_TEXT,
        "chap_user": FieldSpec(_chap_name, "iSCSI: CHAP user name initiators log in with"),
        "chap_secret": FieldSpec(_chap_secret, "iSCSI: CHAP secret initiators must prove "
                                 "(12-255 characters; with it, CHAP is required)", secret=True),
        "chap_mutual_user": FieldSpec(_chap_name, "iSCSI: the target's CHAP name for mutual "
                                      "CHAP (default: the iqn)"),
        "chap_mutual_secret": FieldSpec(_chap_secret, "iSCSI: the target's secret for mutual "
                                        "CHAP (12-255 characters, not the chap_secret)",
                                        secret=True),
        "allow": FieldSpec(_initiator_list, "iSCSI: initiators allowed to log in (IQNs, "
                           "addresses, networks); empty: any", list_like=True),
        "unmatched": FieldSpec(_choice(("plain", "refuse")), "iSCSI: a session that belongs "
                               "to no inventory host gets the plain disk (plain, default; "
                               "the golden image read-only for cow) or is refused (refuse)"),
        "write_cache": FieldSpec(_bool, "iSCSI: yes (default): a write-back cache (WCE 1), "
                                 "writes durable on FUA or SYNCHRONIZE CACHE; no: every write "
                                 "durable when answered"),
    }),
    "mirror": Kind("mirror", "mirrors", Mirror, "name", {
        "source": FieldSpec(_mirror_source, "rsync://host/module/path or an absolute local "
                            "directory", required=True),
        "path": FieldSpec(_name, "directory under the mirror root", required=True),
        "interval": FieldSpec(_int_between(300, 604800), "seconds between syncs"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "include": FieldSpec(_rsync_patterns, "comma-separated rsync patterns copied even when "
                             "an exclude matches", list_like=True),
        "exclude": FieldSpec(_rsync_patterns, "comma-separated rsync patterns not copied",
                             list_like=True),
        "bwlimit": FieldSpec(_int_between(0, 10_000_000), "rsync bandwidth limit in KiB/s "
                             "(0: none)"),
        "check": FieldSpec(_choice(MIRROR_CHECKS), "what is checked before a publish: auto "
                           "(default: apt or yum if the tree looks like one), apt, yum, files"),
        "keep": FieldSpec(_int_between(0, 100), "old snapshots kept besides the published one "
                          "(default: mirrorsync.keep)"),
        "keyring": FieldSpec(_absolute_path, "OpenPGP keyring file (on the mirrorsync host) whose "
                             "key must have signed an apt mirror's InRelease or Release.gpg"),
        "description": _ANY_TEXT,
    }),
    "netboot": Kind("netboot", "netboots", NetbootImage, "name", {
        "index": FieldSpec(_int_between(1, 65535), "BSDP image index: 1-4095 on this server "
                           "only, 4096-65535 the same image on several servers", required=True),
        "boot_file": FieldSpec(_text, "booter path under the TFTP root", required=True),
        "root_path": FieldSpec(_text, "root image URL (http://.../NetBoot.dmg or nfs:...)",
                               required=True),
        "title": FieldSpec(_text, "name shown in the Mac's startup disk list (default: name)"),
        "image_kind": FieldSpec(_choice(("macos9", "macosx", "macosx-server", "diagnostics")),
                                "BSDP image kind (default macosx)"),
        "install": FieldSpec(_bool, "yes for an install image, no (default) for a boot image"),
        "default": FieldSpec(_bool, "yes for the image a Mac boots when none is chosen"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "description": _ANY_TEXT,
    }),
    "image": Kind("image", "images", Image, "name", {
        "kernel": FieldSpec(_image_path, "kernel path under the images root", required=True),
        "initrd": FieldSpec(_image_paths, "comma-separated initrd paths under the images root",
                            list_like=True),
        "squashfs": FieldSpec(_image_path, "squashfs root image path under the images root"),
        "sha256": FieldSpec(_checksums, "comma-separated PATH=SHA256 of each file (written by "
                            "bootyard image import, checked by bootyard image verify)",
                            list_like=True),
        "source_kind": FieldSpec(_choice(IMAGE_SOURCES), "where the files came from: dir, "
                                 "tarball, iso, url, deb or manual"),
        "source": FieldSpec(_text, "the directory, file or URL imported"),
        "imported": FieldSpec(_text, "when it was imported (UTC, ISO 8601)"),
        "description": _ANY_TEXT,
    }),
    "discovered": Kind("discovered", "discovered", Discovered, "mac", {
        "ip": FieldSpec(_ipv4, "address it reported from"),
        "first_seen": FieldSpec(_int_between(0, 1 << 40), "Unix time of its first report"),
        "last_seen": FieldSpec(_int_between(0, 1 << 40), "Unix time of its last report"),
        "reports": FieldSpec(_int_between(0, 1 << 40), "reports received"),
        "hw": FieldSpec(_hw, "hardware report (JSON, docs/discovery.md)"),
        "description": _ANY_TEXT,
    }),
    "discovery_rule": Kind("discovery_rule", "discovery_rules", DiscoveryRule, "name", {
        "match": FieldSpec(_hw_match, "hardware PATH=GLOB items, all must hold: "
                           "dmi.vendor=QEMU,dmi.product=Standard*", required=True,
                           list_like=True),
        "profile": FieldSpec(_name, "profile of the hosts it adopts", required=True),
        "hostname": FieldSpec(_hostname_pattern, "host name pattern: node-{serial}, rack1-{n} "
                              "(placeholders mac serial uuid vendor product n)"),
        "boot_mode": FieldSpec(_choice(BOOT_MODES), "boot mode of the hosts it adopts"),
        "tags": FieldSpec(_tags, "tags of the hosts it adopts", list_like=True),
        "priority": FieldSpec(_int_between(0, 10000), "lower is tried first (default 100); two "
                              "matching rules of one priority adopt nothing"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "description": _ANY_TEXT,
    }),
}
KINDS["group"] = Kind("group", "groups", Group, "name", {
    "profile": FieldSpec(_name, "profile of the hosts it matches"),
    "kernel": FieldSpec(_location, "kernel overriding the profile's for its hosts"),
    "kernel_args": FieldSpec(_kernel_args, "extra kernel arguments for its hosts"),
    "enabled": FieldSpec(_bool, "yes (default) or no: a disabled group matches nothing"),
    "description": _ANY_TEXT,
}, has_vars=True, families=(MATCH_FAMILY, OPTION_FAMILY))
KIND_BY_PLURAL = {k.plural: k for k in KINDS.values()}


def split_key(key: str) -> tuple[Kind, str] | None:
    """(kind, id) for a bootyard object key, or None if the key is not one."""
    found = keys.split_object_key(key, KINDS)
    return None if found is None else (KINDS[found[0]], found[1])


def parse_record(kind: Kind, ident: str, raw: Mapping[str, str]) -> tuple[Any, list[Problem]]:
    """Validate one hash; return (record or None, problems). Never raises on bad data."""
    key = keys.object_key(kind.name, ident)
    problems: list[Problem] = []
    try:
        canonical = kind.canonical_id(ident)
    except AddressError as exc:
        return None, [Problem(key, "(key)", ident, str(exc))]
    if canonical != ident:
        return None, [Problem(key, "(key)", ident,
                              f"key is not canonical: rename it to {kind.key(canonical)}")]
    values: dict[str, Any] = {kind.id_field: canonical}
    variables: dict[str, str] = {}
    for fname, raw_value in raw.items():
        if kind.has_vars and fname.startswith(VAR_PREFIX):
            var = fname[len(VAR_PREFIX):]
            if not _VAR_NAME.fullmatch(var):
                problems.append(Problem(key, fname, raw_value,
                                        "variable names are letters, digits and '_'"))
            elif var in SCRIPT_VARS and raw_value != "":
                try:
                    SCRIPT_VARS[var](raw_value)
                except FieldError as exc:
                    problems.append(Problem(key, fname, raw_value, str(exc)))
                else:
                    variables[var] = raw_value
            else:
                variables[var] = raw_value
            continue
        family = kind.family(fname) if kind.families else None
        if family is not None:
            name = fname[len(family.prefix):]
            if raw_value == "":
                continue
            try:
                values.setdefault(family.attr, {})[name] = family.parse(name, raw_value)
            except FieldError as exc:
                problems.append(Problem(key, fname, raw_value, str(exc)))
            continue
        spec = kind.fields.get(fname)
        if spec is None:
            hint = " (per-host template variables are var.<name>)" if kind.has_vars else ""
            problems.append(Problem(key, fname, raw_value, "unknown field, ignored" + hint,
                                    severity="warning"))
            continue
        if raw_value == "":
            continue  # an empty field is an unset field
        try:
            values[fname] = spec.parse(raw_value)
        except FieldError as exc:
            # a refused secret is not printed either (shared/secrets.py SECRET_MASK)
            problems.append(Problem(key, fname, "********" if spec.secret else raw_value,
                                    str(exc)))
    for fname, spec in kind.fields.items():
        if spec.required and fname not in values and not any(
                p.field == fname for p in problems):
            problems.append(Problem(key, fname, "", "required field is missing"))
    if kind.has_vars:
        values["vars"] = variables
    problems += _record_checks(kind, key, values)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return kind.record(**values), problems


def _record_checks(kind: Kind, key: str, values: dict[str, Any]) -> list[Problem]:
    """Checks across fields of one record."""
    problems = []
    if kind.name == "subnet" and "network" in values:
        net = values["network"]
        for first, last in values.get("ranges", ()):
            if ipaddress.IPv4Address(first) not in net or ipaddress.IPv4Address(last) not in net:
                problems.append(Problem(key, "ranges", f"{first}-{last}",
                                        f"range is not inside {net}"))
        router = values.get("router")
        if router and ipaddress.IPv4Address(router) not in net:
            problems.append(Problem(key, "router", router, f"router is not inside {net}"))
        ranges = values.get("ranges", ())
        for fname in SUBNET_INFRASTRUCTURE:
            value = values.get(fname) or ()
            for ip in (value,) if isinstance(value, str) else value:
                inside = range_containing(ip, ranges)
                if inside is not None:
                    problems.append(Problem(
                        key, fname, ip, f"{ip} is inside the dynamic range {inside[0]}-"
                        f"{inside[1]}: the pool would give this address to a client; take it "
                        "out of ranges"))
        ordered = sorted(ranges, key=lambda r: ipaddress.IPv4Address(r[0]))
        for (first, last), (nfirst, nlast) in zip(ordered, ordered[1:]):
            if ipaddress.IPv4Address(nfirst) <= ipaddress.IPv4Address(last):
                problems.append(Problem(key, "ranges", f"{nfirst}-{nlast}",
                                        f"overlaps the range {first}-{last}"))
    if kind.name == "image" and "kernel" in values:
        files = [values["kernel"], *values.get("initrd", ()),
                 *((values["squashfs"],) if values.get("squashfs") else ())]
        summed = dict(values.get("sha256", ()))
        for path in summed:
            if path not in files:
                problems.append(Problem(key, "sha256", path, "a checksum of a file that is not "
                                        f"one of the image's ({', '.join(files)})"))
        for path in files:
            if path not in summed:
                problems.append(Problem(key, "sha256", "", f"no checksum for {path}: bootyard "
                                        "image verify cannot check it", severity="warning"))
    if kind.name == "export":
        if values.get("kind") == "aoe" and (values.get("aoe_shelf") is None
                                            or values.get("aoe_slot") is None):
            problems.append(Problem(key, "aoe_shelf", str(values.get("aoe_shelf", "")),
                                    "an AoE export needs aoe_shelf and aoe_slot"))
        if values.get("kind") == "iscsi" and not values.get("iqn"):
            problems.append(Problem(key, "iqn", "", "an iSCSI export needs an iqn"))
        if values.get("chap_secret") and not values.get("chap_user"):
            problems.append(Problem(key, "chap_user", "", "CHAP needs a chap_user with the "
                                    "chap_secret"))
        if values.get("chap_mutual_secret"):
            if not values.get("chap_secret"):
                problems.append(Problem(key, "chap_mutual_secret", SECRET_MASK, "mutual CHAP needs "
                                        "the one-way chap_user and chap_secret too"))
            elif values["chap_mutual_secret"] == values["chap_secret"]:
                problems.append(Problem(key, "chap_mutual_secret", SECRET_MASK, "must differ from "
                                        "chap_secret (RFC 7143 12.1.3)"))
    if kind.name == "host" and values.get("power"):
        from shared.power import record_problems
        problems += [Problem(key, f, v, r) for f, v, r in record_problems(values)]
    return problems


# Subnet fields naming machines that serve the subnet: never inside its dynamic ranges.
SUBNET_INFRASTRUCTURE = ("router", "next_server", "dns", "relays")


def range_containing(ip: str, ranges: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The first (FIRST, LAST) of ``ranges`` that contains ``ip``, or None."""
    address = ipaddress.IPv4Address(ip)
    for first, last in ranges:
        if ipaddress.IPv4Address(first) <= address <= ipaddress.IPv4Address(last):
            return first, last
    return None


def normalise(kind: Kind, raw: Mapping[str, str]) -> dict[str, str]:
    """``raw`` with each field's value in its canonical text where that is safe: surrounding
    spaces removed, enumerations, yes/no values, host names and names in lower case, addresses
    and lists in their canonical spelling (``boot_mode Local`` -> ``local``,
    ``ip " 198.18.5.24"`` -> ``198.18.5.24``). A value its field refuses is left as it is (the
    write then fails naming it); template variables are left as they are."""
    out: dict[str, str] = {}
    for fname, value in raw.items():
        spec = kind.fields.get(fname)
        if spec is None or not isinstance(value, str) or spec.secret:
            out[fname] = value  # a secret is kept exactly as given (spaces may be part of it)
            continue
        text = value.strip()
        if spec.parse is _name or spec.parse is _bool:
            text = text.lower()
        try:
            parsed = spec.parse(text) if text else ""
        except FieldError:
            out[fname] = value
            continue
        if spec.parse is _checksums and parsed:
            out[fname] = ",".join(f"{path}={digest}" for path, digest in parsed)
            continue
        out[fname] = _canonical_text(parsed, text)
    return out


def _canonical_text(parsed: Any, text: str) -> str:
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, Mapping):
        return hardware_dumps(parsed)
    if isinstance(parsed, ipaddress.IPv4Network):
        return str(parsed)
    if isinstance(parsed, tuple):
        return ",".join(f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p) for p in parsed)
    return text  # yes/no and numbers: as written, without the spaces


def to_hash(kind: Kind, fields: Mapping[str, Any]) -> dict[str, str]:
    """Hash fields (strings) from user values: lists are joined with commas, vars prefixed."""
    out: dict[str, str] = {}
    for fname, value in fields.items():
        if fname == "vars":
            for var, text in (value or {}).items():
                out[f"{VAR_PREFIX}{var}"] = _scalar(text)
        elif isinstance(value, Mapping) and fname in _sections(kind):
            for name, text in value.items():
                out[f"{_sections(kind)[fname].prefix}{name}"] = _scalar(text)
        elif isinstance(value, (list, tuple)):
            out[fname] = ",".join(_scalar(v) for v in value)
        else:
            out[fname] = _scalar(value)
    return out


def from_hash(kind: Kind, raw: Mapping[str, str]) -> dict[str, Any]:
    """The structured (YAML) form of a hash: list fields as lists, var.* grouped under vars."""
    out: dict[str, Any] = {}
    variables = {}
    for fname in sorted(raw):
        value = raw[fname]
        family = kind.family(fname) if kind.families else None
        if kind.has_vars and fname.startswith(VAR_PREFIX):
            variables[fname[len(VAR_PREFIX):]] = value
        elif family is not None:
            out.setdefault(family.attr, {})[fname[len(family.prefix):]] = value
        elif fname in kind.fields and kind.fields[fname].list_like:
            out[fname] = list(_split(value))
        else:
            out[fname] = value
    if variables:
        out["vars"] = variables
    return out


def _sections(kind: Kind) -> dict[str, Family]:
    """A kind's families by their YAML section (``options``, ``match``)."""
    return {f.attr: f for f in kind.families}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    return str(value)


def plain(record: Any) -> dict[str, Any]:
    """A parsed record (Host, Profile, Subnet, ...) as plain data for templates and JSON: lists for
    tuples, dicts for mappings, strings for addresses and networks; {} for None. Secret fields
    (``power_secret``) are left out: templates and boot scripts never see them."""
    if record is None:
        return {}
    return {fld.name: _plain_value(getattr(record, fld.name)) for fld in dataclasses.fields(record)
            if not fld.metadata.get("secret")}


def _plain_value(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv4Address)):
        return str(value)
    return value
