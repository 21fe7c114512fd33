"""Why a boot stopped, in words an operator acts on: the stuck reason of one boot attempt.

Pure, and part of :mod:`shared.bootstate` (split off to keep each module readable): given an
attempt as :class:`shared.bootstate` read it (what it reached, when, what failed, what it
lacks) and ``now``, :func:`reason` says which of :data:`shared.bootstate.REASONS` it most likely
is and what to do. The block device reasons read the blockexport service's events (AoE:
``blockexport.attach``, ``first_read``, ``io_error``/``io_recovered``; iSCSI: ``attach`` with
``transport=iscsi``, ``iscsi_login``, ``iscsi_login_failed``, ``iscsi_logout``, ``iscsi_reset``).
"""

from __future__ import annotations

from typing import Any

from shared.bootcontext import BOOTED_MODES  # the modes whose OS calls the booted URL

HTTP_CLIENT_ARCHES = ("16", "19")  # option 93: x64 and arm64 UEFI HTTP boot clients
# iscsi_login_failed's reason -> what it means and what to do
LOGIN_REFUSED = {
    "chap": "CHAP (the initiator's CHAP user or secret does not match the export's)",
    "not_allowed": "initiator {initiator} is not allowed on the export (the export's initiator "
                   "list, or the host's var.initiator_iqn)",
    "unknown_target": "unknown target {target} (the iSCSI name in its boot script or on its "
                      "command line: bootyard blockexport show)",
    "auth_required": "the export wants CHAP and the initiator offered none (give the host the "
                     "export's CHAP user and secret)",
    "no_host": "initiator {initiator} matches no inventory host (var.initiator_iqn, or "
               "blockexport.initiator_prefix equal to http.initiator_prefix)",
    "export_down": "the export is down (its backing store: bootyard doctor)",
    "too_many_connections": "the target has too many connections",
    "timeout": "the login did not finish in time",
}


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h" + (f" {rest // 60} min" if rest >= 60 else "")


def _last(failures, code: str):
    found = [x for x in failures if x[1] == code]
    return found[-1] if found else None


def block_reason(b: Any, stage: str, waited: str) -> tuple[str, str] | None:
    """The block device's part of :func:`reason`: a refused login, I/O errors, an export
    attached but never read, a session lost, a netroot/sanboot export never attached."""
    refused = b.login_failed
    if refused and refused[-1][0] >= b.login_ok:
        ts, why, fields = refused[-1]
        text = LOGIN_REFUSED.get(why, why or "no reason given").format(
            initiator=fields.get("initiator", "?"),
            target=fields.get("target") or fields.get("export", "?"))
        return "iscsi_login_refused", f"iSCSI login refused: {text}"
    if b.io_errors:
        export, (op, why) = next(reversed(b.io_errors.items()))
        return "block_io_error", (f"block export {export}: its {op}s fail ({why}); the "
                                  "blockexport log and bootyard blockexport show say why")
    if stage == "root" and b.attached:
        export, (transport, target) = next(reversed(b.attached.items()))
        if transport == "aoe" and not b.read_from:
            return "export_not_read", (
                f"AoE export {export} ({target or '?'}) attached, never read in {waited} "
                "(aoe driver not loaded? wrong shelf.slot on the command line?)")
        if transport == "iscsi" and b.session_lost > b.login_ok:
            return "iscsi_session_lost", (
                f"iSCSI session to {export} ended ({b.session_lost_how}) and never came back "
                f"in {waited} (the initiator's network? the blockexport log)")
    mode = b.mode()
    if mode in ("netroot", "sanboot") and not b.attached and (
            (mode == "sanboot" and stage in ("script", "loader")) or stage == "os_dhcp"):
        export = getattr(b.profile, "export", None) or "its export"
        how = ("iPXE's sanboot" if mode == "sanboot" else "the initramfs")
        return "export_not_attached", (
            f"{how} never attached {export} in {waited} (AoE: the same Ethernet segment or "
            "VLAN, the aoe module in the initramfs; iSCSI: the portal reachable on TCP 3260?)")
    return None


def reason(b: Any, now: float, expected: Any) -> tuple[str, str]:
    """(reason code, text) for a stuck attempt ``b`` (a :class:`shared.bootstate._Build`)."""
    stage = b.stage
    since = b.reached.get(stage, b.start)
    recent = [x for x in b.failures if x[0] >= since]
    refused = _last(recent, "install_file_refused")
    if refused:
        return refused[1], refused[2]
    if b.outcome in ("error", "disabled", "unknown"):
        text = {"error": f"its boot script is an error: {b.script_reason or '?'} (fix the "
                         "host's profile: bootyard host show MAC)",
                "disabled": "the host is disabled: its script boots nothing (bootyard host "
                            "set MAC --enabled true)",
                "unknown": "the MAC is not in the inventory: it got the discovery script "
                           "(bootyard host add MAC --profile ...)"}[b.outcome]
        return "script_error", text
    x = _last(recent, "script_error")
    if x:
        return x[1], x[2]
    waited = duration(now - since)
    ip = b.offer_ip or "an address"
    if stage == "dhcp":
        x = _last(recent, "dhcp_refused")
        if x:
            return x[1], x[2]
        if b.ignored:
            why = b.ignored[-1][1]
            fix = (" (bootyard host set MAC --enabled true)" if why.startswith("host_disabled")
                   else "")
            return "dhcp_ignored", f"DHCP ignores it: {why}{fix}"
        return "dhcp_unanswered", (f"DISCOVER not answered for {waited} (is the DHCP "
                                   "service on this network, or a relay pointing at it?)")
    if stage == "offered":
        x = _last(recent, "dhcp_refused")
        if x:
            return x[1], x[2]
        times = "twice" if b.offers == 2 else (f"{b.offers} times" if b.offers > 2 else "once")
        return "offer_not_requested", (
            f"offered {ip} {times}, never requested (another DHCP server answering? the "
            "firmware rejected the offer: see its options, e.g. the boot file)")
    if stage == "bound" and b.arch in HTTP_CLIENT_ARCHES and \
            not b.boot_file.startswith(("http://", "https://")):
        return "http_client_tftp_path", (
            f"UEFI HTTP client was offered a TFTP path {b.boot_file!r} (give it an "
            "http:// URL: var.http_boot_file)")
    if recent and recent[-1][1] in ("tftp_not_found", "tftp_failed"):
        return recent[-1][1], recent[-1][2]
    block = block_reason(b, stage, waited)
    if block:
        return block
    if stage == "bound":
        if not b.boot_file:
            return "no_boot_file", (f"bound {ip} without a boot file (not a PXE client? "
                                    "check the subnet's boot_file_* and the host's vars)")
        return "boot_file_not_fetched", (
            f"bound {ip}, never fetched its boot file {b.boot_file} in {waited} "
            "(next-server unreachable? UDP 69 or the HTTP port blocked?)")
    if stage == "loader":
        return "script_not_fetched", (f"loader fetched, never asked for its boot script in "
                                      f"{waited} (check dhcp.http_base_url and that the "
                                      "loader can reach the HTTP service)")
    if stage == "script" or (stage == "root" and b.mode() == "netroot"
                             and "kernel" not in b.reached):  # (iPXE's sanhook came first)
        kernels = ", ".join(sorted(b.names("kernel"))) or "its kernel"
        return "kernel_not_fetched", (f"boot script served, {kernels} never fetched in "
                                      f"{waited} (is it under http.images_root? the HTTP "
                                      "log shows a 404)")
    if stage == "kernel" and b.names("initrd"):
        return "initrd_not_fetched", (
            f"fetched the kernel, never asked for the initrd "
            f"{', '.join(sorted(b.names('initrd')))} (a 404? the HTTP log says)")
    if stage in ("kernel", "initrd"):
        return "no_os_dhcp", (f"kernel fetched, no DHCP from the OS within {waited} "
                              "(network driver missing in the initrd, or a VLAN?)")
    if stage == "installer":
        return "install_timeout", (f"installing for {waited}, no install-done (did the "
                                   "installer fail? its last step calls /install/MAC/done)")
    mode = b.mode()
    if mode == "live" and "root" not in b.reached and b.names("root_image"):
        roots = ", ".join(sorted(b.names("root_image")))
        return "root_not_fetched", f"the OS is up, {roots} never fetched in {waited}"
    if mode in BOOTED_MODES and getattr(expected, "booted", True):
        started = "its root attached" if stage == "root" else "the OS asked DHCP"
        return "never_up", (
            f"kernel started ({started}), never said it is up in {waited} (did it reach "
            "its services? its console; does the image call the booted URL: docs/http.md)")
    return "install_file_not_fetched", (
        f"the OS asked DHCP, the installer never fetched its install file in {waited} "
        "(the install URL on the kernel command line? the profile's install field?)")
