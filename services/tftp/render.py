"""Per-host boot loader configs for TFTP clients: PXELINUX, GRUB over TFTP, iPXE over TFTP.

Two questions, kept apart:

- :func:`classify` says whether a requested name is one we render, and what it tells us (a MAC,
  an IP written in hex, or nothing: then the requesting peer's lease decides).
- :func:`plan` asks shared/bootplan.py what the host boots (the same plan the HTTP service
  formats as iPXE and GRUB-over-HTTP, so the kernel arguments are the same through every
  loader); :func:`pxelinux`, :func:`grub` and :func:`ipxe` only write it out.

Kernel and initrd paths under the images root become ``/<images_prefix>/<path>``, fetched over
TFTP from the same server; URLs are passed through (GRUB as ``(http,server)/path``, PXELINUX
loads ``http://`` only as lpxelinux.0). A live root image is always fetched by the booted
kernel over HTTP, so live hosts need ``tftp.http_base_url``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from shared import bootcmdline, bootplan, scriptvalues
from shared.addresses import AddressError, normalise_mac
from shared.records import Export, Host, Profile, Subnet
from shared.schema import KINDS
from shared.scriptvalues import Location, PathMapper, grub_device_path

_HEX_IP = re.compile(r"[0-9A-Fa-f]{8}")


class RenderError(Exception):
    """The host's config cannot be rendered; the message names the record and the reason."""


@dataclasses.dataclass(frozen=True)
class DynamicName:
    kind: str               # "pxelinux", "grub" or "ipxe"
    mac: str | None = None  # from the name (pxelinux.cfg/01-<mac>, grub.cfg-01-<mac>, <mac>.ipxe)
    ip: str | None = None   # from a hex-IP name (pxelinux.cfg/C612000A, grub.cfg-C612000A)

    @property
    def generic(self) -> bool:
        """``default``, ``grub.cfg``, ``boot.ipxe``: the requesting peer's lease decides."""
        return self.mac is None and self.ip is None


def _mac(text: str) -> str | None:
    try:
        return normalise_mac(text)
    except AddressError:
        return None


def _hex_ip(text: str) -> str | None:
    if not _HEX_IP.fullmatch(text):
        return None
    return ".".join(str(int(text[i:i + 2], 16)) for i in range(0, 8, 2))


def classify(name: str) -> DynamicName | None:
    """The rendered file ``name`` (a clean relative path) stands for, or None."""
    path = PurePosixPath(name)
    base = path.name
    if path.parent.name == "pxelinux.cfg":
        if base == "default":
            return DynamicName("pxelinux")
        if base.startswith("01-") and (mac := _mac(base)):
            return DynamicName("pxelinux", mac=mac)
        if ip := _hex_ip(base):
            return DynamicName("pxelinux", ip=ip)
        return None  # UUID names and shortened hex prefixes: not ours
    if base == "grub.cfg":
        return DynamicName("grub")
    if base.startswith("grub.cfg-"):
        rest = base[len("grub.cfg-"):]
        if rest.startswith("01-") and len(rest) == 20 and (mac := _mac(rest)):
            return DynamicName("grub", mac=mac)
        if ip := _hex_ip(rest):
            return DynamicName("grub", ip=ip)
        if mac := _mac(rest):
            return DynamicName("grub", mac=mac)
        return None
    if base == "boot.ipxe":
        return DynamicName("ipxe")
    if base.endswith(".ipxe") and (mac := _mac(base[:-5])):
        return DynamicName("ipxe", mac=mac)
    return None


@dataclasses.dataclass(frozen=True)
class Boot:
    """A boot plan and where this TFTP service keeps the images."""

    plan: bootplan.Plan
    mapper: PathMapper
    action: str  # "kernel", "local" or "error" (only iPXE chaining to HTTP can use it)
    why: str  # one line for the config's comment and the log
    error: str = ""  # action "error": why this loader cannot boot the host (names the record)

    @property
    def mac(self) -> str | None:
        return self.plan.mac

    def path(self, loc: Location) -> str:
        """A location as this TFTP service's loaders fetch it."""
        return self.mapper.tftp_path(loc) if loc.scheme == "image" else loc.value


def plan(mac: str | None, host: Host | None, profile: Profile | None,
         export: Export | None = None, *, images_prefix: str = "images",
         http_base_url: str | None = None, san_server: str = "",
         initiator_prefix: str = "iqn.2026-11.org.bootyard", unknown_host: str = "local",
         subnet: Subnet | None = None) -> Boot:
    """What the host should boot. A host whose records cannot say, or that needs iPXE, gets
    action "error": :func:`render` raises RenderError for it, except for an iPXE script that
    hands over to the HTTP service (which says why on the console)."""
    mapper = PathMapper(http_base_url, images_prefix)
    if host is None:
        action = bootplan.unknown_host_choice(unknown_host)
        why = ("unknown host: recorded, booting the local disk" if action == "discovery"
               else "unknown host: booting the local disk")
        return Boot(bootplan.Plan(mac or "", "unknown", mac or "", reason=action), mapper,
                    "local", why)
    if not san_server and http_base_url:
        san_server = urlsplit_host(http_base_url)
    facts = bootplan.Facts(base_url=http_base_url, san_server=san_server,
                           initiator_prefix=initiator_prefix, subnet=subnet)
    key = KINDS["host"].key(host.mac)
    try:
        found = bootplan.plan(host.mac, host, profile, export, facts)
    except bootcmdline.TemplateFailed as exc:
        return Boot(bootplan.Plan(mac or "", "error", mac or ""), mapper, "error", "",
                    f"{KINDS['profile'].key(profile.name) if profile else 'profile -'} cmdline: "
                    f"template failed for {host.mac}: {exc.reason}")
    if found.outcome == "disabled":
        return Boot(found, mapper, "local", "host disabled: booting the local disk")
    if found.outcome == "local":
        return Boot(found, mapper, "local", "boot_mode local")
    error = ""
    if found.outcome == "error":
        error = f"{key} boot_mode={host.boot_mode}: {found.reason}"
    elif found.outcome == "sanboot":
        error = (f"{key} boot_mode=sanboot: SAN boot needs iPXE "
                 "(point the host at ipxe.efi/undionly.kpxe and the HTTP service)")
    elif found.hook:
        error = (f"{key} boot_mode=netroot: iSCSI boot through iBFT (var.iscsi=ibft) "
                 "needs iPXE (point the host at ipxe.efi/undionly.kpxe and the HTTP service)")
    if error:
        return Boot(found, mapper, "error", "", error)
    return Boot(found, mapper, "kernel", f"profile {profile.name}, boot_mode {host.boot_mode}")


def urlsplit_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _header(boot: Boot, comment: str) -> str:
    who = boot.mac or "unknown client"
    why = boot.why or f"profile {boot.plan.profile or '-'}, boot_mode {boot.plan.mode}"
    return f"{comment} bootyard: rendered for {who}: {why}\n"


def _refuse(boot: Boot) -> None:
    if boot.action == "error":
        raise RenderError(boot.error)


def pxelinux(boot: Boot) -> str:
    _refuse(boot)
    text = _header(boot, "#") + "DEFAULT bootyard\nPROMPT 0\nTIMEOUT 0\n\nLABEL bootyard\n"
    if boot.action == "local":
        return text + "  LOCALBOOT 0\n"
    text += f"  KERNEL {boot.path(boot.plan.kernel)}\n"
    if boot.plan.initrds:
        text += f"  INITRD {','.join(boot.path(i) for i in boot.plan.initrds)}\n"
    text += f"  APPEND {boot.plan.cmdline}\n" if boot.plan.cmdline else ""
    return text + "  IPAPPEND 2\n"


def _grub_path(boot: Boot, loc: Location) -> str:
    if loc.scheme == "image":
        return boot.mapper.tftp_path(loc)
    if loc.scheme == "https":
        raise RenderError(f"{loc.value}: GRUB cannot fetch https URLs; use http or an image path")
    return grub_device_path(loc.value)


def grub(boot: Boot) -> str:
    _refuse(boot)
    text = _header(boot, "#") + "set timeout=0\nset default=0\n\n"
    if boot.action == "local":
        return text + ('menuentry "bootyard: local disk" {\n'
                       '  if [ "${grub_platform}" = "efi" ]; then exit; fi\n'
                       "  set root=(hd0)\n  chainloader +1\n  boot\n}\n")
    bootif = f" BOOTIF=01-{boot.mac.replace(':', '-')}" if boot.mac else ""
    words = " ".join(scriptvalues.grub_word(w) for w in boot.plan.cmdline.split())
    text += f'menuentry "bootyard: {boot.why}" {{\n'
    text += f"  linux {_grub_path(boot, boot.plan.kernel)} {words}{bootif}".rstrip() + "\n"
    if boot.plan.initrds:
        text += "  initrd " + " ".join(_grub_path(boot, i) for i in boot.plan.initrds) + "\n"
    return text + "}\n"


def ipxe(boot: Boot, http_base_url: str | None = None) -> str:
    text = "#!ipxe\n" + _header(boot, "#")
    if http_base_url:
        # the HTTP service owns iPXE scripts (URL contract): hand over to it
        return text + f"chain {http_base_url.rstrip('/')}/boot/ipxe?mac=${{net0/mac}}\n"
    _refuse(boot)
    if boot.action == "local":
        return text + "echo bootyard: booting the local disk\nsanboot --no-describe --drive 0x80 || exit\n"

    def url(loc: Location) -> str:
        if loc.scheme != "image":
            return loc.value
        return f"tftp://${{next-server}}{boot.mapper.tftp_path(loc)}"

    names = " ".join(f"initrd={i.name}" for i in boot.plan.initrds)
    line = " ".join(p for p in (f"kernel {url(boot.plan.kernel)}", names, boot.plan.cmdline,
                                f"BOOTIF=01-{boot.mac.replace(':', '-')}" if boot.mac else "") if p)
    text += line + "\n"
    for initrd in boot.plan.initrds:
        text += f"initrd {url(initrd)}\n"
    return text + "boot || echo bootyard: boot failed\n"


RENDERERS = {"pxelinux": lambda boot, base: pxelinux(boot),
             "grub": lambda boot, base: grub(boot),
             "ipxe": ipxe}


def render(kind: str, boot: Boot, http_base_url: str | None = None) -> str:
    return RENDERERS[kind](boot, http_base_url)
