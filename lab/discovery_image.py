"""The discovery image: the small live system an unknown machine boots to report its hardware.

``make discovery-image`` (``python -m lab.discovery_image --images DIR``) writes
``DIR/discovery/vmlinuz`` and ``DIR/discovery/initrd.img`` (the paths the ``discovery.kernel``
and ``discovery.initrd`` settings name by default), built from Debian's packages with the lab's
builder (:mod:`lab.assets` fetches and unpacks the .debs, :mod:`lab.initramfs` writes the cpio):
Debian's kernel, busybox-static, ``dmidecode`` with the C library it links to, and the kernel
modules for the usual disks and NICs (virtio, AHCI/SATA, SCSI disks, NVMe, Intel e1000/e1000e/
igb/ixgbe) with their dependencies.

Its ``/init`` (:data:`INIT`) loads the modules, brings every NIC up, takes a DHCP lease on the
one it booted from (``bootyard.mac=`` on the command line, which the discovery script of
shared/bootplan.py writes), reads the hardware (DMI from ``/sys/class/dmi/id``, memory from
``dmidecode -t 17``, CPUs from ``/proc/cpuinfo``, disks from ``/sys/block``, NICs from
``/sys/class/net``, BIOS or UEFI from ``/sys/firmware/efi``), posts it as JSON
(shared/hardware.py's shape) to ``<bootyard.server>/discovery/report?mac=<mac>``, and then does
what the answer's ``action=`` line says (``poweroff``, ``wait``, or ``reboot`` once a discovery
rule adopted it), falling back to ``bootyard.after=``. Waiting, it asks
``<bootyard.server>/discovery/next?mac=<mac>`` every ``bootyard.poll=`` seconds and reboots
once the answer is ``action=reboot`` (it has been adopted). Console lines start with
``bootyard-discovery:``.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

from lab import assets, initramfs

# Kernel modules for the disks and NICs found in servers and VMs (dependencies are added).
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "scsi_mod", "sd_mod",
           "libata", "ahci", "ata_piix", "nvme", "e1000", "e1000e", "igb", "ixgbe")
PACKAGES = ("busybox-static", "dmidecode", "libc6")
# dmidecode (Debian) links to the C library only: these come from libc6.
LIBRARIES = {"lib64/ld-linux-x86-64.so.2": "ld-linux-x86-64.so.2",
             "lib/x86_64-linux-gnu/libc.so.6": "libc.so.6"}
APPLETS = initramfs.APPLETS + ("awk", "sed", "basename", "readlink", "printf", "cut", "tr",
                               "seq", "expr", "true", "false")

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "bootyard-discovery: $*"; }
MAC=; SERVER=; AFTER=poweroff; POLL=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        bootyard.mac=*) MAC="${arg#*=}" ;;
        bootyard.poll=*) POLL="${arg#*=}" ;;
        bootyard.server=*) SERVER="${arg#*=}" ;;
        bootyard.after=*) AFTER="${arg#*=}" ;;
    esac
done
finish() {
    case "$1" in
        reboot) say "rebooting"; sync; reboot -f ;;
        wait) say "waiting until it is adopted (or rebooted, or powered off)"
              while :; do
                  sleep "$POLL"
                  if wget -q -O /tmp/next "$SERVER/discovery/next?mac=$MAC" \
                          && grep -q '^action=reboot' /tmp/next; then
                      say "adopted: $(head -n 1 /tmp/next)"; finish reboot
                  fi
              done ;;
        *) say "powering off"; sync; poweroff -f ;;
    esac
    sleep 60
}
say "stage=init kernel=$(uname -r) mac=$MAC"
KV=$(uname -r)
for mod in $(cat /etc/modules-load); do
    insmod "/lib/modules/$KV/$mod" 2>/dev/null
done
IF=
n=0
while [ -z "$IF" ] && [ $n -lt 100 ]; do
    for dev in /sys/class/net/*; do
        [ "$(cat "$dev/address" 2>/dev/null)" = "$MAC" ] && IF="${dev##*/}"
    done
    [ -n "$IF" ] || { n=$((n + 1)); sleep 0.1; }
done
[ -n "$IF" ] || { say "stage=failed reason=no-nic-with-mac-$MAC"; finish "$AFTER"; }
for dev in /sys/class/net/*; do ip link set "${dev##*/}" up 2>/dev/null; done
udhcpc -i "$IF" -s /etc/udhcpc.script -n -q -t 10 -T 2 \
    || { say "stage=failed reason=no-dhcp-lease-on-$IF"; finish "$AFTER"; }
say "stage=network interface=$IF ip=$(cat /run/ip)"
sleep 1

clean() { printf '%s' "$1" | tr -d '\n' | tr -cd 'A-Za-z0-9 ._:/@+,()=#-' | cut -c1-128; }
str() { printf '"%s"' "$(clean "$1")"; }
readf() { [ -r "$1" ] && head -n 1 "$1" 2>/dev/null; }
dmi() { readf "/sys/class/dmi/id/$1"; }

MEM=$(dmidecode -t 17 2>/dev/null | awk '/^[ \t]+Size: [0-9]+ [kKMGT]B/ {
        m = 1; if ($3 == "kB" || $3 == "KB") m = 1024; if ($3 == "MB") m = 1048576;
        if ($3 == "GB") m = 1073741824; if ($3 == "TB") m = 1099511627776; s += $2 * m }
        END { printf "%.0f", s }')
if [ -z "$MEM" ] || [ "$MEM" = 0 ]; then
    MEM=$(awk '/^MemTotal:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo)
fi
DISKS=
for d in /sys/block/*; do
    name="${d##*/}"
    case "$name" in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
    sectors=$(readf "$d/size"); [ -n "$sectors" ] || continue
    serial=$(readf "$d/serial"); [ -n "$serial" ] || serial=$(readf "$d/device/serial")
    model=$(readf "$d/device/model")
    item="{\"name\":$(str "$name"),\"size_bytes\":$((sectors * 512))"
    item="$item,\"serial\":$(str "$serial"),\"model\":$(str "$model")}"
    DISKS="${DISKS:+$DISKS,}$item"
done
NICS=
for dev in /sys/class/net/*; do
    name="${dev##*/}"
    [ -e "$dev/device" ] || continue
    case "$(readf "$dev/carrier")" in 1) link=up ;; 0) link=down ;; *) link=unknown ;; esac
    driver=$(basename "$(readlink "$dev/device/driver")" 2>/dev/null)
    item="{\"name\":$(str "$name"),\"mac\":$(str "$(readf "$dev/address")")"
    item="$item,\"link\":\"$link\",\"driver\":$(str "$driver")}"
    NICS="${NICS:+$NICS,}$item"
done
FIRMWARE=bios; [ -d /sys/firmware/efi ] && FIRMWARE=uefi
CPUS=$(grep -c '^processor' /proc/cpuinfo)
MODEL=$(grep -m 1 '^model name' /proc/cpuinfo | cut -d: -f2-)
DMI="\"vendor\":$(str "$(dmi sys_vendor)"),\"product\":$(str "$(dmi product_name)")"
DMI="$DMI,\"serial\":$(str "$(dmi product_serial)"),\"uuid\":$(str "$(dmi product_uuid)")"
DMI="$DMI,\"board_vendor\":$(str "$(dmi board_vendor)")"
DMI="$DMI,\"board_product\":$(str "$(dmi board_name)")"
DMI="$DMI,\"bios_vendor\":$(str "$(dmi bios_vendor)")"
DMI="$DMI,\"bios_version\":$(str "$(dmi bios_version)")"
R="{\"dmi\":{$DMI},\"cpus\":${CPUS:-0},\"cpu_model\":$(str "$MODEL")"
R="$R,\"memory_bytes\":${MEM:-0},\"disks\":[$DISKS],\"nics\":[$NICS]"
R="$R,\"firmware\":\"$FIRMWARE\",\"arch\":$(str "$(uname -m)")}"
echo "$R" > /tmp/report.json
say "report $(cat /tmp/report.json)"
URL="$SERVER/discovery/report?mac=$MAC"
n=0
until wget -q -O /tmp/answer --header 'Content-Type: application/json' \
        --post-file /tmp/report.json "$URL"; do
    n=$((n + 1))
    if [ $n -ge 5 ]; then
        say "stage=failed reason=report-refused url=$URL (the HTTP service's log says why)"
        finish "$AFTER"
    fi
    sleep 3
done
ACTION=$(grep '^action=' /tmp/answer | cut -d= -f2)
say "reported mac=$MAC action=${ACTION:-$AFTER} answer=$(head -n 1 /tmp/answer)"
finish "${ACTION:-$AFTER}"
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        echo "$ip" > /run/ip ;;
esac
exit 0
"""


def _find(tree: Path, name: str) -> Path:
    for path in sorted(tree.rglob(name)):
        resolved = path.resolve()
        if resolved.is_file() and str(resolved).startswith(str(tree.resolve())):
            return resolved
        if path.is_symlink():  # an absolute link inside the package: resolve it in the tree
            target = tree / str(path.readlink()).lstrip("/")
            if target.is_file():
                return target
    raise assets.AssetError(f"{name} not found in {tree}")


def _existing_modules(module_root: Path, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """``wanted`` without the ones built into this kernel (modules.builtin)."""
    builtin = set()
    listed = module_root / "modules.builtin"
    if listed.exists():
        builtin = {Path(line).stem.replace("-", "_") for line in listed.read_text().split()}
    return tuple(m for m in wanted if m.replace("-", "_") not in builtin)


def build(images: Path, cache: Path | None = None, log=print) -> tuple[Path, Path]:
    """Write ``images/discovery/vmlinuz`` and ``initrd.img``; return their paths."""
    cache = cache or assets.cache_dir()
    debs = cache / "debs"
    kernel_package = assets.resolve_kernel_package()
    version = kernel_package.removeprefix("linux-image-")
    log(f"discovery-image: fetching {kernel_package} and {', '.join(PACKAGES)} into {debs}")
    with assets.cache_lock(cache):
        kernel_tree = assets.unpack(assets.download(kernel_package, debs),
                                    cache / "unpacked" / kernel_package)
        trees = {p: assets.unpack(assets.download(p, debs), cache / "unpacked" / p)
                 for p in PACKAGES}
    module_root = kernel_tree / "lib" / "modules" / version
    modules = _existing_modules(module_root, MODULES)
    order = initramfs.module_closure(module_root, modules)
    cpio = initramfs.Cpio()
    for d in ("bin", "sbin", "usr", "usr/sbin", "dev", "proc", "sys", "run", "etc", "tmp",
              "lib", "lib64", "lib/x86_64-linux-gnu", "lib/modules", f"lib/modules/{version}"):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", (trees["busybox-static"] / "bin" / "busybox").read_bytes(), 0o755)
    for applet in sorted(set(APPLETS)):
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.symlink("bin/cp", "busybox")
    cpio.file("usr/sbin/dmidecode", _find(trees["dmidecode"], "dmidecode").read_bytes(), 0o755)
    for target, name in LIBRARIES.items():
        cpio.file(target, _find(trees["libc6"], name).read_bytes(), 0o755)
    cpio.modules(version, module_root, order)
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    out = images / "discovery"
    out.mkdir(parents=True, exist_ok=True)
    initrd = out / "initrd.img"
    tmp = initrd.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
    tmp.replace(initrd)
    kernel = out / "vmlinuz"
    tmp = kernel.with_suffix(".tmp")
    shutil.copyfile(kernel_tree / "boot" / f"vmlinuz-{version}", tmp)
    tmp.replace(kernel)
    (out / "VERSION").write_text(f"kernel {version}\nmodules {' '.join(modules)}\n")
    log(f"discovery-image: {kernel} ({kernel.stat().st_size} bytes), {initrd} "
        f"({initrd.stat().st_size} bytes, {len(order)} modules)")
    return kernel, initrd


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.discovery_image",
                                     description="build the discovery image (docs/discovery.md)")
    parser.add_argument("--images", required=True,
                        help="the HTTP service's images root (http.images_root): writes "
                             "discovery/vmlinuz and discovery/initrd.img under it")
    parser.add_argument("--cache", help="where the .debs are kept (default: the lab's asset "
                                        "cache, $BOOTYARD_ASSET_CACHE or var/cache/assets)")
    args = parser.parse_args(argv)
    try:
        build(Path(args.images), Path(args.cache) if args.cache else None)
    except (assets.AssetError, FileNotFoundError, ValueError) as exc:
        print(f"discovery-image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
