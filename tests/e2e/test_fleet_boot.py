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
