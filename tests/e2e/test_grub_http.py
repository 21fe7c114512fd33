"""GRUB over UEFI HTTP boot, as `make tftp-root` builds it (scripts/grub-http-image.sh): OVMF
loads ``/images/grubx64-http.efi`` over HTTP (DHCP names it through the host's
``var.http_boot_file``), its one-line built-in configuration hands over to the host's
``/boot/grub.cfg?mac=...``, and GRUB boots the kernel and initrd from bootyard's HTTP."""

from __future__ import annotations

import subprocess

import pytest

from lab import assets
from lab.qemu import UEFI_HTTP

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]
GRUB_TIMEOUT = 300.0  # GRUB 2.06 over HTTP under TCG: 4-22 s of transfers, OVMF's POST first


def test_grub_http_image_hands_over_to_the_hosts_config(bootlab):
    boot = bootlab("bootyard")
    host = boot.plan.add_host("grubhttp1", kind="kernel")
    boot.start()
    image = boot.plan.www_root / "images" / "grubx64-http.efi"
    subprocess.run(["bash", str(assets.REPO / "scripts" / "grub-http-image.sh"), str(image)],
                   check=True, capture_output=True, timeout=120)
    boot.stack.cli("host", "set", host.mac, "--var", "http_boot_file=/images/grubx64-http.efi")
    result = boot.boot(host, UEFI_HTTP, timeout=GRUB_TIMEOUT)
    vm = boot.vms[0]
    assert vm.find(r"URI: http://.*/images/grubx64-http\.efi")
    assert f"ip={host.ip}" in result.marker.text
    grub = [e.fields.get("script") for e in boot.events(host.mac) if e.kind == "http.script"]
    assert grub == ["grub"], grub  # the host's own config, by MAC
    files = [e.fields["path"] for e in boot.events(host.mac) if e.kind == "http.file"]
    assert files[:3] == ["/images/grubx64-http.efi", "/images/vmlinuz", "/images/initrd.img"], \
        files
