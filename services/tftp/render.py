"""Per-host boot loader configs, rendered from inventory records: pure (no I/O, no clock).

Two questions, kept apart so the HTTP service can reuse the text:

- :func:`classify` says whether a requested name is one we render, and what it tells us (a MAC,
  an IP written in hex, or nothing: then the requesting peer's lease decides).
- :func:`plan` turns (MAC, host, profile) into a :class:`Boot` (kernel + initrds + command line,
  or "boot the local disk"); :func:`pxelinux`, :func:`grub` and :func:`ipxe` write it out.

Kernel and initrd paths in a profile are relative to the images root; here they become
``/<images_prefix>/<path>`` fetched over TFTP from the same server (the HTTP service serves the
same files under ``/images/``). An ``http(s)://`` URL in the profile is passed through: GRUB
fetches it with its ``http`` module, iPXE natively, PXELINUX only as lpxelinux.0.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from shared.addresses import AddressError, normalise_mac
from shared.schema import KINDS, Host, Profile, plain

_HEX_IP = re.compile(r"[0-9A-Fa-f]{8}")
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


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
    mac: str | None
    action: str                      # "kernel" or "local"
    why: str                         # one line for the config's comment and the log
    kernel: str = ""
    initrds: tuple[str, ...] = ()
    cmdline: str = ""


def context(mac: str, host: Host | None, profile: Profile | None,
            http_base_url: str | None) -> dict[str, Any]:
    """What a profile's cmdline template sees (docs/tftp.md): mac, host, profile, vars, urls."""
    variables = dict(profile.vars) if profile else {}
    if host:
        variables.update(host.vars)
    out: dict[str, Any] = {"mac": mac, "host": plain(host) or {"mac": mac},
                           "profile": plain(profile), "vars": variables}
    if http_base_url:
        base = http_base_url.rstrip("/")
        root = f"{base}/install/{mac}"
        out["urls"] = {"base": base, "images": f"{base}/images", "mirror": f"{base}/mirror",
                       "kickstart": f"{root}/ks.cfg", "preseed": f"{root}/preseed.cfg",
                       "nocloud": f"{root}/", "script": f"{base}/boot/{mac}.ipxe"}
    return out


def _path(value: str, images_prefix: str) -> str:
    if value.startswith(("http://", "https://")):
        return value
    return "/" + "/".join(p for p in (images_prefix.strip("/"), value.lstrip("/")) if p)


def plan(mac: str | None, host: Host | None, profile: Profile | None, *,
         images_prefix: str = "images", http_base_url: str | None = None) -> Boot:
    """What the host should boot. Raises RenderError when its records cannot say."""
    if host is None:
        return Boot(mac, "local", "unknown host: booting the local disk")
    key = KINDS["host"].key(host.mac)
    if not host.enabled:
        return Boot(mac, "local", "host disabled: booting the local disk")
    if host.boot_mode == "local":
        return Boot(mac, "local", "boot_mode local")
    if host.boot_mode == "sanboot":
        raise RenderError(f"{key} boot_mode=sanboot: SAN boot needs iPXE "
                          "(point the host at ipxe.efi/undionly.kpxe and the HTTP service)")
    if not host.profile:
        raise RenderError(f"{key} profile: not set, and boot_mode is {host.boot_mode}")
    if profile is None:
        raise RenderError(f"{key} profile={host.profile!r}: no such profile "
                          f"({KINDS['profile'].key(host.profile)})")
    where = KINDS["profile"].key(profile.name)
    if not profile.kernel:
        raise RenderError(f"{where} kernel: not set")
    try:
        cmdline = _ENV.from_string(profile.cmdline).render(
            context(host.mac, host, profile, http_base_url))
    except jinja2.TemplateError as exc:
        raise RenderError(f"{where} cmdline: template failed for "
                          f"{host.mac}: {exc}") from None
    if "\n" in cmdline or "\r" in cmdline:
        raise RenderError(f"{where} cmdline: renders to several lines")
    return Boot(mac, "kernel", f"profile {profile.name}, boot_mode {host.boot_mode}",
                _path(profile.kernel, images_prefix),
                tuple(_path(i, images_prefix) for i in profile.initrd), cmdline.strip())


def _header(boot: Boot, comment: str) -> str:
    who = boot.mac or "unknown client"
    return f"{comment} bootyard: rendered for {who}: {boot.why}\n"


def pxelinux(boot: Boot) -> str:
    text = _header(boot, "#") + "DEFAULT bootyard\nPROMPT 0\nTIMEOUT 0\n\nLABEL bootyard\n"
    if boot.action == "local":
        return text + "  LOCALBOOT 0\n"
    text += f"  KERNEL {boot.kernel}\n"
    if boot.initrds:
        text += f"  INITRD {','.join(boot.initrds)}\n"
    text += f"  APPEND {boot.cmdline}\n" if boot.cmdline else ""
    return text + "  IPAPPEND 2\n"


def _grub_path(value: str) -> str:
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        return f"({parts.scheme},{parts.netloc}){parts.path}"
    return value


def grub(boot: Boot) -> str:
    text = _header(boot, "#") + "set timeout=0\nset default=0\n\n"
    if boot.action == "local":
        return text + ('menuentry "bootyard: local disk" {\n'
                       '  if [ "${grub_platform}" = "efi" ]; then exit; fi\n'
                       "  set root=(hd0)\n  chainloader +1\n  boot\n}\n")
    bootif = f" BOOTIF=01-{boot.mac.replace(':', '-')}" if boot.mac else ""
    text += f'menuentry "bootyard: {boot.why}" {{\n'
    text += f"  linux {_grub_path(boot.kernel)} {boot.cmdline}{bootif}".rstrip() + "\n"
    if boot.initrds:
        text += "  initrd " + " ".join(_grub_path(i) for i in boot.initrds) + "\n"
    return text + "}\n"


def ipxe(boot: Boot, http_base_url: str | None = None) -> str:
    text = "#!ipxe\n" + _header(boot, "#")
    if http_base_url:
        # the HTTP service owns iPXE scripts (URL contract): hand over to it
        return text + f"chain {http_base_url.rstrip('/')}/boot/ipxe?mac=${{net0/mac}}\n"
    if boot.action == "local":
        return text + "echo bootyard: booting the local disk\nsanboot --no-describe --drive 0x80 || exit\n"

    def url(value: str) -> str:
        return value if "://" in value else f"tftp://${{next-server}}{value}"

    names = " ".join(f"initrd={PurePosixPath(i).name}" for i in boot.initrds)
    line = " ".join(p for p in (f"kernel {url(boot.kernel)}", names, boot.cmdline,
                                f"BOOTIF=01-{boot.mac.replace(':', '-')}" if boot.mac else "") if p)
    text += line + "\n"
    for initrd in boot.initrds:
        text += f"initrd {url(initrd)}\n"
    return text + "boot || echo bootyard: boot failed\n"


RENDERERS = {"pxelinux": lambda boot, base: pxelinux(boot),
             "grub": lambda boot, base: grub(boot),
             "ipxe": ipxe}


def render(kind: str, boot: Boot, http_base_url: str | None = None) -> str:
    return RENDERERS[kind](boot, http_base_url)
