"""The inventory's field parsers: one function a field kind, ``str -> value`` or :class:`FieldError`
(pure: no Redis here).

A parser turns a Redis hash field's text into its typed value (``_bool``, ``_ipv4``, ``_ranges``,
``_iqn``, ``_location``, ...) and says why a value is refused; :mod:`shared.schema` names the
parser of every field of every kind. Here too: the vocabularies those fields take (``BOOT_MODES``,
``EXPORT_KINDS``, ...), :data:`SCRIPT_VARS` (the ``var.<name>`` values checked because they go into
boot scripts as they are), and :class:`Problem`, one thing wrong with one field of one record.
Rules that belong to another module (boot-script values: shared/scriptvalues.py and
shared/bootcmdline.py; DHCP options, group selectors, power) are asked of that module, so they
live in one place.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from shared.addresses import AddressError, normalise_ipv4, normalise_mac, normalise_network
from shared.hardware import HardwareError, parse_text as parse_hw_text

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# re.ASCII: without it IGNORECASE lets [a-z] match the Kelvin sign, a long s or a dotless i.
_HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE | re.ASCII)
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

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
# rules live in shared/scriptvalues.py and shared/bootcmdline.py, which the boot plan applies
# again when it builds a plan.
def _location(value: str) -> str:
    from shared.scriptvalues import parse_location
    try:
        parse_location(value)
    except ValueError as exc:
        raise FieldError(str(exc)) from None
    return value


def _locations(value: str) -> tuple[str, ...]:
    return tuple(_location(v) for v in _split(value))


def _image_path(value: str) -> str:
    from shared.scriptvalues import parse_location
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
    from shared.bootcmdline import check_template
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
    from shared.scriptvalues import args_problem
    problem = args_problem(value)
    if problem or not value.strip() or len(value.split()) != 1:
        raise FieldError(f"goes into boot scripts as one word: {problem or 'spaces'}")
    return value


def _kernel_args(value: str) -> str:
    from shared.scriptvalues import args_problem
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
# text is checked by shared/bootcmdline.py).
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
