"""Boot-script policy: what a machine is told to boot, as iPXE script or GRUB config text.

Pure and synchronous: a function of (MAC, host record or None, profile, block export, the kernel
command line already rendered from the profile's template, and a :class:`BootContext`). No
sockets, no Redis, no clock. The server caches the text by inventory version.

Boot modes (``host.boot_mode``), and the iPXE they give:

- ``install``, ``live``, ``netroot``: ``kernel`` + ``initrd`` from the profile over HTTP. Each
  initrd is fetched with ``--name`` and named with ``initrd=<name>`` on the command line, because
  ipxe.efi only hands the kernel the initrds named there. ``live`` adds the squashfs root URL
  (dracut ``root=live:URL`` or initramfs-tools/busybox ``rooturl=URL``, per ``profile.live_style``);
  ``netroot`` adds the root disk from the block export (AoE ``root=/dev/etherd/eS.L`` [and dracut
  ``netroot=aoe:eS.L``], iSCSI dracut ``netroot=iscsi:SERVER:::LUN:IQN`` with the host's initiator
  name, or with ``var.iscsi=ibft`` an iPXE ``sanhook`` and ``netroot=iscsi:ibft``).
- ``sanboot``: ``sanboot iscsi:SERVER:::LUN:IQN`` (with ``initiator-iqn`` set per host) or
  ``sanboot aoe:eSHELF.SLOT``.
- ``local``: ``exit``, so the firmware boots the next device (the local disk).
- a disabled host: a message, then ``exit``.
- an unknown MAC: discovery (a message, a report fetch that records the machine's details, a
  pause, ``exit``) or a plain ``exit``.

Every failing step ends in ``goto failed``: a line naming the host and iPXE's error, a pause and
``exit``, so a broken boot is visible on the console and never silently falls into another one.
"""

from __future__ import annotations

import dataclasses
import functools
import posixpath
import re
import urllib.parse
from collections.abc import Mapping

from shared.schema import Export, Host, Profile

FAIL_PAUSE = 10  # seconds a failure message stays on screen before exit


@dataclasses.dataclass(frozen=True)
class BootContext:
    """What the policy needs to know about this server (all text, no I/O)."""

    base_url: str  # http://10.0.0.1:8080, no trailing slash
    san_server: str  # address of the AoE/iSCSI target
    initiator_prefix: str = "iqn.2026-11.org.bootyard"
    unknown_host: str = "discovery"  # or "exit"
    unknown_delay: int = 10
    token: str | None = None  # the host's token, only when it may appear in scripts


@dataclasses.dataclass(frozen=True)
class Script:
    """A rendered script and what it does (for the ``http.script`` event and metrics)."""

    text: str
    outcome: str  # install, live, netroot, sanboot, local, disabled, unknown, error
    reason: str = ""

    @functools.cached_property
    def body(self) -> bytes:
        return self.text.encode()


class BootConfigError(ValueError):
    """The inventory does not say enough to boot this host (missing kernel, export ...)."""


# ------------------------------------------------------------------------------ URLs and names

def image_url(base_url: str, path: str) -> str:
    """A profile's kernel/initrd/root path as a URL: http(s) URLs unchanged, else under /images/."""
    if path.startswith(("http://", "https://")):
        return path
    return f"{base_url}/images/{urllib.parse.quote(path.lstrip('/'), safe='/._-~+')}"


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
        "script": f"{base_url}/boot/{mac}.ipxe",
    }


def initiator_iqn(host: Host, prefix: str) -> str:
    """The host's iSCSI initiator name: ``var.initiator_iqn``, else <prefix>:<hostname or MAC>."""
    if host.vars.get("initiator_iqn"):
        return host.vars["initiator_iqn"]
    return f"{prefix}:{host.hostname or host.mac.replace(':', '')}"


def initrd_names(paths: tuple[str, ...]) -> list[str]:
    """A distinct, simple name for each initrd (its file name), for ``initrd=<name>``."""
    names: list[str] = []
    for index, path in enumerate(paths):
        base = posixpath.basename(urllib.parse.urlsplit(path).path) or f"initrd{index}"
        base = re.sub(r"[^A-Za-z0-9._+-]", "_", base)
        names.append(base if base not in names else f"{index}-{base}")
    return names


def san_uri(export: Export, server: str) -> str:
    """iPXE's SAN URI for an export (the LUN is the export's, 1 by default: tgt-style targets
    keep a controller on LUN 0)."""
    if export.kind == "aoe":
        return f"aoe:e{export.aoe_shelf}.{export.aoe_slot}"
    return f"iscsi:{server}:::{export.lun}:{export.iqn}"


# ------------------------------------------------------------------------------ iPXE

def ipxe_script(mac: str, host: Host | None, profile: Profile | None, export: Export | None,
                ctx: BootContext, cmdline: str = "") -> Script:
    """The iPXE script for ``mac`` (see the module docstring for what each mode gives)."""
    if host is None:
        return _unknown_ipxe(mac, ctx)
    who = f"{host.hostname} ({mac})" if host.hostname else mac
    head = ["#!ipxe", f"# bootyard: {who} profile {host.profile or '-'} "
                        f"boot mode {host.boot_mode}"]
    if not host.enabled:
        return Script("\n".join(head + [
            f"echo bootyard: {who} is disabled in the inventory; booting the next device",
            "exit", ""]), "disabled")
    if host.boot_mode == "local":
        return Script("\n".join(head + [f"echo bootyard: {who}: booting from the local disk",
                                         "exit", ""]), "local")
    try:
        body = _ipxe_body(who, host, profile, export, ctx, cmdline)
    except BootConfigError as exc:
        return Script("\n".join(head + [
            f"echo bootyard: {who} cannot boot: {exc}",
            "echo bootyard: fix the inventory (bootyard validate), then reboot this machine",
            f"sleep {FAIL_PAUSE}", "exit", ""]), "error", str(exc))
    return Script("\n".join(head + body + [
        ":failed", f"echo bootyard: {who}: {host.boot_mode} failed: ${{errno}}",
        f"sleep {FAIL_PAUSE}", "exit", ""]), host.boot_mode)


def _ipxe_body(who: str, host: Host, profile: Profile | None, export: Export | None,
               ctx: BootContext, cmdline: str) -> list[str]:
    if profile is None:
        raise BootConfigError(f"no profile (host profile={host.profile or 'unset'})")
    mode = host.boot_mode
    if mode == "sanboot":
        export = _need_export(profile, export)
        lines = [f"echo bootyard: {who}: sanboot {export.name}"]
        if export.kind == "iscsi":
            lines.append(f"set initiator-iqn {initiator_iqn(host, ctx.initiator_prefix)}")
        lines.append(f"sanboot {san_uri(export, ctx.san_server)} || goto failed")
        return lines
    kernel, args, pre = _kernel_args(host, profile, export, ctx, cmdline)
    names = initrd_names(profile.initrd)
    kernel_args = " ".join([f"initrd={n}" for n in names] + args)
    lines = [f"echo bootyard: {who}: {mode} {profile.name}"] + pre
    lines.append(f"kernel {kernel} {kernel_args} || goto failed".replace("  ", " ")
                 if kernel_args else f"kernel {kernel} || goto failed")
    for name, path in zip(names, profile.initrd):
        lines.append(f"initrd --name {name} {image_url(ctx.base_url, path)} || goto failed")
    lines.append("boot || goto failed")
    return lines


def _need_export(profile: Profile, export: Export | None) -> Export:
    if export is None:
        raise BootConfigError(f"profile {profile.name} names no usable block export "
                              f"(export={profile.export or 'unset'})")
    return export


def _kernel_args(host: Host, profile: Profile, export: Export | None, ctx: BootContext,
                 cmdline: str) -> tuple[str, list[str], list[str]]:
    """(kernel URL, generated arguments + the profile's command line, iPXE lines before
    ``kernel``) for install/live/netroot."""
    if not profile.kernel:
        raise BootConfigError(f"profile {profile.name} has no kernel")
    args: list[str] = []
    pre: list[str] = []
    mode = host.boot_mode
    if mode == "live":
        if not profile.root_image:
            raise BootConfigError(f"profile {profile.name} has no root_image for live boot")
        root = image_url(ctx.base_url, profile.root_image)
        args += ([f"root=live:{root}", "ip=dhcp", "rd.neednet=1"]
                 if profile.live_style == "dracut" else [f"rooturl={root}", "ip=dhcp"])
    elif mode == "netroot":
        export = _need_export(profile, export)
        if export.kind == "aoe":
            disk = f"e{export.aoe_shelf}.{export.aoe_slot}"
            args.append(f"root=/dev/etherd/{disk}")
            if profile.live_style == "dracut":
                args += [f"netroot=aoe:{disk}", "rd.neednet=1"]
            args.append("ip=dhcp")
        else:
            iqn = initiator_iqn(host, ctx.initiator_prefix)
            if host.vars.get("iscsi", profile.vars.get("iscsi")) == "ibft":
                pre += [f"set initiator-iqn {iqn}",
                        f"sanhook {san_uri(export, ctx.san_server)} || goto failed"]
                args += ["rd.iscsi.firmware=1", "rd.iscsi.ibft=1", "netroot=iscsi:ibft"]
            else:
                args += [f"netroot={san_uri(export, ctx.san_server)}",
                         f"rd.iscsi.initiator={iqn}", "ip=dhcp", "rd.neednet=1"]
    if cmdline.strip():
        args.append(cmdline.strip())
    return image_url(ctx.base_url, profile.kernel), args, pre


def _unknown_ipxe(mac: str, ctx: BootContext) -> Script:
    lines = ["#!ipxe", f"# bootyard: unknown host {mac}"]
    if ctx.unknown_host == "exit":
        return Script("\n".join(lines + ["exit", ""]), "unknown")
    report = (f"{ctx.base_url}/boot/discover?mac={mac}&arch=${{buildarch}}"
              "&platform=${platform}&manufacturer=${manufacturer:uristring}"
              "&product=${product:uristring}&serial=${serial:uristring}&uuid=${uuid}")
    lines += [
        f"echo bootyard: this machine ({mac}) is not in the inventory; it has been recorded.",
        f"echo bootyard: to deploy it: bootyard host add {mac} --profile NAME",
        f"imgfetch --name bootyard-discover {report} && imgfree bootyard-discover || "
        "echo bootyard: could not report this machine's details",
        f"sleep {ctx.unknown_delay}",
        "exit", ""]
    return Script("\n".join(lines), "unknown")


# ------------------------------------------------------------------------------ GRUB

_GRUB_PLAIN = re.compile(r"[A-Za-z0-9._,:/=@+%-]+")


def _grub_word(word: str) -> str:
    """One GRUB word: plain, or single-quoted (no ``$`` expansion inside single quotes)."""
    if _GRUB_PLAIN.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def grub_path(url: str) -> str:
    """``http://server:port/path`` as GRUB's ``(http,server:port)/path``."""
    parts = urllib.parse.urlsplit(url)
    hostport = parts.netloc if parts.port not in (None, 80) else parts.hostname
    return f"({parts.scheme},{hostport}){parts.path}"


def grub_config(mac: str, host: Host | None, profile: Profile | None, export: Export | None,
                ctx: BootContext, cmdline: str = "") -> Script:
    """GRUB configuration for UEFI HTTP boot clients (GRUB cannot sanboot: it says so)."""
    if host is None:
        what = "unknown"
        text = [f"# bootyard: unknown host {mac}",
                f"echo 'bootyard: this machine ({mac}) is not in the inventory; it has been "
                "recorded.'", f"sleep {ctx.unknown_delay}", "exit", ""]
        return Script("\n".join(text), what)
    who = f"{host.hostname} ({mac})" if host.hostname else mac
    head = [f"# bootyard: {who} profile {host.profile or '-'} boot mode {host.boot_mode}"]

    def message(outcome: str, line: str, pause: int = 0, reason: str = "") -> Script:
        body = head + [f"echo {_grub_word('bootyard: ' + line)}"]
        body += [f"sleep {pause}"] if pause else []
        return Script("\n".join(body + ["exit", ""]), outcome, reason)

    if not host.enabled:
        return message("disabled", f"{who} is disabled in the inventory")
    if host.boot_mode == "local":
        return message("local", f"{who}: booting from the local disk")
    try:
        if profile is None:
            raise BootConfigError(f"no profile (host profile={host.profile or 'unset'})")
        if host.boot_mode == "sanboot":
            raise BootConfigError("sanboot needs iPXE; GRUB cannot boot from AoE/iSCSI")
        kernel, args, pre = _kernel_args(host, profile, export, ctx, cmdline)
        if pre:
            raise BootConfigError("iSCSI boot through iBFT needs iPXE")
    except BootConfigError as exc:
        return message("error", f"{who} cannot boot: {exc}", FAIL_PAUSE, str(exc))
    words = " ".join(_grub_word(w) for a in args for w in a.split())
    initrds = " ".join(grub_path(image_url(ctx.base_url, p)) for p in profile.initrd)
    body = head + [
        "set timeout=0", "set default=0",
        f"menuentry {_grub_word(f'bootyard: {host.boot_mode} {profile.name} on {who}')} {{",
        "    echo 'bootyard: loading the kernel'",
        f"    linux {grub_path(kernel)} {words}".rstrip()]
    if initrds:
        body += ["    echo 'bootyard: loading the initrd'", f"    initrd {initrds}"]
    body += ["}", ""]
    return Script("\n".join(body), host.boot_mode)


def cmdline_is_safe(text: str) -> bool:
    """A rendered command line must stay one line of printable text (it goes into a script)."""
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def merged_vars(host: Host | None, profile: Profile | None) -> Mapping[str, str]:
    """Template variables: the profile's, overlaid by the host's."""
    out: dict[str, str] = dict(profile.vars) if profile else {}
    if host:
        out.update(host.vars)
    return out
