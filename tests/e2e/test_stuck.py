"""Boots made to fail on purpose under QEMU, each at its own stage, shown stuck with the right
reason by ``bootyard host list --state stuck`` (the boot state of docs/console.md, computed from
the events the real services wrote), and a healthy boot shown finished. The CLI runs with short
expected times per stage (the ``bootstate`` settings) so a stuck boot is told in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.netlab import wait_for
from lab.qemu import BIOS, UEFI

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]
SHORT = {f"BOOTYARD_BOOTSTATE__{stage.upper()}": "4"
         for stage in ("dhcp", "offered", "bound", "loader", "script", "kernel", "initrd",
                       "os_dhcp")}


def states(boot, state: str | None = None) -> dict:
    env = {**os.environ, **SHORT}
    argv = [sys.executable, "-m", "cli", "--redis-url", boot.stack.redis_url, "host", "list",
            "--json"] + (["--state", state] if state else [])
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=True)
    return {mac: host["boot_state"] for mac, host in json.loads(run.stdout).items()}


@pytest.mark.parametrize("fault, firmware, stage, reason", [
    ("dhcp", BIOS, "dhcp", "dhcp_ignored"),  # the host disabled
    ("tftp", UEFI, "bound", "tftp_not_found"),  # its loader missing from the TFTP root
    ("http", BIOS, "kernel", "tftp_not_found"),  # its initrd missing from the images: a 404
    # its installer fetches the install file from an address that is not the host's
    ("install", BIOS, "os_dhcp", "install_file_refused"),
])
def test_a_boot_made_to_fail_is_shown_stuck_with_its_reason(bootlab, fault, firmware, stage,
                                                            reason):
    boot = bootlab("bootyard")
    host = boot.plan.add_host(f"{fault}1", kind="kernel")
    boot.start()
    if fault == "dhcp":
        # (the services hear of it by keyspace notification, long before the VM's firmware
        # sends its first DISCOVER)
        boot.stack._sync_client().hset(f"bootyard:host:{host.mac}", "enabled", "no")
    elif fault == "tftp":
        (boot.plan.tftp_root / "ipxe.efi").unlink()
    elif fault == "install":
        own = boot.plan.network.rsplit(".", 1)[0] + ".199/24"  # outside the pool, no lease
        boot.stack._sync_client().hset(f"bootyard:profile:{host.name}", mapping={
            "install": "kickstart",
            "cmdline": f"{host.cmdline} inst.ks={boot.plan.http_base}/install/{host.mac}/ks.cfg "
                       f"bootyard.lab_ip={own}"})
    else:
        (boot.plan.www_root / "images" / "initrd.img").unlink()
    vm = boot.vm(host.mac, firmware)
    vm.on_line = boot.stack.console_watcher(host.mac)
    try:
        vm.start()
        seen: list = []

        def stuck_for_its_reason():
            # (a boot stuck past a stage's time may first say the generic reason, then the
            # event that tells why arrives: the firmware's TFTP request after the ACK)
            got = states(boot, "stuck").get(host.mac)
            seen[:] = [got]
            return got if got and got["reason_code"] == reason else None
        try:
            found = wait_for(stuck_for_its_reason, 60, what=f"{host.mac} stuck with {reason}")
        except TimeoutError:
            timeline = [(round(e.ts, 1), e.kind, e.fields.get("file") or e.fields.get("arch"),
                         e.fields.get("result")) for e in boot.events(host.mac)]
            now = states(boot).get(host.mac) or {}
            raise AssertionError(f"last seen: {seen}; now: {now.get('state')} "
                                 f"{now.get('stage')} {now.get('reason_code')}; "
                                 f"events: {timeline}") from None
    finally:
        vm.stop()
    assert found["stage"] == stage, found
    assert found["reason"]


def test_a_healthy_boot_is_shown_finished(bootlab):
    boot = bootlab("bootyard")
    host = boot.plan.add_host("ok1", kind="kernel")
    boot.start()
    boot.boot(host, BIOS)
    found = wait_for(lambda: states(boot).get(host.mac, {}).get("state") == "finished"
                     and states(boot)[host.mac], 30, what="finished")
    assert found["stage"] == "os_dhcp", found
    stages = [s["stage"] for s in found["attempt"]["stages"]]
    assert stages[:3] == ["dhcp", "offered", "bound"] and "kernel" in stages and \
        "initrd" in stages, stages
