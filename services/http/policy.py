"""Boot scripts for the HTTP service: the boot plan (shared/bootplan.py) written as iPXE or GRUB.

Pure and synchronous: a function of (MAC, host record or None, profile, block export and a
:class:`BootContext`, bootplan's ``Facts``). No sockets, no Redis, no clock. The server caches the
text by inventory version. What each boot mode boots (kernel, initrds, arguments, target) is
decided in the plan, the same for every loader; here it only becomes script text:

- ``install``, ``live``, ``netroot``: ``kernel`` + ``initrd``. Each initrd is fetched with
  ``--name`` and named with ``initrd=<name>`` on the command line, because ipxe.efi only hands
  the kernel the initrds named there. Netroot over iSCSI with ``var.iscsi=ibft``: iPXE logs in
  itself first (``set initiator-iqn``, ``sanhook``).
- ``sanboot``: ``sanboot iscsi:SERVER:::LUN:IQN`` (with ``initiator-iqn`` set per host) or
  ``sanboot aoe:eSHELF.SLOT``.
- ``local``: ``exit``, so the firmware boots the next device (the local disk).
- a disabled host: a message, then ``exit``.
- an unknown MAC (``http.unknown_host``): ``discovery`` (with ``discovery.enabled``: the
  discovery image, which reports the machine's hardware, docs/discovery.md; without: a message,
  a report fetch that records the details iPXE knows, a pause, ``exit``), ``local`` (a message,
  ``exit``), ``none`` (a plain ``exit``), ``menu`` (an iPXE menu: discovery when
  ``discovery.enabled``, the local disk, each profile with ``menu`` yes) or ``profile:<name>``
  (the boot plan makes the MAC a host of that profile: its script is that profile's).

Every failing step ends in ``goto failed``: a line naming the host and iPXE's error, a pause and
``exit``, so a broken boot is visible on the console and never silently falls into another one.
A failing cmdline template raises :class:`TemplateFailed`; the server then answers
:func:`cannot_render` (a script that names the template, waits and exits) and logs why.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from shared import bootplan, scriptvalues
from shared.bootcmdline import TemplateFailed
from shared.bootcontext import install_urls, merged_vars
from shared.records import Export, Host, Profile
from shared.scriptvalues import Location, PathMapper, grub_device_path, grub_word

__all__ = ["BootContext", "Script", "TemplateFailed", "cannot_render", "discovery_ipxe",
           "grub_config", "grub_path", "image_url", "initrd_names", "install_urls", "ipxe_script",
           "merged_vars"]

FAIL_PAUSE = 10  # seconds a failure message stays on screen before exit

# What the policy needs to know about this server (base_url, san_server, initiator_prefix,
# unknown_host, unknown_delay, token: the host's token only when it may appear in scripts,
# subnet: the host's subnet for the cmdline template).
BootContext = bootplan.Facts


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
    """This loader cannot boot what the plan says (GRUB and sanboot, ...)."""


# ------------------------------------------------------------------------------ URLs and names

def image_url(base_url: str, path: str) -> str:
    """A profile's kernel/initrd/root path as a URL: URLs unchanged, else under /images/."""
    return PathMapper(base_url).http_url(scriptvalues.parse_location(path))


def _url(ctx: BootContext, loc: Location) -> str:
    return PathMapper(ctx.base_url).http_url(loc)


def initrd_names(locations) -> list[str]:
    """A distinct, simple name for each initrd (its file name), for ``initrd=<name>``."""
    names: list[str] = []
    for index, loc in enumerate(locations):
        if isinstance(loc, str):
            loc = scriptvalues.parse_location(loc)
        base = loc.name or f"initrd{index}"
        base = re.sub(r"[^A-Za-z0-9._+-]", "_", base)
        names.append(base if base not in names else f"{index}-{base}")
    return names


# ------------------------------------------------------------------------------ iPXE

def _echo(text: str) -> str:
    """Text for an iPXE ``echo``: iPXE expands ``${...}`` and runs ``||``/``&&`` even there, and a
    reason may quote a refused inventory value, so anything else than plain text becomes '?'."""
    return re.sub(r"[^A-Za-z0-9 ._,:;=/()@+'-]", "?", text)


def ipxe_script(mac: str, host: Host | None, profile: Profile | None, export: Export | None,
                ctx: BootContext) -> Script:
    """The iPXE script for ``mac`` (see the module docstring for what each mode gives).
    Raises :class:`TemplateFailed` when the profile's cmdline template fails."""
    plan = bootplan.plan(mac, host, profile, export, ctx)
    if host is None:
        if plan.outcome in ("discovery", "error"):
            return _discovery_ipxe(plan, ctx)
        return _unknown_ipxe(mac, plan.reason, ctx)
    who = plan.who
    head = ["#!ipxe", f"# bootyard: {who} profile {host.profile or '-'} "
                        f"boot mode {host.boot_mode}"]
    if plan.outcome == "disabled":
        return Script("\n".join(head + [
            f"echo bootyard: {who} is disabled in the inventory; booting the next device",
            "exit", ""]), "disabled")
    if plan.outcome == "local":
        return Script("\n".join(head + [f"echo bootyard: {who}: booting from the local disk",
                                         "exit", ""]), "local")
    if plan.outcome == "error":
        return Script("\n".join(head + [
            f"echo bootyard: {who} cannot boot: {_echo(plan.reason)}",
            "echo bootyard: fix the inventory (bootyard validate), then reboot this machine",
            f"sleep {FAIL_PAUSE}", "exit", ""]), "error", plan.reason)
    return Script("\n".join(head + _ipxe_body(plan, ctx) + [
        ":failed", f"echo bootyard: {who}: {host.boot_mode} failed: ${{errno}}",
        f"sleep {FAIL_PAUSE}", "exit", ""]), host.boot_mode)


def _ipxe_body(plan: bootplan.Plan, ctx: BootContext) -> list[str]:
    who, mode = plan.who, plan.mode
    if mode == "sanboot":
        lines = [f"echo bootyard: {who}: sanboot {plan.target.export}"]
        if plan.initiator:
            lines.append(f"set initiator-iqn {plan.initiator}")
        lines.append(f"sanboot {plan.target.san_uri} || goto failed")
        return lines
    names = initrd_names(plan.initrds)
    kernel_args = " ".join([f"initrd={n}" for n in names] + list(plan.args))
    lines = [f"echo bootyard: {who}: {mode} {plan.profile}"]
    if plan.hook:
        lines += [f"set initiator-iqn {plan.initiator}",
                  f"sanhook {plan.target.san_uri} || goto failed"]
    kernel = _url(ctx, plan.kernel)
    lines.append(f"kernel {kernel} {kernel_args} || goto failed" if kernel_args
                 else f"kernel {kernel} || goto failed")
    for name, loc in zip(names, plan.initrds):
        lines.append(f"initrd --name {name} {_url(ctx, loc)} || goto failed")
    lines.append("boot || goto failed")
    return lines


def discovery_ipxe(mac: str, ctx: BootContext) -> Script:
    """The discovery boot's iPXE script (``/boot/discovery.ipxe?mac=``), for any MAC."""
    return _discovery_ipxe(bootplan.discovery_plan(mac, ctx), ctx)


def _discovery_ipxe(plan: bootplan.Plan, ctx: BootContext) -> Script:
    head = ["#!ipxe", f"# bootyard: discovery boot of {plan.mac}"]
    if plan.outcome == "error":
        return Script("\n".join(head + [
            f"echo bootyard: {plan.mac}: no discovery boot: {_echo(plan.reason)}",
            f"sleep {FAIL_PAUSE}", "exit", ""]), "error", plan.reason)
    names = initrd_names(plan.initrds)
    args = " ".join([f"initrd={n}" for n in names] + list(plan.args))
    lines = head + [f"echo bootyard: {plan.mac}: booting the discovery image to record its "
                    "hardware",
                    f"kernel {_url(ctx, plan.kernel)} {args} || goto failed"]
    for name, loc in zip(names, plan.initrds):
        lines.append(f"initrd --name {name} {_url(ctx, loc)} || goto failed")
    lines += ["boot || goto failed", ":failed",
              f"echo bootyard: {plan.mac}: discovery boot failed: ${{errno}}",
              f"sleep {FAIL_PAUSE}", "exit", ""]
    return Script("\n".join(lines), "discovery")


def _unknown_ipxe(mac: str, action: str, ctx: BootContext) -> Script:
    lines = ["#!ipxe", f"# bootyard: unknown host {mac}"]
    if action == "none":
        return Script("\n".join(lines + ["exit", ""]), "unknown")
    if action == "local":
        return Script("\n".join(lines + [
            f"echo bootyard: this machine ({mac}) is not in the inventory; booting the next "
            "device", "exit", ""]), "unknown")
    if action == "menu":
        return Script("\n".join(lines + menu_lines(mac, ctx) + [""]), "unknown")
    if action.startswith(bootplan.DEFAULT_PROFILE):
        name = action[len(bootplan.DEFAULT_PROFILE):]
        return Script("\n".join(lines + [
            f"echo bootyard: this machine ({mac}) is not in the inventory and the default "
            f"profile {_echo(name)} (http.unknown_host) does not exist; booting the next device",
            f"sleep {ctx.unknown_delay}", "exit", ""]), "unknown")
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


LOCAL_DISK = ["iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||", "exit"]


def menu_lines(mac: str, ctx: BootContext) -> list[str]:
    """The unknown-host menu (``http.unknown_host menu``): its entries come from the boot plan
    (``ctx.menu``, :func:`shared.bootplan.menu_entries`); the default (discovery when offered,
    else the local disk) is chosen after ``unknown_delay`` seconds."""
    entries = ctx.menu or bootplan.menu_entries((), False)
    default = "discovery" if any(e.kind == "discovery" for e in entries) else "local"
    lines = [f"menu bootyard: this machine ({mac}) is not in the inventory"]
    lines += [f"item {e.key} {_echo(e.label)}" for e in entries]
    lines += [f"choose --timeout {ctx.unknown_delay * 1000} --default {default} selected || "
              f"goto {default}", "goto ${selected}"]
    for entry in entries:
        lines.append(f":{entry.key}")
        if entry.kind == "discovery":
            lines.append(f"chain {bootplan.discovery_url(ctx.base_url)} || goto failed")
        elif entry.kind == "local":
            lines += ["echo bootyard: booting from the local disk"] + LOCAL_DISK
        else:
            lines += _menu_profile(mac, entry, ctx)
    return lines + [":failed", "echo bootyard: this menu entry failed: ${errno}",
                    f"sleep {FAIL_PAUSE}", "exit"]


def _menu_profile(mac: str, entry: bootplan.MenuEntry, ctx: BootContext) -> list[str]:
    host = bootplan.default_host(mac, entry.profile)
    try:
        plan = bootplan.plan(mac, host, entry.profile, entry.export, ctx)
    except TemplateFailed as exc:
        return [f"echo bootyard: profile {entry.profile.name} cannot boot: "
                f"{_echo(exc.reason)}", f"sleep {FAIL_PAUSE}", "exit"]
    if plan.outcome == "error":
        return [f"echo bootyard: profile {entry.profile.name} cannot boot: "
                f"{_echo(plan.reason)}", f"sleep {FAIL_PAUSE}", "exit"]
    return _ipxe_body(plan, ctx)


def cannot_render(kind: str, mac: str, host: Host | None) -> Script:
    """What a host whose profile's cmdline template fails gets (``kind`` ipxe or grub): a line
    saying so (neither the template's name nor its error, which anyone could fetch here: they
    are in the service log and the ``http.render_error`` event), a pause, ``exit``."""
    who = f"{host.hostname} ({mac})" if host and host.hostname else mac
    reason = "its kernel command line template does not render"
    lines = [f"bootyard: {who} cannot boot: {reason}",
             "bootyard: bootyard validate names the problem (the HTTP service log says it too); "
             "fix it, then reboot this machine"]
    if kind == "ipxe":
        text = ["#!ipxe", f"# bootyard: {who}"] + [f"echo {_echo(line)}" for line in lines]
    else:
        text = [f"# bootyard: {who}"] + [f"echo {grub_word(line)}" for line in lines]
    return Script("\n".join(text + [f"sleep {FAIL_PAUSE}", "exit", ""]), "error", reason)


# ------------------------------------------------------------------------------ GRUB

def _discovery_grub(plan: bootplan.Plan, ctx: BootContext) -> Script:
    try:
        kernel = _grub_location(ctx, plan.kernel)
        initrds = " ".join(_grub_location(ctx, loc) for loc in plan.initrds)
    except BootConfigError as exc:
        return Script("\n".join([f"# bootyard: discovery boot of {plan.mac}",
                                 f"echo {grub_word('bootyard: no discovery boot: ' + str(exc))}",
                                 f"sleep {FAIL_PAUSE}", "exit", ""]), "error", str(exc))
    words = " ".join(grub_word(w) for w in plan.args)
    return Script("\n".join([
        f"# bootyard: discovery boot of {plan.mac}", "set timeout=0", "set default=0",
        f"menuentry {grub_word(f'bootyard: discovery of {plan.mac}')} {{",
        f"    linux {kernel} {words}", f"    initrd {initrds}", "}", ""]), "discovery")


def grub_path(url: str) -> str:
    """``http://server:port/path`` as GRUB's ``(http,server:port)/path`` (scriptvalues' helper)."""
    return grub_device_path(url)


def _grub_location(ctx: BootContext, loc: Location) -> str:
    if loc.scheme == "https":
        raise BootConfigError(f"{loc.value}: GRUB cannot fetch https URLs")
    return grub_device_path(_url(ctx, loc))


def grub_config(mac: str, host: Host | None, profile: Profile | None, export: Export | None,
                ctx: BootContext) -> Script:
    """GRUB configuration for UEFI HTTP boot clients (GRUB cannot sanboot: it says so).
    Raises :class:`TemplateFailed` when the profile's cmdline template fails."""
    plan = bootplan.plan(mac, host, profile, export, ctx)
    if host is None and plan.outcome == "discovery":
        return _discovery_grub(plan, ctx)
    if host is None:
        text = [f"# bootyard: unknown host {mac}"]
        if plan.reason != "none":
            text += [f"echo 'bootyard: this machine ({mac}) is not in the inventory"
                     + ("; it has been recorded." if plan.reason == "discovery" else ".") + "'",
                     f"sleep {ctx.unknown_delay}"]
        return Script("\n".join(text + ["exit", ""]), "unknown")
    who = plan.who
    head = [f"# bootyard: {who} profile {host.profile or '-'} boot mode {host.boot_mode}"]

    def message(outcome: str, line: str, pause: int = 0, reason: str = "") -> Script:
        body = head + [f"echo {grub_word('bootyard: ' + line)}"]
        body += [f"sleep {pause}"] if pause else []
        return Script("\n".join(body + ["exit", ""]), outcome, reason)

    if plan.outcome == "disabled":
        return message("disabled", f"{who} is disabled in the inventory")
    if plan.outcome == "local":
        return message("local", f"{who}: booting from the local disk")
    try:
        if plan.outcome == "error":
            raise BootConfigError(plan.reason)
        if plan.outcome == "sanboot":
            raise BootConfigError("sanboot needs iPXE; GRUB cannot boot from AoE/iSCSI")
        if plan.hook:
            raise BootConfigError("iSCSI boot through iBFT needs iPXE")
        kernel = _grub_location(ctx, plan.kernel)
        initrds = " ".join(_grub_location(ctx, loc) for loc in plan.initrds)
    except BootConfigError as exc:
        return message("error", f"{who} cannot boot: {exc}", FAIL_PAUSE, str(exc))
    words = " ".join(grub_word(w) for w in plan.cmdline.split())
    body = head + [
        "set timeout=0", "set default=0",
        f"menuentry {grub_word(f'bootyard: {host.boot_mode} {plan.profile} on {who}')} {{",
        "    echo 'bootyard: loading the kernel'",
        f"    linux {kernel} {words}".rstrip()]
    if initrds:
        body += ["    echo 'bootyard: loading the initrd'", f"    initrd {initrds}"]
    body += ["}", ""]
    return Script("\n".join(body), host.boot_mode)
