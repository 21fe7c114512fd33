"""Enlistment in the QEMU lab (issue 20): a machine nobody registered network-boots (SeaBIOS +
iPXE, the lab's DHCP/TFTP/HTTP from bootyard's services), gets the discovery image, and is
recorded with its real (QEMU's) hardware: the virtio disk of an odd size, the NIC's MAC, the
SMBIOS serial and the memory the VM was given. It waits (``discovery.after: wait``); adopted with
``bootyard host adopt``, it learns so and reboots; started again, it boots its (live) profile to
the lab's marker."""

from __future__ import annotations

import json
import secrets
import shutil

import pytest

from lab.discovery_image import build
from lab.qemu import BIOS

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]

DISK_BYTES = 100 * 1024 * 1024 + 7 * 512  # 104861184: a size no default would give
SERIAL = "ENLIST-SN-" + secrets.token_hex(3).upper()
DISK_SERIAL = "ENLIST-D1"
DISCOVERY_TIMEOUT = 240.0  # TCG on two shared cores: 8 MB kernel, 3.6 MB initrd, 14 modules


@pytest.fixture(scope="session")
def discovery_image(tmp_path_factory, boot_assets):
    images = tmp_path_factory.mktemp("discovery-images")
    build(images, log=lambda *_: None)
    return images / "discovery"


def _vm(boot, mac: str, disk):
    vm = boot.vm(mac, BIOS)
    vm.extra_args = ["-drive", f"file={disk},format=raw,if=none,id=vd0",
                     "-device", f"virtio-blk-pci,drive=vd0,serial={DISK_SERIAL}",
                     "-smbios", f"type=1,serial={SERIAL}"]
    vm.on_line = boot.stack.console_watcher(mac)
    return vm


def test_an_unknown_machine_is_discovered_adopted_and_boots_its_profile(
        bootlab, discovery_image, tmp_path):
    boot = bootlab("bootyard")
    boot.plan.add_host("known1", kind="kernel")  # someone else is known
    boot.plan.settings.update({
        "BOOTYARD_DISCOVERY__ENABLED": "true",
        "BOOTYARD_DISCOVERY__AFTER": "wait",
        "BOOTYARD_DISCOVERY__POLL_SECONDS": "2",
        "BOOTYARD_DISCOVERY__CMDLINE": "console=ttyS0 quiet panic=-1"})
    target = boot.plan.www_root / "images" / "discovery"
    shutil.copytree(discovery_image, target)
    boot.start()
    mac = boot.plan.unknown_mac(5)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)

    vm = _vm(boot, mac, disk)
    try:
        vm.start()
        reported = vm.wait_for(r"bootyard-discovery: reported", DISCOVERY_TIMEOUT)
        assert "action=wait" in reported.text, vm.tail()
        vm.wait_for(r"bootyard-discovery: waiting until it is adopted", 30)
        assert vm.find(r"/images/discovery/vmlinuz\.\.\..*ok"), "no discovery boot"

        shown = json.loads(boot.stack.cli("discovered", "show", mac, "--json"))
        hw = shown["fields"]["hw"]
        disks = {d["name"]: d for d in hw["disks"]}
        assert disks["vda"]["size_bytes"] == DISK_BYTES, hw
        assert disks["vda"]["serial"] == DISK_SERIAL
        nics = {n["mac"]: n for n in hw["nics"]}
        assert nics[mac]["link"] == "up" and nics[mac]["driver"] == "virtio_net"
        assert hw["dmi"]["serial"] == SERIAL and hw["dmi"]["vendor"] == "QEMU"
        assert hw["memory_bytes"] == vm.memory_mb * 1024 * 1024
        assert hw["firmware"] == "bios" and hw["cpus"] == 1 and hw["arch"] == "x86_64"
        listed = boot.stack.cli("discovered", "list")
        assert mac in listed and SERIAL in listed

        marker = f"enlisted-{secrets.token_hex(4)}"
        boot.stack.cli("profile", "add", "enlisted", "--kernel", "vmlinuz", "--initrd",
                       "initrd.img", "--root-image", "root.squashfs", "--live-style",
                       "rooturl", "--cmdline",
                       f"console=ttyS0 quiet panic=-1 bootyard.marker={marker}")
        out = boot.stack.cli("host", "adopt", mac, "--profile", "enlisted", "--hostname",
                             "enlisted1", "--boot-mode", "live")
        assert f"adopted {mac}" in out
        # the waiting machine asks every 2 s whether it has been adopted; now it has: it
        # reboots (QEMU runs with -no-reboot: the VM stops)
        vm.wait_for(r"bootyard-discovery: adopted: .*enlisted1", 60)
        vm.wait_for(r"bootyard-discovery: rebooting", 10)
        assert vm.wait_exit(60) is not None, "the discovery image did not reboot"
    finally:
        vm.stop()
    host = boot.stack.cli("host", "show", mac)
    assert f"disk      vda  {DISK_BYTES} bytes" in host and "enlisted1" in host

    vm = _vm(boot, mac, disk)  # power it on again: QEMU started anew, same MAC and disk
    try:
        vm.start()
        line = vm.wait_for(rf"BOOTYARD-MARKER {marker} stage=liveroot", 180)
    finally:
        vm.stop()
    assert "ip=" in line.text
    kinds = [e.kind for e in boot.events(mac)]
    for expected in ("http.discovery", "discovery.report", "discovery.adopted", "http.script",
                     "lab.marker"):
        assert expected in kinds, (expected, kinds)
    assert kinds.index("discovery.report") < kinds.index("discovery.adopted") < \
        len(kinds) - 1 - kinds[::-1].index("http.script")
