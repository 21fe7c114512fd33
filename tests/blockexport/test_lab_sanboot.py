"""iPXE ``sanboot`` over AoE end to end: SeaBIOS + iPXE ROM -> bootyard DHCP -> the host's iPXE
script from bootyard HTTP (``sanboot aoe:e<shelf>.<slot>`` for a host whose boot mode is
``sanboot``) -> iPXE reads the disk from the block export service through INT 13h and runs its
boot sector, which prints the marker. The host's timeline has the DHCP ack, the script and the
export's ``blockexport.attach`` and ``blockexport.first_read``, in that order."""

from __future__ import annotations

import pytest

from lab.assets import ensure_assets
from lab.disk import make_disk
from lab.qemu import BIOS
from lab.runner import BootLab

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]


def test_ipxe_sanboot_over_aoe(lab, tmp_path, blockexport_process):
    boot = BootLab(lab, tmp_path / "lab", stack="bootyard", assets=ensure_assets())
    try:
        host = boot.plan.add_host("san1", kind="kernel")
        boot.start()
        disk = make_disk(tmp_path / "san1.img", f"BOOTYARD-MARKER {host.marker} stage=sanboot",
                         size_mb=16)  # >= one 255x63 cylinder: iPXE INT 13h CHS
        boot.stack.cli("blockexport", "add", "san1-disk", "--kind", "aoe", "--backing",
                       str(disk), "--aoe-shelf", "3", "--aoe-slot", "7", "--cow", "yes")
        boot.stack.cli("profile", "set", "san1", "--export", "san1-disk")
        boot.stack.cli("host", "set", host.mac, "--boot-mode", "sanboot")
        service = blockexport_process(boot.server, boot.stack.redis_url, tmp_path / "be.log",
                                      overlay_root=str(tmp_path / "overlays"))
        result = boot.boot(host, BIOS, pattern=rf"BOOTYARD-MARKER {host.marker} stage=sanboot",
                           timeout=180)
        assert result.vm.find(r"Booting from SAN device")
        kinds = [e.kind for e in boot.events(host.mac)]
        order = ["dhcp.ack", "http.script", "blockexport.attach", "blockexport.first_read"]
        positions = [kinds.index(k) for k in order]
        assert positions == sorted(positions), kinds
        assert kinds.count("blockexport.first_read") == 1  # per host, never per I/O
        assert "event=attach export=san1-disk" in service.log()
    finally:
        boot.stop()
