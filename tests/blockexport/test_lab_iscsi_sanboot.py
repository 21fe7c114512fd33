"""iPXE ``sanboot`` over iSCSI end to end: SeaBIOS + iPXE ROM -> bootyard DHCP -> the host's iPXE
script from bootyard HTTP (``set initiator-iqn`` + ``sanboot iscsi:<server>:::0:<iqn>`` for a
host whose boot mode is ``sanboot``) -> iPXE logs in to the block export service's iSCSI target
with its fixed key set, reads the disk through INT 13h and runs its boot sector, which prints the
marker. The session belongs to the host (its rendered initiator name, from its reserved
address): its events are on the host's timeline and its writes would go to its own overlay."""

from __future__ import annotations

import subprocess

import pytest

from lab.assets import ensure_assets
from lab.disk import make_disk
from lab.qemu import BIOS, UEFI
from lab.runner import BootLab

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]


def test_ipxe_sanboot_over_iscsi(lab, tmp_path, blockexport_process):
    boot = BootLab(lab, tmp_path / "lab", stack="bootyard", assets=ensure_assets())
    try:
        host = boot.plan.add_host("isan1", kind="kernel")
        boot.start()
        disk = make_disk(tmp_path / "isan1.img", f"BOOTYARD-MARKER {host.marker} stage=sanboot",
                         size_mb=16)  # >= one 255x63 cylinder: iPXE INT 13h CHS
        boot.stack.cli("blockexport", "add", "isan1-disk", "--kind", "iscsi", "--backing",
                       str(disk), "--iqn", "iqn.2026-11.org.example:isan1", "--cow", "yes",
                       "--unmatched", "refuse")
        boot.stack.cli("profile", "set", "isan1", "--export", "isan1-disk")
        boot.stack.cli("host", "set", host.mac, "--boot-mode", "sanboot")
        service = blockexport_process(boot.server, boot.stack.redis_url, tmp_path / "be.log",
                                      overlay_root=str(tmp_path / "overlays"))
        result = boot.boot(host, BIOS, pattern=rf"BOOTYARD-MARKER {host.marker} stage=sanboot",
                           timeout=240)
        assert result.vm.find(r"Booting from SAN device")
        kinds = [e.kind for e in boot.events(host.mac)]
        order = ["dhcp.ack", "http.script", "blockexport.iscsi_login", "blockexport.attach",
                 "blockexport.first_read"]
        positions = [kinds.index(k) for k in order]
        assert positions == sorted(positions), kinds
        assert kinds.count("blockexport.first_read") == 1  # per session, never per I/O
        log = service.log()
        assert "event=iscsi_login export=isan1-disk initiator=iqn.2026-11.org.bootyard:isan1" \
            in log
        assert f"mac={host.mac}" in log and "host=matched" in log
        assert "iscsi_login_failed" not in log
    finally:
        boot.stop()


def uefi_disk(path, tmp, message: str) -> None:
    """A disk whose FAT file system holds \\EFI\\BOOT\\BOOTX64.EFI: a GRUB EFI image whose
    embedded configuration prints ``message`` (iPXE's EFI sanboot boots that file)."""
    cfg = tmp / "embed.cfg"
    cfg.write_text(f'echo "{message}"\nsleep 600\n')
    efi = tmp / "BOOTX64.EFI"
    subprocess.run(["grub-mkimage", "-O", "x86_64-efi", "-d", "/usr/lib/grub/x86_64-efi",
                    "-o", str(efi), "-p", "/EFI/BOOT", "-c", str(cfg), "echo", "sleep"],
                   check=True, capture_output=True, timeout=60)
    with path.open("wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.fat", "-F", "16", str(path)], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(path), "::/EFI", "::/EFI/BOOT"], check=True,
                   capture_output=True)
    subprocess.run(["mcopy", "-i", str(path), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], check=True,
                   capture_output=True)


def test_ipxe_efi_sanboot_over_iscsi(lab, tmp_path, blockexport_process):
    """OVMF's PXE -> ipxe.efi -> the same script's ``sanboot iscsi:...``: iPXE's EFI SAN boot
    finds the disk's EFI system files and runs \\EFI\\BOOT\\BOOTX64.EFI, which prints the
    marker."""
    boot = BootLab(lab, tmp_path / "lab", stack="bootyard", assets=ensure_assets())
    try:
        host = boot.plan.add_host("iefi1", kind="kernel")
        boot.start()
        disk = tmp_path / "iefi1.img"
        uefi_disk(disk, tmp_path, f"BOOTYARD-MARKER {host.marker} stage=sanboot-uefi")
        boot.stack.cli("blockexport", "add", "iefi1-disk", "--kind", "iscsi", "--backing",
                       str(disk), "--iqn", "iqn.2026-11.org.example:iefi1", "--readonly", "yes")
        boot.stack.cli("profile", "set", "iefi1", "--export", "iefi1-disk")
        boot.stack.cli("host", "set", host.mac, "--boot-mode", "sanboot")
        service = blockexport_process(boot.server, boot.stack.redis_url, tmp_path / "be.log",
                                      overlay_root=str(tmp_path / "overlays"))
        boot.boot(host, UEFI, pattern=rf"BOOTYARD-MARKER {host.marker} stage=sanboot-uefi",
                  timeout=300)
        log = service.log()
        assert "event=iscsi_login export=iefi1-disk initiator=iqn.2026-11.org.bootyard:iefi1" \
            in log and f"mac={host.mac}" in log
        kinds = [e.kind for e in boot.events(host.mac)]
        assert "blockexport.iscsi_login" in kinds and "blockexport.first_read" in kinds
    finally:
        boot.stop()
