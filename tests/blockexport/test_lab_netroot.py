"""``netroot`` over AoE end to end (seed 000's shape): diskless VMs get kernel and initramfs from
bootyard (DHCP, the host's iPXE script over HTTP with ``root=/dev/etherd/e<shelf>.<slot>``
rendered from the profile's export); the initramfs loads ``aoe``, finds the disk, mounts it as
root (ext2 made with ``mke2fs -d``, no loop devices) and switches to it; its ``/sbin/init``
prints the marker with what it finds in ``/written``, writes that file if it was absent, syncs
and powers off. The export is copy-on-write:

1. host A's first boot finds nothing and writes;
2. host A boots again (a new VM with the same MAC) and finds its own file;
3. host B, booting the same golden export, finds nothing;
4. the golden image is unchanged, and each host's overlay holds its own writes.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from lab import aoeguest
from lab.assets import ensure_assets
from lab.qemu import BIOS
from lab.runner import BootLab
from services.blockexport.storage_cow import CowDisk

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]
APPLETS = ("sh", "mount", "cat", "echo", "sleep", "poweroff", "sync", "[", "test")  # root image

INITRAMFS_INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /etc/aoe-functions
ROOT=$(cmdline_value root)
case "$ROOT" in /dev/etherd/*) ;; *) fail "no root=/dev/etherd/... on the command line" ;; esac
load_modules
wait_aoe "${ROOT#/dev/etherd/}"
echo "bootyard-lab: stage=netroot-disk $ROOT"
mkdir -p /newroot
mount -t ext2 "$ROOT" /newroot || fail "mount $ROOT"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
fail "switch_root"
"""

ROOT_INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
MARKER=none
for arg in $(cat /proc/cmdline); do
    case "$arg" in bootyard.marker=*) MARKER="${arg#*=}" ;; esac
done
mac=$(cat /sys/class/net/eth0/address 2>/dev/null || echo unknown)
found=none
[ -e /written ] && found=$(cat /written)
echo "BOOTYARD-MARKER $MARKER stage=netroot found=$found"
[ -e /written ] || { echo "by-$MARKER" > /written; sync; }
echo "bootyard-lab: stage=netroot-synced"
poweroff -f
sleep 60
"""


def build(tmp: Path) -> tuple[Path, Path]:
    """(initramfs with aoe and ext2, golden ext2 root image) from the lab's Debian kernel; an
    ext2/3/4 mount needs crc32c_generic, which modules.dep does not list."""
    _kernel, initrd = aoeguest.build(tmp / "guest", INITRAMFS_INIT, modules=(
        "virtio_pci", "virtio_net", "aoe", "crc32c_generic", "ext4"))
    busybox = aoeguest.busybox_path()
    root = tmp / "rootfs"
    for d in ("bin", "sbin", "dev", "proc", "sys"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin" / "busybox").write_bytes(busybox.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "sbin" / "init").write_text(ROOT_INIT)
    (root / "sbin" / "init").chmod(0o755)
    golden = tmp / "golden-root.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-d", str(root), str(golden), "16M"],
                   check=True, capture_output=True)
    return initrd, golden


def test_netroot_over_aoe_with_per_host_overlays(lab, tmp_path, blockexport_process):
    initrd, golden = build(tmp_path)
    golden_sum = hashlib.sha256(golden.read_bytes()).hexdigest()
    boot = BootLab(lab, tmp_path / "lab", stack="bootyard", assets=ensure_assets())
    try:
        a = boot.plan.add_host("nra", kind="kernel")
        b = boot.plan.add_host("nrb", kind="kernel")
        boot.start()
        (boot.plan.www_root / "images" / initrd.name).write_bytes(initrd.read_bytes())
        boot.stack.cli("blockexport", "add", "netroot", "--kind", "aoe", "--backing", str(golden),
                       "--cow", "yes", "--aoe-shelf", "0", "--aoe-slot", "1")
        for host in (a, b):
            boot.stack.cli("profile", "set", host.name, "--initrd", initrd.name,
                           "--export", "netroot", "--live-style", "rooturl")
            boot.stack.cli("host", "set", host.mac, "--boot-mode", "netroot")
        blockexport_process(boot.server, boot.stack.redis_url, tmp_path / "be.log",
                            overlay_root=str(tmp_path / "overlays"))

        def netboot(host) -> str:
            result = boot.boot(host, BIOS, timeout=240,
                               pattern=rf"BOOTYARD-MARKER {host.marker} stage=netroot")
            result.vm.wait_for(r"stage=netroot-synced", 30)
            return re.search(r"found=(\S+)", result.marker.text).group(1)

        assert netboot(a) == "none"
        assert netboot(a) == f"by-{a.marker}"  # its own write survived the reboot
        assert netboot(b) == "none"  # the same golden export, its own overlay
        kinds = [e.kind for e in boot.events(a.mac)]
        assert kinds.count("blockexport.attach") >= 1 and "blockexport.first_read" in kinds
    finally:
        boot.stop()
    assert hashlib.sha256(golden.read_bytes()).hexdigest() == golden_sum
    cow = CowDisk(str(golden), str(tmp_path / "overlays"), "netroot")
    try:
        overlays = {o.mac: o for o in cow.overlays()}
        assert set(overlays) == {a.mac, b.mac}
    finally:
        cow.close()
