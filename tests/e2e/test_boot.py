"""End-to-end boots of real firmware under QEMU (TCG) from the lab's stack (issue 4's scenarios).

Each test passes only when the guest prints its success marker (a token made for this boot) on
the serial console and, with bootyard's services, when the host's event stream shows each stage
in order. The classic stack (dnsmasq + nginx) is the baseline the seeds describe; it runs the
scenarios whose files it can serve the same way. See docs/lab.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from harness.netlab import wait_for
from lab.qemu import BIOS, UEFI, UEFI_HTTP

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]

# Scenarios 1 and 5 run on both stacks (the boot-time baseline); the others on bootyard.
BOTH = ["classic", "bootyard"]
MAIN = ["bootyard"]


def kinds_in_order(boot, mac: str, expected: list[str]) -> list[str]:
    """Assert the host's events contain ``expected`` kinds in this order; return all kinds."""
    events = boot.events(mac)
    kinds = [e.kind for e in events]
    position = 0
    for kind in expected:
        try:
            position = kinds.index(kind, position) + 1
        except ValueError:
            raise AssertionError(f"no {kind} after {expected[:expected.index(kind)]} in the "
                                 f"events of {mac}: {kinds}") from None
    return kinds


def host_state(boot, mac: str) -> dict:
    """The host's boot state as ``bootyard host list --json`` computes it."""
    run = subprocess.run([sys.executable, "-m", "cli", "--redis-url", boot.stack.redis_url,
                          "host", "list", "--json"], capture_output=True, text=True, timeout=30,
                         check=True)
    return json.loads(run.stdout)[mac]["boot_state"]


def file_events(boot, mac: str) -> list[str]:
    return [e.fields.get("path", "") for e in boot.events(mac) if e.kind == "http.file"]


@pytest.mark.parametrize("stack", BOTH)
def test_1_bios_pxe_ipxe_http(bootlab, stack):
    """SeaBIOS + iPXE ROM -> DHCP -> iPXE script over HTTP -> kernel + initramfs -> marker."""
    boot = bootlab(stack)
    host = boot.plan.add_host("web1", kind="kernel")
    boot.start()
    result = boot.boot(host, BIOS)
    assert f"ip={host.ip}" in result.marker.text  # the reserved address, from the real DHCP
    assert boot.vms[0].find(r"vmlinuz\.\.\. ok") and boot.vms[0].find(r"initrd\.img\.\.\.")
    if stack == "bootyard":
        kinds_in_order(boot, host.mac, ["dhcp.ack", "http.script", "http.file", "http.file",
                                        "lab.guest_init", "dhcp.ack", "lab.marker"])
        assert any(p.endswith("vmlinuz") for p in file_events(boot, host.mac))


@pytest.mark.parametrize("stack", MAIN)
def test_2_tftp_only(bootlab, stack):
    """The same kind of host through TFTP only: PXELINUX (classic) or GRUB (bootyard) from TFTP
    with its per-host config, kernel and initramfs over TFTP."""
    boot = bootlab(stack)
    host = boot.plan.add_host("tftp1", kind="kernel", boot="pxelinux" if stack == "classic"
                              else "grub")
    boot.start()
    result = boot.boot(host, BIOS if stack == "classic" else UEFI)
    assert f"ip={host.ip}" in result.marker.text
    assert not boot.vms[0].find(r"http://.*vmlinuz")  # nothing came over HTTP
    if stack == "bootyard":
        kinds = kinds_in_order(boot, host.mac, ["dhcp.ack", "tftp.transfer", "tftp.transfer",
                                                "lab.guest_init", "lab.marker"])
        assert "http.file" not in kinds
        done = {e.fields.get("file", "").lstrip("/") for e in boot.events(host.mac)
                if e.kind == "tftp.transfer" and e.fields.get("result") == "ok"}
        per_host = "grub/grub.cfg-01-" + host.mac.replace(":", "-")  # rendered by the service
        assert {per_host, "images/vmlinuz", "images/initrd.img"} <= done, sorted(done)
        assert not (boot.plan.tftp_root / per_host).exists()  # no file: rendered on request


@pytest.mark.parametrize("stack", MAIN)
def test_3_uefi_pxe(bootlab, stack):
    """OVMF's own PXE (no iPXE ROM): DHCP hands out ipxe.efi by architecture -> kernel."""
    boot = bootlab(stack)
    host = boot.plan.add_host("uefi1", kind="kernel")
    boot.start()
    result = boot.boot(host, UEFI)
    vm = boot.vms[0]
    assert vm.find(r"Downloading NBP file|NBP filename is ipxe\.efi")
    assert f"ip={host.ip}" in result.marker.text
    if stack == "bootyard":
        kinds_in_order(boot, host.mac, ["dhcp.ack", "tftp.transfer", "dhcp.ack", "http.script",
                                        "http.file", "lab.marker"])
        # OVMF asks for the NBP's size first and ends that transfer with an ERROR
        transfers = [e.fields for e in boot.events(host.mac) if e.kind == "tftp.transfer"]
        assert [(t["file"], t["result"]) for t in transfers] == [
            ("ipxe.efi", "tsize_probe"), ("ipxe.efi", "ok")], transfers


@pytest.mark.parametrize("stack", MAIN)
def test_4_uefi_http_boot(bootlab, stack):
    """OVMF's UEFI HTTP boot (PXE switched off, pitfall 7): DHCP answers the HTTPClient vendor
    class with an http:// boot file -> ipxe.efi over HTTP -> script -> kernel."""
    boot = bootlab(stack)
    host = boot.plan.add_host("httpboot1", kind="kernel")
    boot.start()
    result = boot.boot(host, UEFI_HTTP)
    vm = boot.vms[0]
    assert vm.find(r"Start HTTP Boot over IPv4")
    assert vm.find(r"URI: http://.*/images/ipxe\.efi")
    assert f"ip={host.ip}" in result.marker.text
    if stack == "bootyard":
        kinds = kinds_in_order(boot, host.mac, ["dhcp.ack", "http.file", "http.script",
                                                "http.file", "lab.marker"])
        assert "tftp.transfer" not in kinds


@pytest.mark.parametrize("stack", BOTH)
def test_5_live_squashfs_root(bootlab, stack):
    """Diskless live root: the initramfs fetches a squashfs over HTTP, mounts it under an overlay
    with a tmpfs upper layer, switch_root; the new root prints the marker."""
    boot = bootlab(stack)
    host = boot.plan.add_host("live1", kind="live")
    boot.start()
    result = boot.boot(host, BIOS)
    vm = boot.vms[0]
    assert "stage=liveroot" in result.marker.text
    assert vm.find(r"stage=live-root fstype=overlay release=bootyard-lab-live-1")
    assert vm.find(r"stage=rootfs-fetched bytes=\d+")
    if stack == "bootyard":
        kinds_in_order(boot, host.mac, ["dhcp.ack", "http.script", "http.file",
                                        "lab.guest_init", "http.file", "lab.live_root",
                                        "lab.marker"])
        assert any(p.endswith("root.squashfs") for p in file_events(boot, host.mac))
        # the live root called its booted URL (bootyard.booted= on its command line): up
        assert vm.find(r"stage=booted-called")
        kinds_in_order(boot, host.mac, ["lab.live_root", "http.booted"])
        state = wait_for(lambda: (lambda s: s if s["state"] == "finished" else None)(
            host_state(boot, host.mac)), 30, what="the live host finished")
        assert state["stage"] == "up", state
        stages = [s["stage"] for s in state["attempt"]["stages"]]
        assert stages[-2:] == ["root", "up"] and "kernel" in stages, stages
        # every event of the boot carries the attempt id the DHCP service decided
        boot_events = [e for e in boot.events(host.mac) if e.kind.startswith(("dhcp.", "http."))]
        assert {e.attempt for e in boot_events} == {state["attempt"]["id"]}, [
            (e.kind, e.attempt) for e in boot_events]


@pytest.mark.parametrize("stack", MAIN)
def test_6_unknown_machine(bootlab, stack):
    """A MAC nobody registered gets a pool address and the default behaviour (bootyard: a
    discovery message, a discovery event, then exit to the next boot device)."""
    boot = bootlab(stack)
    boot.plan.add_host("known1", kind="kernel")  # someone else is known
    boot.start()
    mac = boot.plan.unknown_mac()
    boot.boot(mac, BIOS, pattern=r"not in the inventory")
    vm = boot.vms[0]
    address = vm.find(rf"net0: ({re.escape(boot.plan.prefix)}\.\d+)/")
    assert address, "iPXE got no address"
    last = int(re.search(r"\.(\d+)/", address.text).group(1))
    assert 100 <= last <= 199  # from the dynamic pool, not a reservation
    assert not vm.find(r"vmlinuz")
    if stack == "bootyard":
        kinds_in_order(boot, mac, ["dhcp.ack", "http.discovery", "http.discovery"])
        stages = [e.fields.get("stage") for e in boot.events(mac) if e.kind == "http.discovery"]
        assert stages == ["ipxe", "report"]  # the script fetch, then iPXE's report of itself
        report = [e for e in boot.events(mac) if e.kind == "http.discovery"][-1]
        assert report.fields.get("platform") == "pcbios"


@pytest.mark.parametrize("stack", MAIN)
def test_7_local_disk_host_exits_to_disk(bootlab, stack):
    """A host whose boot mode is local disk is sent to local boot (iPXE ``exit``): SeaBIOS
    boots the next device, the disk, whose boot sector prints the marker."""
    boot = bootlab(stack)
    host = boot.plan.add_host("db1", kind="local")
    boot.start()
    result = boot.boot(host, BIOS)
    vm = boot.vms[0]
    assert "stage=local-disk" in result.marker.text
    assert not vm.find(r"vmlinuz")  # not reinstalled
    if stack == "bootyard":
        kinds = kinds_in_order(boot, host.mac, ["dhcp.ack", "http.script"])
        assert "http.file" not in kinds
        script = [e for e in boot.events(host.mac) if e.kind == "http.script"][-1]
        assert "local" in " ".join(script.fields.values())
