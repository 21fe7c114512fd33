"""The lab's own parts, checked without booting: the initramfs against GNU cpio, the router
advertisement against scapy, the local-disk boot sector, the inventory the lab imports."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from lab import initramfs
from lab.bootyard import inventory
from lab.disk import boot_sector
from lab.plan import BootPlan
from lab.radvd import router_advertisement
from shared.inventory_file import yaml_to_dump


def test_cpio_archive_lists_with_gnu_cpio(tmp_path):
    archive = initramfs.Cpio()
    archive.directory("bin")
    archive.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.chardev("dev-console", 5, 1)
    data = archive.finish()
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True,
                             check=True).stdout.decode()
    lines = listing.splitlines()
    assert [ln.split()[-1] for ln in lines[:2]] == ["bin", "bin/hello"]
    assert "bin/sh -> busybox" in listing
    assert lines[3].startswith("crw") and "5," in lines[3]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames", "bin/hello"],
                   input=data, cwd=out, check=True)
    assert (out / "bin" / "hello").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_built_initramfs_has_init_modules_and_modules_dep(boot_assets):
    data = gzip.decompress(boot_assets.initrd.read_bytes())
    names = subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True,
                           check=True).stdout.decode().split()
    version = boot_assets.kernel_version
    assert "init" in names and "bin/busybox" in names and "dev/console" in names
    for module in ("virtio_net.ko", "virtio_pci.ko", "squashfs.ko", "overlay.ko", "loop.ko",
                   "net_failover.ko", "failover.ko"):
        assert any(n.startswith(f"lib/modules/{version}/") and n.endswith("/" + module)
                   for n in names), module
    assert f"lib/modules/{version}/modules.dep" in names


def test_module_closure_puts_dependencies_first(boot_assets):
    root = Path(boot_assets.root) / "unpacked" / f"linux-image-{boot_assets.kernel_version}" / \
        "lib" / "modules" / boot_assets.kernel_version
    order = [Path(p).stem for p in initramfs.module_closure(root, ("virtio_net",))]
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    with pytest.raises(FileNotFoundError):
        initramfs.module_closure(root, ("no_such_module",))


def test_router_advertisement_decodes_with_scapy():
    import socket

    from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr
    packet = router_advertisement(socket.inet_pton(socket.AF_INET6, "fd18:b007::"),
                                  bytes.fromhex("020000000001"))
    ra = ICMPv6ND_RA(packet)
    assert ra.routerlifetime == 0 and ra.M == 0 and ra.O == 0
    assert ra[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:01"
    prefix = ra[ICMPv6NDOptPrefixInfo]
    assert (prefix.prefix, prefix.prefixlen, prefix.L, prefix.A) == ("fd18:b007::", 64, 1, 1)


def test_boot_sector_is_one_bootable_sector():
    sector = boot_sector("BOOTYARD-MARKER x stage=local-disk")
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    assert b"BOOTYARD-MARKER x stage=local-disk\r\n\0" in sector
    with pytest.raises(ValueError):
        boot_sector("x" * 500)


def test_lab_inventory_is_valid(tmp_path):
    import yaml
    plan = BootPlan(server_ip="198.18.9.1", network="198.18.9.0/24", www_root=tmp_path / "w",
                    tftp_root=tmp_path / "t")
    plan.add_host("a", kind="kernel")
    plan.add_host("b", kind="live")
    plan.add_host("c", kind="local")
    plan.add_host("d", kind="kernel", boot="grub")
    dump = yaml_to_dump(yaml.safe_dump(inventory(plan)))  # raises on any invalid record
    assert dump["host"]["52:54:00:b0:07:11"]["boot_mode"] == "live"
    assert dump["profile"]["b"]["live_style"] == "rooturl"
    assert dump["host"]["52:54:00:b0:07:13"]["var.boot_file_uefi"] == "grub/x86_64-efi/core.efi"
