"""``netroot`` over iSCSI end to end: diskless VMs get kernel and initramfs from bootyard (DHCP,
the host's iPXE script over HTTP), the initramfs logs in to the block export service's iSCSI
target with Linux's ``iscsi_tcp`` and open-iscsi's ``iscsistart``, mounts the disk as root and
switches to it; its ``/sbin/init`` prints the marker with what it finds in ``/written``, writes
that file if it was absent, syncs and powers off.

- dracut style (the default): the command line bootyard renders carries
  ``netroot=iscsi:<server>:::<lun>:<iqn> rd.iscsi.initiator=<host's name> ip=dhcp``; the
  initramfs takes an address with udhcpc and logs in with exactly those values. The export is
  copy-on-write: host A's first boot finds nothing and writes, its second boot finds its own
  file, host B (same golden export) finds nothing; each host's overlay holds its own writes and
  the golden image is unchanged.
- iBFT (``var.iscsi=ibft``): iPXE logs in itself first (``set initiator-iqn``, ``sanhook``) and
  publishes the iBFT; the kernel's ``iscsi_ibft`` shows it, ``iscsistart -N`` brings the network
  up from it and ``iscsistart -b`` logs in with its initiator name and target (host C).
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
MODULES = ("virtio_pci", "virtio_net", "crc32c_generic", "iscsi_tcp", "iscsi_ibft", "sd_mod",
           "ext4")

INITRAMFS_INIT = r"""#!/bin/sh
export PATH=/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /var/lock /tmp
. /etc/aoe-functions
NETROOT=$(cmdline_value netroot)
load_modules
ip link set lo up
ip link set eth0 up
case "$NETROOT" in
    iscsi:ibft)
        [ -d /sys/firmware/ibft/target0 ] || fail "no iBFT (sys/firmware/ibft)"
        ibft=/sys/firmware/ibft
        echo "bootyard-lab: ibft initiator=$(cat $ibft/initiator/initiator-name)" \
             "target=$(cat $ibft/target0/target-name)"
        iscsistart -N || fail "iscsistart -N (network from the iBFT)"
        iscsistart -b || fail "iscsistart -b" ;;
    iscsi:*)
        busybox chmod 755 /etc/udhcpc.script
        busybox udhcpc -i eth0 -n -q -t 10 -s /etc/udhcpc.script || fail "udhcpc"
        echo "bootyard-lab: address $(ip -4 -o addr show dev eth0 | busybox awk '{print $4}')"
        rest=${NETROOT#iscsi:}
        server=${rest%%:*}
        iqn=$(echo "$rest" | cut -d: -f5-)
        initiator=$(cmdline_value rd.iscsi.initiator)
        echo "bootyard-lab: netroot server=$server iqn=$iqn initiator=$initiator"
        iscsistart -i "$initiator" -t "$iqn" -g 1 -a "$server" -p 3260 || fail "iscsistart" ;;
    *) fail "no netroot=iscsi:... on the command line" ;;
esac
n=0
while [ ! -b /dev/sda ]; do
    n=$((n + 1)); [ $n -gt 300 ] && fail "no /dev/sda"
    sleep 0.2
done
echo "bootyard-lab: stage=netroot-disk /dev/sda"
mkdir -p /newroot
mount -t ext2 /dev/sda /newroot || fail "mount /dev/sda"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
fail "switch_root"
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr add "$ip/$mask" dev "$interface"
"""

ROOT_INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
MARKER=none
for arg in $(cat /proc/cmdline); do
    case "$arg" in bootyard.marker=*) MARKER="${arg#*=}" ;; esac
done
found=none
[ -e /written ] && found=$(cat /written)
echo "BOOTYARD-MARKER $MARKER stage=netroot found=$found"
[ -e /written ] || { echo "by-$MARKER" > /written; sync; }
echo "bootyard-lab: stage=netroot-synced"
poweroff -f
sleep 60
"""


def build(tmp: Path) -> tuple[Path, Path]:
    """(initramfs with iscsi_tcp, iscsi_ibft, ext4 and iscsistart, golden ext2 root image)."""
    _kernel, initrd = aoeguest.build(tmp / "guest", INITRAMFS_INIT, modules=MODULES,
                                     files={"etc/udhcpc.script": UDHCPC_SCRIPT.encode()},
                                     binaries=("/usr/sbin/iscsistart",))
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


def test_netroot_over_iscsi_dracut_and_ibft(lab, tmp_path, blockexport_process):
    initrd, golden = build(tmp_path)
    golden_sum = hashlib.sha256(golden.read_bytes()).hexdigest()
    boot = BootLab(lab, tmp_path / "lab", stack="bootyard", assets=ensure_assets())
    try:
        a = boot.plan.add_host("ina", kind="kernel")
        b = boot.plan.add_host("inb", kind="kernel")
        c = boot.plan.add_host("inc", kind="kernel")
        boot.start()
        (boot.plan.www_root / "images" / initrd.name).write_bytes(initrd.read_bytes())
        boot.stack.cli("blockexport", "add", "inetroot", "--kind", "iscsi", "--backing",
                       str(golden), "--cow", "yes", "--iqn", "iqn.2026-11.org.example:inetroot",
                       "--unmatched", "refuse")
        for host in (a, b, c):
            boot.stack.cli("profile", "set", host.name, "--initrd", initrd.name,
                           "--export", "inetroot", "--live-style", "rooturl")
            boot.stack.cli("host", "set", host.mac, "--boot-mode", "netroot")
        boot.stack.cli("host", "set", c.mac, "--var", "iscsi=ibft")
        service = blockexport_process(boot.server, boot.stack.redis_url, tmp_path / "be.log",
                                      overlay_root=str(tmp_path / "overlays"))

        def netboot(host) -> str:
            result = boot.boot(host, BIOS, timeout=300,
                               pattern=rf"BOOTYARD-MARKER {host.marker} stage=netroot")
            result.vm.wait_for(r"stage=netroot-synced", 60)
            return re.search(r"found=(\S+)", result.marker.text).group(1)

        assert netboot(a) == "none"
        assert netboot(a) == f"by-{a.marker}"  # its own write survived the reboot
        assert netboot(b) == "none"  # the same golden export, its own overlay
        assert netboot(c) == "none"  # logged in from the iBFT, its own overlay
        log = service.log()
        for host in (a, b, c):
            assert f"initiator=iqn.2026-11.org.bootyard:{host.name} address={host.ip} " \
                   f"mac={host.mac}" in log, host
        kinds = [e.kind for e in boot.events(a.mac)]
        assert kinds.count("blockexport.iscsi_login") == 2 and "blockexport.first_read" in kinds
        assert "iscsi_login_failed" not in log
    finally:
        boot.stop()
    assert hashlib.sha256(golden.read_bytes()).hexdigest() == golden_sum
    cow = CowDisk(str(golden), str(tmp_path / "overlays"), "inetroot")
    try:
        assert {o.mac for o in cow.overlays()} == {a.mac, b.mac, c.mac}
    finally:
        cow.close()
