"""Guests that speak AoE through Linux's ``aoe`` driver: the lab's Debian kernel, booted straight
into a busybox initramfs (``-kernel``/``-initrd``, no firmware network boot) whose ``/init`` is
given by the caller.

Used by tests/blockexport (the driver reading and writing exports, netroot) and by
``make bench-aoe``. The kernel and busybox come from the lab's asset cache (:mod:`lab.assets`);
the initramfs holds the listed modules and their dependencies in load order
(``/etc/modules-load``) and a ``load_modules`` shell function in ``/etc/aoe-functions`` that
loads them, bringing eth0 up (with ``aoetest.mtu=`` from the kernel command line, if given)
before ``aoe``, so the driver's discovery goes out on a live link (and giving ``brd``, if listed,
one RAM disk of ``aoetest.ramkb=`` KiB).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from lab import initramfs
from lab.assets import cache_dir, cache_lock, download, resolve_kernel_package, unpack
from lab.qemu import VM

APPLETS = ("sh", "mount", "umount", "cat", "echo", "sleep", "ip", "insmod", "poweroff", "cut",
           "ls", "md5sum", "dd", "sync", "uname", "test", "[", "grep", "sed", "mkdir",
           "switch_root", "tr")
MODULES = ("virtio_pci", "virtio_net", "aoe")

FUNCTIONS = r"""
fail() { echo "BOOTYARD-FAIL $*"; poweroff -f; sleep 60; }
cmdline_value() {
    for arg in $(cat /proc/cmdline); do
        case "$arg" in "$1"=*) echo "${arg#*=}"; return ;; esac
    done
}
load_modules() {
    KV=$(uname -r)
    for mod in $(cat /etc/modules-load); do
        case "$mod" in
            */aoe.ko)
                mtu=$(cmdline_value aoetest.mtu)
                [ -n "$mtu" ] && ip link set eth0 mtu "$mtu"
                ip link set eth0 up
                insmod "/lib/modules/$KV/$mod" aoe_iflist=eth0 || fail "insmod aoe" ;;
            */brd.ko)
                kb=$(cmdline_value aoetest.ramkb)
                insmod "/lib/modules/$KV/$mod" rd_nr=1 rd_size="${kb:-65536}" || fail "insmod brd" ;;
            *) insmod "/lib/modules/$KV/$mod" || fail "insmod $mod" ;;
        esac
        [ "$mod" = "${mod%virtio_net.ko}" ] || { n=0; while [ ! -e /sys/class/net/eth0 ]; do
            n=$((n + 1)); [ $n -gt 100 ] && fail "no eth0"; sleep 0.1; done; }
    done
}
wait_aoe() {  # wait_aoe e7.3: until /dev/etherd/e7.3 exists with its size known
    n=0
    while [ ! -b /dev/etherd/$1 ] || [ "$(cat /sys/block/etherd!$1/size)" = 0 ]; do
        n=$((n + 1)); [ $n -gt 300 ] && fail "no /dev/etherd/$1"
        [ $((n % 20)) = 0 ] && echo > /dev/etherd/discover
        sleep 0.1
    done
}
"""


def kernel_tree() -> tuple[Path, Path, str]:
    """(unpacked kernel package, busybox binary, kernel version) from the lab's asset cache."""
    package = resolve_kernel_package()
    version = package.removeprefix("linux-image-")
    debs = cache_dir() / "debs"
    with cache_lock():
        tree = unpack(download(package, debs), cache_dir() / "unpacked" / package)
        busybox = unpack(download("busybox-static", debs),
                         cache_dir() / "unpacked" / "busybox-static") / "bin" / "busybox"
    return tree, busybox, version


def host_binaries(paths: tuple[str, ...]) -> dict[str, tuple[bytes, int]]:
    """The host executables ``paths`` and the shared libraries ``ldd`` names for them (and the
    dynamic loader), as initramfs files: path -> (content, mode). The lab guest runs Debian's
    kernel with the host's Debian userland (open-iscsi, e2fsprogs)."""
    import subprocess
    out: dict[str, tuple[bytes, int]] = {}
    for path in paths:
        out[path.lstrip("/")] = (Path(path).read_bytes(), 0o755)
        listing = subprocess.run(["ldd", path], capture_output=True, text=True, check=True,
                                 timeout=30).stdout
        for line in listing.splitlines():
            words = line.split()
            lib = words[2] if "=>" in words and len(words) > 2 else words[0]
            if lib.startswith("/"):
                out[lib.lstrip("/")] = (Path(lib).read_bytes(), 0o755)
    return out


def build(workdir: Path, init: str, modules: tuple[str, ...] = MODULES,
          files: dict[str, bytes] | None = None,
          binaries: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """(kernel, initramfs) in ``workdir``; ``init`` is the /init script (it may ``.
    /etc/aoe-functions``), ``files`` extra files (path in the initramfs -> content; their
    directories are made), ``binaries`` host executables copied with their libraries."""
    tree, busybox, version = kernel_tree()
    module_root = tree / "lib" / "modules" / version
    order = initramfs.module_closure(module_root, modules)
    cpio = initramfs.Cpio()
    for d in ("bin", "dev", "proc", "sys", "etc", "lib", "lib/modules", f"lib/modules/{version}"):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.modules(version, module_root, order)
    cpio.file("etc/aoe-functions", FUNCTIONS.encode())
    extra = {name: (data, 0o644) for name, data in (files or {}).items()}
    extra.update(host_binaries(binaries))
    dirs = {"bin", "dev", "proc", "sys", "etc", "lib", "lib/modules"}
    for name, (data, mode) in sorted(extra.items()):
        parts = Path(name).parts
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub not in dirs:
                cpio.directory(sub)
                dirs.add(sub)
        cpio.file(name, data, mode)
    cpio.file("init", init.encode(), 0o755)
    workdir.mkdir(parents=True, exist_ok=True)
    initrd = workdir / "aoe-initrd.img"
    initrd.write_bytes(gzip.compress(cpio.finish(), compresslevel=1, mtime=0))
    kernel = workdir / "vmlinuz"
    shutil.copyfile(tree / "boot" / f"vmlinuz-{version}", kernel)
    return kernel, initrd


def busybox_path() -> Path:
    return kernel_tree()[1]


class KernelVM(VM):
    """A lab VM booted straight into a kernel and initramfs (no firmware network boot)."""

    def __init__(self, namespace, tap: str, mac: str, workdir: Path, *, kernel: Path,
                 initrd: Path, append: str, memory_mb: int = 256, name: str = "aoe") -> None:
        from lab.qemu import BIOS
        super().__init__(namespace, tap, mac, BIOS, workdir, memory_mb=memory_mb, name=name)
        self.boot = ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]

    def argv(self) -> list[str]:
        return ["qemu-system-x86_64", "-accel", "tcg", "-m", str(self.memory_mb), "-smp", "1",
                "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                "-monitor", "none", "-vga", "none", *self.boot,
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile="]
