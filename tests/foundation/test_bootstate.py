"""shared.bootstate: every stage and every stuck reason, each from the event sequence that
produces it (the events' kinds and fields as the services write them)."""

from __future__ import annotations

import dataclasses

import pytest

from shared.bootstate import REASONS, STAGES, Expected, attempt_of_each, attempts, boot_state
from shared.records import Host, Profile

MAC = "52:54:00:12:34:56"
IP = "198.18.5.21"
HOST = Host(mac=MAC, ip=IP, profile="debian")
PROFILE = Profile(name="debian", kernel="debian/vmlinuz", initrd=("debian/initrd.gz",),
                  install="preseed")
LIVE = Profile(name="live", kernel="live/vmlinuz", initrd=("live/initrd.img",),
               root_image="live/root.squashfs")
SAN = Profile(name="san", export="web1-root")
SCRIPT = "http://198.18.5.1:8080/boot/ipxe?mac=" + MAC


@dataclasses.dataclass(frozen=True)
class E:
    ts: float
    kind: str
    fields: dict


def ev(ts, kind, **fields):
    return E(float(ts), kind, {k: str(v) for k, v in fields.items()})


# the pieces of a BIOS PXE -> iPXE -> HTTP install, as the services emit them
def dhcp_firmware(t, arch="0"):
    return [ev(t, "dhcp.discover", arch=arch),
            ev(t, "dhcp.offer", ip=IP, subnet="lab", interface="br0",
               boot_file="undionly.kpxe", boot_reason="bios"),
            ev(t + 1, "dhcp.ack", ip=IP, subnet="lab", interface="br0",
               boot_file="undionly.kpxe", boot_reason="bios")]


def loader(t):
    return [ev(t, "tftp.transfer", ip=IP, file="undionly.kpxe", result="tsize_probe"),
            ev(t, "tftp.transfer", ip=IP, file="undionly.kpxe", result="ok", bytes=70000)]


def ipxe_dhcp(t):
    return [ev(t, "dhcp.discover", arch="0"),
            ev(t, "dhcp.offer", ip=IP, subnet="lab", boot_file=SCRIPT,
               boot_reason="ipxe-script"),
            ev(t, "dhcp.ack", ip=IP, subnet="lab", boot_file=SCRIPT, boot_reason="ipxe-script")]


def script(t, outcome="install", **extra):
    return [ev(t, "http.script", ip=IP, script="ipxe", outcome=outcome, profile="debian",
               **extra)]


def kernel(t):
    return [ev(t, "http.file", ip=IP, path="/images/debian/vmlinuz", status=200, bytes=1)]


def initrd(t):
    return [ev(t, "http.file", ip=IP, path="/images/debian/initrd.gz", status=200, bytes=1)]


def os_dhcp(t):
    return [ev(t, "dhcp.offer", ip=IP, subnet="lab"), ev(t, "dhcp.ack", ip=IP, subnet="lab")]


def installer(t):
    return [ev(t, "http.install", ip=IP, file="preseed.cfg", template="preseed.cfg.j2",
               via="reserved")]


def done(t):
    return [ev(t, "http.install_done", ip=IP, via="reserved", boot_mode="local")]


def aoe_attach(t, read=True):
    return ([ev(t, "blockexport.attach", export="web1-root", target="e1.1", cow="yes")]
            + ([ev(t + 1, "blockexport.first_read", export="web1-root", lba=0)] if read
               else []))


def iscsi_login(t):
    return [ev(t, "blockexport.attach", export="web1-root", transport="iscsi",
               target="iqn.2026-11.org.example:web1"),
            ev(t, "blockexport.iscsi_login", export="web1-root",
               initiator="iqn.2026-11.org.bootyard:web1", address=IP)]


def install_boot(t=1000.0):
    return (dhcp_firmware(t) + loader(t + 2) + ipxe_dhcp(t + 3) + script(t + 4) + kernel(t + 5)
            + initrd(t + 8) + os_dhcp(t + 20) + installer(t + 25) + done(t + 900))


def state(events, now, profile=PROFILE, host=HOST, expected=None):
    return boot_state(MAC, events, now, expected, host, profile)


# -- every stage -------------------------------------------------------------------------------
STAGE_PREFIXES = {
    "dhcp": 1, "offered": 2, "bound": 3, "loader": 5, "script": 9, "kernel": 10,
    "initrd": 11, "os_dhcp": 13, "installer": 14, "installed": 15,
}


@pytest.mark.parametrize("stage", list(STAGE_PREFIXES))
def test_each_install_stage_is_reached_in_order(stage):
    events = install_boot()[:STAGE_PREFIXES[stage]]
    got = state(events, now=events[-1].ts + 1)
    assert got.stage == stage
    assert got.state == ("finished" if stage == "installed" else "progressing")
    reached = [s.stage for s in got.attempt.stages]
    assert reached == [s for s in STAGES if STAGES.index(s) <= STAGES.index(stage)
                       and s in STAGE_PREFIXES]


def test_durations_of_each_stage_and_since():
    events = install_boot(1000.0)
    got = state(events, now=2000.0)
    times = {s.stage: s.seconds for s in got.attempt.stages}
    assert times["dhcp"] == 0 and times["offered"] == 1 and times["bound"] == 1
    assert times["loader"] == 2 and times["script"] == 1 and times["kernel"] == 3
    assert times["installer"] == 875 and times["installed"] == 100
    assert got.since == 1900.0 and got.attempt.outcome == "install"


def test_local_boot_stage_finishes():
    events = dhcp_firmware(10) + loader(12) + ipxe_dhcp(13) + script(14, outcome="local")
    got = state(events, now=5000)
    assert (got.stage, got.state) == ("local", "finished")


NO_BOOTED = Expected(booted=False)


def booted(t):
    return [ev(t, "http.booted", ip=IP, via="lease")]


def live_boot(t=1.0):
    return (dhcp_firmware(t) + script(t + 3, outcome="live")
            + [ev(t + 4, "http.file", path="/images/live/vmlinuz", status=200),
               ev(t + 5, "http.file", path="/images/live/initrd.img", status=200)]
            + os_dhcp(t + 19)
            + [ev(t + 24, "http.file", path="/images/live/root.squashfs", status=200)])


def test_live_root_then_up_finishes():
    events = live_boot(1.0)
    got = state(events, now=30, profile=LIVE)
    assert (got.stage, got.state) == ("root", "progressing")
    got = state(events + booted(28), now=30, profile=LIVE)
    assert (got.stage, got.state) == ("up", "finished")
    assert [s.stage for s in got.attempt.stages][-2:] == ["root", "up"]
    assert state(events[:-1], now=30, profile=LIVE).state == "progressing"


def test_live_root_finishes_without_the_booted_url_when_not_expected():
    events = live_boot(1.0)
    got = state(events, now=30, profile=LIVE, expected=NO_BOOTED)
    assert (got.stage, got.state) == ("root", "finished")


def test_netroot_finishes_when_the_os_says_it_is_up():
    events = dhcp_firmware(1) + script(4, outcome="netroot") + kernel(5) + initrd(6) + os_dhcp(9)
    assert state(events, now=10).state == "progressing"
    got = state(events + aoe_attach(10) + booted(15), now=16)
    assert (got.stage, got.state) == ("up", "finished")
    got = state(events, now=10, expected=NO_BOOTED)
    assert (got.stage, got.state) == ("os_dhcp", "finished")


def test_sanboot_stages_attach_then_up():
    events = dhcp_firmware(1) + script(4, outcome="sanboot") + aoe_attach(5) + os_dhcp(30)
    got = state(events, now=31, profile=SAN)
    assert (got.stage, got.state) == ("root", "progressing")
    assert [s.stage for s in got.attempt.stages] == ["dhcp", "offered", "bound", "script",
                                                     "root", "os_dhcp"]
    got = state(events + booted(40), now=41, profile=SAN)
    assert (got.stage, got.state) == ("up", "finished")


def test_pxelinux_over_tftp_stages():
    events = (dhcp_firmware(1)[:1] + [
        ev(1, "dhcp.offer", ip=IP, boot_file="pxelinux.0", boot_reason="bios"),
        ev(2, "dhcp.ack", ip=IP, boot_file="pxelinux.0", boot_reason="bios"),
        ev(3, "tftp.transfer", file="pxelinux.0", result="ok"),
        ev(4, "tftp.transfer", file="pxelinux.cfg/01-52-54-00-12-34-56", result="not_found"),
        ev(4, "tftp.transfer", file="pxelinux.cfg/default", result="ok"),
        ev(5, "tftp.transfer", file="debian/vmlinuz", result="ok"),
        ev(6, "tftp.transfer", file="debian/initrd.gz", result="ok")])
    got = state(events, now=7)
    assert [s.stage for s in got.attempt.stages] == ["dhcp", "offered", "bound", "loader",
                                                     "script", "kernel", "initrd"]
    assert got.state == "progressing"


def test_no_events_is_idle():
    assert state([], now=1).state == "idle"


# -- every stuck reason ------------------------------------------------------------------------
def stuck(events, now, **kw):
    got = state(events, now, **kw)
    assert got.state == "stuck", got
    return got


def test_dhcp_ignored_host_disabled():
    events = [ev(1, "dhcp.discover", arch="0"),
              ev(1, "dhcp.ignored", reason="host_disabled", detail="host is disabled")]
    got = stuck(events, now=100)
    assert got.reason_code == "dhcp_ignored" and got.stage == "dhcp"
    assert "host_disabled" in got.reason and "--enabled true" in got.reason


def test_dhcp_unanswered():
    got = stuck([ev(1, "dhcp.discover", arch="7")], now=100)
    assert got.reason_code == "dhcp_unanswered" and "not answered" in got.reason


def test_dhcp_refused():
    events = dhcp_firmware(1)[:2] + [ev(2, "dhcp.nak", ip="10.9.9.9", reason="not in pool")]
    got = stuck(events, now=100)
    assert got.reason_code == "dhcp_refused" and "not in pool" in got.reason


def test_offered_twice_never_requested():
    offer = dhcp_firmware(1)[1]
    events = [ev(1, "dhcp.discover", arch="7"), offer, ev(5, "dhcp.discover", arch="7"),
              dataclasses.replace(offer, ts=5.0)]
    got = stuck(events, now=100)
    assert got.reason_code == "offer_not_requested"
    assert got.reason.startswith(f"offered {IP} twice, never requested")
    assert "another DHCP server" in got.reason


def test_offer_progress_in_time_is_not_stuck():
    events = dhcp_firmware(1)[:2]
    assert state(events, now=20).state == "progressing"


def test_tftp_not_found():
    events = dhcp_firmware(1) + [
        ev(3, "tftp.transfer", file="undionly.kpxe", result="not_found",
           detail="no such file")]
    got = stuck(events, now=100)
    assert got.reason_code == "tftp_not_found"
    assert got.reason.startswith("asked TFTP for undionly.kpxe: not found")


def test_tftp_failed_other_result():
    events = dhcp_firmware(1) + [
        ev(3, "tftp.transfer", file="undionly.kpxe", result="timeout", detail="no ACK")]
    got = stuck(events, now=100)
    assert got.reason_code == "tftp_failed" and "timeout (no ACK)" in got.reason


def test_tsize_probe_is_benign():
    events = dhcp_firmware(1) + [ev(3, "tftp.transfer", file="undionly.kpxe",
                                    result="tsize_probe")]
    got = stuck(events, now=100)
    assert got.reason_code == "boot_file_not_fetched"
    assert "tsize" not in got.reason and "failed" not in got.reason
    assert state(events + loader(4)[1:], now=10).state == "progressing"


def test_uefi_http_client_offered_a_tftp_path():
    events = [ev(1, "dhcp.discover", arch="16"),
              ev(1, "dhcp.offer", ip=IP, boot_file="ipxe.efi", boot_reason="uefi-x64"),
              ev(2, "dhcp.ack", ip=IP, boot_file="ipxe.efi", boot_reason="uefi-x64")]
    got = stuck(events, now=100)
    assert got.reason_code == "http_client_tftp_path"
    assert got.reason.startswith("UEFI HTTP client was offered a TFTP path 'ipxe.efi'")


def test_no_boot_file():
    events = [ev(1, "dhcp.offer", ip=IP), ev(2, "dhcp.ack", ip=IP)]
    assert stuck(events, now=100).reason_code == "no_boot_file"


def test_boot_file_never_fetched():
    got = stuck(dhcp_firmware(1), now=100)
    assert got.reason_code == "boot_file_not_fetched" and "undionly.kpxe" in got.reason


def test_loader_never_asked_for_its_script():
    got = stuck(dhcp_firmware(1) + loader(3), now=200)
    assert (got.stage, got.reason_code) == ("loader", "script_not_fetched")


def test_script_error_outcome_is_stuck_at_once():
    events = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(
        5, outcome="error", reason="profile debian has no kernel")
    got = stuck(events, now=6)
    assert got.reason_code == "script_error" and "has no kernel" in got.reason


def test_render_error():
    events = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5) + [
        ev(5, "http.render_error", template="cmdline", reason="undefined variable 'disk'")]
    got = stuck(events, now=200)
    assert got.reason_code == "script_error" and "undefined variable" in got.reason


def test_kernel_never_fetched():
    got = stuck(dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5), now=200)
    assert got.reason_code == "kernel_not_fetched" and "vmlinuz" in got.reason


def test_kernel_fetched_never_asked_for_the_initrd():
    events = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5) + kernel(6)
    got = stuck(events, now=300)
    assert got.reason_code == "initrd_not_fetched"
    assert got.reason.startswith("fetched the kernel, never asked for the initrd initrd.gz")


def test_kernel_fetched_no_dhcp_from_the_os():
    events = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5) + kernel(6) + initrd(7)
    got = stuck(events, now=400, expected=Expected(initrd=90))
    assert got.reason_code == "no_os_dhcp"
    assert got.reason.startswith("kernel fetched, no DHCP from the OS within 6 min")


def test_install_file_refused_token_and_address():
    base = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5) + kernel(6) + initrd(7) \
        + os_dhcp(20)
    for why, words in (("bad_token", "wrong token"), ("address", f"address {IP}")):
        events = base + [ev(25, "http.denied", ip=IP, path=f"/install/{MAC}/preseed.cfg",
                            reason=why, file="preseed.cfg")]
        got = stuck(events, now=2000)
        assert got.reason_code == "install_file_refused"
        assert got.reason.startswith(f"install file preseed.cfg refused: {words}")


def test_install_file_never_fetched():
    events = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5) + kernel(6) + initrd(7) \
        + os_dhcp(20)
    assert stuck(events, now=2000).reason_code == "install_file_not_fetched"


def test_live_root_never_fetched():
    events = (dhcp_firmware(1) + script(4, outcome="live")
              + [ev(5, "http.file", path="/images/live/vmlinuz"),
                 ev(6, "http.file", path="/images/live/initrd.img")] + os_dhcp(20))
    got = stuck(events, now=2000, profile=LIVE)
    assert got.reason_code == "root_not_fetched" and "root.squashfs" in got.reason


def test_installing_for_two_hours_without_install_done():
    events = install_boot(1000.0)[:-1]
    got = stuck(events, now=1025 + 2 * 3600 + 60)
    assert got.reason_code == "install_timeout"
    assert got.reason.startswith("installing for 2 h 1 min, no install-done")


# -- block devices and up ----------------------------------------------------------------------
def netroot_to_os_dhcp(t=1):
    return (dhcp_firmware(t) + script(t + 3, outcome="netroot") + kernel(t + 4) + initrd(t + 5)
            + os_dhcp(t + 8))


@pytest.mark.parametrize("why, words", [
    ("chap", "iSCSI login refused: CHAP"),
    ("not_allowed", "iSCSI login refused: initiator iqn.2026-11.org.bootyard:web1 is not "
                    "allowed"),
    ("unknown_target", "iSCSI login refused: unknown target iqn.2026-11.org.example:nope"),
])
def test_iscsi_login_refused(why, words):
    failed = ev(12, "blockexport.iscsi_login_failed", export="web1-root", reason=why,
                initiator="iqn.2026-11.org.bootyard:web1", address=IP,
                target="iqn.2026-11.org.example:nope")
    got = stuck(netroot_to_os_dhcp() + [failed], now=2000)
    assert got.reason_code == "iscsi_login_refused" and got.stage == "os_dhcp"
    assert got.reason.startswith(words), got.reason
    # a later login that worked: no longer the reason
    got = state(netroot_to_os_dhcp() + [failed] + iscsi_login(13), now=20)
    assert (got.stage, got.state) == ("root", "progressing")


def test_sanboot_iscsi_login_refused_at_the_script():
    failed = ev(6, "blockexport.iscsi_login_failed", export="web1-root", reason="chap",
                initiator="iqn.x:y", address=IP)
    events = dhcp_firmware(1) + script(4, outcome="sanboot") + [failed]
    got = stuck(events, now=200, profile=SAN)
    assert (got.stage, got.reason_code) == ("script", "iscsi_login_refused")
    assert got.reason.startswith("iSCSI login refused: CHAP")


def test_aoe_export_attached_never_read():
    events = netroot_to_os_dhcp() + aoe_attach(10, read=False)
    got = stuck(events, now=2000)
    assert (got.stage, got.reason_code) == ("root", "export_not_read")
    assert got.reason.startswith("AoE export web1-root (e1.1) attached, never read")
    assert "driver not loaded? wrong shelf.slot" in got.reason


def test_netroot_export_never_attached():
    got = stuck(netroot_to_os_dhcp(), now=2000)
    assert (got.stage, got.reason_code) == ("os_dhcp", "export_not_attached")
    assert "the initramfs never attached" in got.reason


def test_sanboot_export_never_attached():
    events = dhcp_firmware(1) + script(4, outcome="sanboot")
    got = stuck(events, now=200, profile=SAN)
    assert (got.stage, got.reason_code) == ("script", "export_not_attached")
    assert got.reason.startswith("iPXE's sanboot never attached web1-root")


def test_block_io_errors_then_recovered():
    error = ev(12, "blockexport.io_error", export="web1-root", op="write",
               reason="No space left on device")
    events = netroot_to_os_dhcp() + aoe_attach(10) + [error]
    got = stuck(events, now=2000)
    assert got.reason_code == "block_io_error"
    assert got.reason.startswith("block export web1-root: its writes fail (No space left")
    recovered = ev(13, "blockexport.io_recovered", export="web1-root")
    assert stuck(events + [recovered], now=2000).reason_code == "never_up"


def test_iscsi_session_lost():
    events = netroot_to_os_dhcp() + iscsi_login(10) + [
        ev(14, "blockexport.iscsi_reset", export="web1-root", reason="connection reset")]
    got = stuck(events, now=2000)
    assert (got.stage, got.reason_code) == ("root", "iscsi_session_lost")
    assert "reset: connection reset" in got.reason
    assert stuck(events + iscsi_login(20), now=2000).reason_code == "never_up"


def test_a_refused_booted_call_says_so():
    refused = ev(30, "http.denied", ip="10.9.9.9", path=f"/booted/{MAC}", reason="address",
                 file="booted")
    got = stuck(live_boot(1.0) + [refused], now=2000, profile=LIVE)
    assert got.reason_code == "install_file_refused"
    assert got.reason.startswith("its booted call refused: address 10.9.9.9 is not the host's")


def test_ibft_netroot_attached_by_ipxe_then_no_kernel():
    """iPXE logs in (sanhook) before it fetches the kernel: attached, but no kernel is not
    "never came up"."""
    events = dhcp_firmware(1) + script(4, outcome="netroot") + iscsi_login(5)
    got = stuck(events, now=2000)
    assert (got.stage, got.reason_code) == ("root", "kernel_not_fetched")


def test_kernel_started_never_came_up():
    got = stuck(netroot_to_os_dhcp() + aoe_attach(10), now=2000)
    assert (got.stage, got.reason_code) == ("root", "never_up")
    assert got.reason.startswith("kernel started (its root attached), never said it is up")
    got = stuck(live_boot(1.0), now=2000, profile=LIVE)
    assert (got.stage, got.reason_code) == ("root", "never_up")
    events = dhcp_firmware(1) + script(4, outcome="live") + kernel(5) + initrd(6) + os_dhcp(9)
    plain_live = Profile(name="l2", kernel="debian/vmlinuz", initrd=("debian/initrd.gz",))
    got = stuck(events, now=2000, profile=plain_live)
    assert (got.stage, got.reason_code) == ("os_dhcp", "never_up")
    assert "(the OS asked DHCP)" in got.reason


def test_every_reason_has_a_test():
    tested = {"export_not_attached", "export_not_read", "iscsi_login_refused",
              "iscsi_session_lost", "block_io_error", "never_up",
              "dhcp_ignored", "dhcp_unanswered", "dhcp_refused", "offer_not_requested",
              "no_boot_file", "http_client_tftp_path", "tftp_not_found", "tftp_failed",
              "boot_file_not_fetched", "script_not_fetched", "script_error",
              "kernel_not_fetched", "initrd_not_fetched", "no_os_dhcp", "install_file_refused",
              "install_file_not_fetched", "root_not_fetched", "install_timeout"}
    assert tested == set(REASONS)


# -- attempts ----------------------------------------------------------------------------------
def test_a_new_discover_after_a_finished_boot_is_a_new_attempt():
    first = install_boot(1000.0)
    second = dhcp_firmware(2000) + loader(2002) + ipxe_dhcp(2003) + script(2004, "local")
    found = attempts(MAC, first + second, now=2010, host=HOST, profile=PROFILE)
    assert [(a.number, a.state, a.stage) for a in found] == [
        (1, "finished", "installed"), (2, "finished", "local")]
    got = state(first + second, now=2010)
    assert got.attempt.number == 2 and len(got.attempts) == 2


def test_a_new_discover_after_a_stuck_boot_is_a_new_attempt():
    events = dhcp_firmware(1) + dhcp_firmware(200) + loader(202)
    found = attempts(MAC, events, now=203, host=HOST, profile=PROFILE)
    assert [(a.state, a.stage, a.reason_code) for a in found] == [
        ("stuck", "bound", "boot_file_not_fetched"), ("progressing", "loader", "")]


def test_ipxe_dhcp_and_os_dhcp_stay_in_the_attempt():
    got = state(install_boot(1000.0)[:13], now=1021)
    assert len(got.attempts) == 1 and got.stage == "os_dhcp"


def test_firmware_dhcp_after_the_kernel_is_a_reboot():
    events = dhcp_firmware(1) + loader(3) + ipxe_dhcp(4) + script(5) + kernel(6) \
        + dhcp_firmware(30)
    found = attempts(MAC, events, now=31, host=HOST, profile=PROFILE)
    assert [a.stage for a in found] == ["kernel", "bound"]


def test_events_out_of_order_are_read_by_time():
    events = install_boot(1000.0)[:9]
    got = state(list(reversed(events)), now=1005)
    assert got.stage == "script" and got.state == "progressing"


def test_the_doctors_probes_are_not_a_boot():
    probe = ([ev(100, "doctor.start")] + dhcp_firmware(101) + ipxe_dhcp(102) + script(103)
             + [ev(104, "doctor.end")])
    assert state(probe, now=1000).state == "idle"
    got = state(install_boot(10.0) + probe, now=1000)
    assert (got.state, got.stage, len(got.attempts)) == ("finished", "installed", 1)
    # a doctor that never said it ended covers DOCTOR_LIMIT seconds
    assert state(probe[:-1], now=1000).state == "idle"


def test_dhcp_retries_before_an_address_are_one_attempt():
    ignored = [ev(t, k, **f) for t in (1, 40, 80) for k, f in (
        ("dhcp.discover", {"arch": "0"}),
        ("dhcp.ignored", {"reason": "host_disabled"}))]
    got = state(ignored, now=100)
    assert (len(got.attempts), got.reason_code, got.since) == (1, "dhcp_ignored", 1.0)
    offer = dhcp_firmware(0)[1]
    offers = [dataclasses.replace(offer, ts=float(t)) for t in (1, 40, 80)]
    got = state(offers, now=100)
    assert len(got.attempts) == 1 and got.reason.startswith(f"offered {IP} 3 times")


def test_a_kernel_without_an_installer_finishes_when_its_os_asks_dhcp():
    plain = Profile(name="plain", kernel="vmlinuz", initrd=("initrd.img",), install="none")
    events = dhcp_firmware(1) + script(4) + [
        ev(5, "http.file", path="/images/vmlinuz"), ev(6, "http.file", path="/images/initrd.img")]
    assert state(events, now=7, profile=plain).state == "progressing"
    got = state(events + os_dhcp(20), now=2000, profile=plain)
    assert (got.state, got.stage) == ("finished", "os_dhcp")


def test_each_event_is_labelled_with_its_attempt():
    first = install_boot(1000.0)
    second = dhcp_firmware(2000) + script(2004, "local")
    probe = [ev(3000, "doctor.start"), *dhcp_firmware(3001), ev(3002, "doctor.end")]
    labelled = attempt_of_each(MAC, list(reversed(first + second + probe)), host=HOST,
                               profile=PROFILE)
    ids = [a for _e, a in labelled]
    assert ids[:len(first)] == [f"{MAC}@1000000"] * len(first)
    assert ids[len(first):len(first) + len(second)] == [f"{MAC}@2000000"] * len(second)
    assert ids[-len(probe):] == [None] * len(probe)
    found = attempts(MAC, first + second, now=2010, host=HOST, profile=PROFILE)
    assert [a.id for a in found] == [f"{MAC}@1000000", f"{MAC}@2000000"]
