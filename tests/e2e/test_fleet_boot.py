"""A one-shot (rescue) boot and a group's kernel arguments, end to end: SeaBIOS + iPXE under
QEMU (TCG) against bootyard's services (docs/fleet.md). A local-disk host is told to boot a
kernel profile once; the group matching its MAC adds a kernel argument after the profile's
command line (the marker the guest prints, so it proves the argument reached the kernel, last);
the HTTP service clears the one-shot once it served that script, and the next boot is the local
disk again."""

from __future__ import annotations

import secrets

import pytest

from harness.netlab import wait_for
from lab.qemu import BIOS

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]


def test_rescue_once_with_group_kernel_args_then_local_disk(bootlab):
    boot = bootlab("bootyard")
    rescue = boot.plan.add_host("rescue", kind="kernel")  # its profile is the one-shot's
    db = boot.plan.add_host("db1", kind="local")
    boot.start()
    token = f"fleet-{secrets.token_hex(4)}"
    boot.stack.cli("group", "add", "db", "--match", f"mac={db.mac}",
                   "--kernel-args", f"bootyard.marker={token}")
    boot.stack.cli("host", "rescue", db.mac, "--profile", rescue.name, "--mode", "install")

    result = boot.boot(db, BIOS, pattern=rf"BOOTYARD-MARKER {token} ")
    assert f"ip={db.ip}" in result.marker.text
    client = boot.stack._sync_client()
    wait_for(lambda: client.hget(f"bootyard:host:{db.mac}", "once_profile") is None, 20,
             what="the one-shot cleared once its script was served")
    kinds = [e.kind for e in boot.events(db.mac)]
    assert "http.once_served" in kinds

    result = boot.boot(db, BIOS)  # its own marker, from its local disk
    assert "stage=local-disk" in result.marker.text


def test_unknown_machine_menu_times_out_to_its_local_disk(bootlab, tmp_path):
    """``http.unknown_host: menu`` with real iPXE: the menu (the local disk, a profile with
    ``menu: yes``) waits ``unknown_delay`` seconds and takes its default, the local disk
    (discovery is off): ``sanboot --no-describe --drive 0x80`` boots the disk's boot sector."""
    from lab.disk import make_disk

    boot = bootlab("bootyard")
    boot.plan.add_host("known1", kind="kernel")
    boot.plan.settings.update({"BOOTYARD_HTTP__UNKNOWN_HOST": "menu",
                               "BOOTYARD_HTTP__UNKNOWN_DELAY": "2"})
    boot.start()
    boot.stack.cli("profile", "set", "known1", "--menu", "yes")
    mac = boot.plan.unknown_mac()
    token = f"menu-{secrets.token_hex(4)}"
    disk = make_disk(tmp_path / "unknown-disk.img", f"BOOTYARD-MARKER {token} stage=local-disk")
    result = boot.boot(mac, BIOS, pattern=rf"BOOTYARD-MARKER {token} ", disk=disk)
    vm = boot.vms[0]
    assert vm.find(r"Boot from the local disk") and vm.find(r"known1: lab profile of known1")
    assert "stage=local-disk" in result.marker.text
    assert not vm.find(r"vmlinuz")
