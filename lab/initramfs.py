"""The guest side of the lab: a busybox initramfs and a squashfs live root, built without root.

The initramfs is written as a ``newc`` cpio archive by this module (so device nodes and root
ownership need no privileges), gzip-compressed. Its ``/init`` (a busybox shell script):

1. mounts proc/sys/devtmpfs, loads the kernel modules listed in ``/etc/modules-load`` (virtio_pci,
   virtio_net, loop, squashfs, overlay and their dependencies, in dependency order);
2. brings eth0 up with ``udhcpc``;
3. without a root URL on the kernel command line (``rooturl=URL``, as bootyard's ``rooturl``
   live style writes it, ``root=live:URL`` or ``bootyard.root=URL``): prints the success marker;
   with one: fetches the squashfs with ``wget``, mounts it under an overlay with a tmpfs upper layer,
   ``switch_root`` s into it, and the live root's ``/sbin/init`` prints the marker.
4. an install file named on the command line (``inst.ks=URL``) is fetched as an installer
   would (after ``bootyard.lab_ip=ADDR/PREFIX``, if given, replaced the leased address: an
   installer with an address of its own); a refusal is printed, not fatal;
5. before the marker, a system that bootyard named a booted URL (``bootyard.booted=URL`` on the
   command line: live and netroot boots, docs/http.md) calls it with ``wget``, as a booted OS's
   last boot step would: the host's boot state reaches ``up``. A failed call is printed, not
   fatal (the classic stack has no such URL to answer).

Every line the guest prints for the lab starts with ``bootyard-lab:``; the success line is
``BOOTYARD-MARKER <token> stage=<initramfs|liveroot>`` where the token comes from the command line
(``bootyard.marker=``), so output left over from another boot can never pass a test. A failure
prints ``BOOTYARD-FAIL <reason>`` and powers the VM off, so a broken boot fails fast.
"""

from __future__ import annotations

import gzip
import io
import stat
from pathlib import Path

# busybox applets the scripts below use (symlinked to /bin/busybox).
APPLETS = ("sh", "mount", "umount", "mkdir", "cat", "echo", "sleep", "ip", "udhcpc", "wget",
           "insmod", "modprobe", "switch_root", "poweroff", "reboot", "grep", "cut", "ls", "ln",
           "rm", "stat", "wc", "sync", "uname", "head", "tr", "test", "[", "ifconfig", "route",
           "date", "dmesg", "losetup", "touch", "df")

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
uptime() { cut -d' ' -f1 /proc/uptime; }
say() { echo "bootyard-lab: $* uptime=$(uptime)"; }
fail() { echo "BOOTYARD-FAIL $*"; sync; poweroff -f; sleep 60; }
say "stage=init kernel=$(uname -r)"
MARKER=none; ROOT=; BOOTED=; KS=; LABIP=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        bootyard.marker=*) MARKER="${arg#*=}" ;;
        bootyard.booted=*) BOOTED="${arg#*=}" ;;
        inst.ks=*) KS="${arg#*=}" ;;
        bootyard.lab_ip=*) LABIP="${arg#*=}" ;;
        bootyard.root=*|rooturl=*) ROOT="${arg#*=}" ;;
        root=live:*) ROOT="${arg#root=live:}" ;;
    esac
done
KV=$(uname -r)
for mod in $(cat /etc/modules-load); do
    insmod "/lib/modules/$KV/$mod" || fail "insmod $mod"
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ]; do
    n=$((n + 1)); [ $n -gt 100 ] && fail "no eth0 (virtio_net not loaded?)"
    sleep 0.1
done
udhcpc -i eth0 -s /etc/udhcpc.script -n -q -t 10 -T 2 \
    || fail "no DHCP lease on eth0"
say "stage=network ip=$(cat /run/ip)"
if [ -n "$LABIP" ]; then  # an installer that sets an address of its own (not its lease)
    ip addr flush dev eth0 && ip addr add "$LABIP" dev eth0 && say "stage=own-address ip=$LABIP"
fi
if [ -n "$KS" ]; then  # an installer fetching its install file (kickstart's inst.ks=)
    if wget -q -O /tmp/install-file "$KS"; then say "stage=install-file-fetched"
    else say "stage=install-file-refused url=$KS"; fi
fi
booted() {
    [ -n "$BOOTED" ] || return 0
    if wget -q -O /dev/null "$BOOTED"; then say "stage=booted-called"
    else say "stage=booted-call-failed url=$BOOTED"; fi
}
if [ -z "$ROOT" ]; then
    booted
    echo "BOOTYARD-MARKER $MARKER stage=initramfs ip=$(cat /run/ip)"
    sync; poweroff -f; sleep 60
fi
say "stage=rootfs-fetch url=$ROOT"
wget -q -O /root.squashfs "$ROOT" || fail "wget $ROOT"
say "stage=rootfs-fetched bytes=$(wc -c < /root.squashfs)"
mkdir -p /lower /rw /newroot
mount -t squashfs -o loop,ro /root.squashfs /lower || fail "mount squashfs"
mount -t tmpfs -o size=64m tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "mount overlay"
cp /run/ip /newroot/run-ip 2>/dev/null || cat /run/ip > /newroot/run-ip
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
say "stage=switch-root"
exec switch_root /newroot /sbin/init
fail "switch_root"
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        if [ -n "$router" ]; then
            for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        fi
        echo "$ip" > /run/ip
        echo "bootyard-lab: stage=dhcp ip=$ip server=$serverid siaddr=$siaddr boot_file=$boot_file"
        ;;
esac
exit 0
"""

LIVE_INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
MARKER=none; BOOTED=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        bootyard.marker=*) MARKER="${arg#*=}" ;;
        bootyard.booted=*) BOOTED="${arg#*=}" ;;
    esac
done
uptime() { cut -d' ' -f1 /proc/uptime; }
fstype=$(grep ' / ' /proc/mounts | tail -n 1 | cut -d' ' -f3)
if ! echo written > /written-by-live-root; then
    echo "BOOTYARD-FAIL live root is not writable"; sync; poweroff -f
fi
echo "bootyard-lab: stage=live-root fstype=$fstype release=$(cat /etc/bootyard-release) uptime=$(uptime)"
if [ "$fstype" != overlay ]; then
    echo "BOOTYARD-FAIL live root is $fstype, not overlay"; sync; poweroff -f
fi
if [ -n "$BOOTED" ]; then  # up: what a booted OS's last step does (docs/http.md)
    if wget -q -O /dev/null "$BOOTED"; then echo "bootyard-lab: stage=booted-called"
    else echo "bootyard-lab: stage=booted-call-failed url=$BOOTED"; fi
fi
echo "BOOTYARD-MARKER $MARKER stage=liveroot ip=$(cat /run-ip)"
sync
poweroff -f
sleep 60
"""


class Cpio:
    """A ``newc`` cpio archive built in memory (what the kernel unpacks as an initramfs)."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1000

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        self._out.write(header + encoded)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def modules(self, version: str, module_root: Path, order: list[str]) -> None:
        """The kernel modules ``order`` (paths under ``module_root``) under
        ``lib/modules/<version>/``, with their directories, and ``etc/modules-load`` listing them
        in that order (the guest's init loads them one by one)."""
        made = set()
        for rel in order:
            parts = Path(rel).parts
            for i in range(1, len(parts)):
                sub = "/".join(parts[:i])
                if sub not in made:
                    self.directory(f"lib/modules/{version}/{sub}")
                    made.add(sub)
            self.file(f"lib/modules/{version}/{rel}", (module_root / rel).read_bytes())
        self.file("etc/modules-load", ("\n".join(order) + "\n").encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def module_closure(module_root: Path, wanted: tuple[str, ...]) -> list[str]:
    """Paths (relative to ``lib/modules/<version>``) of ``wanted`` and their dependencies,
    dependencies first, read from each module's ``.modinfo`` ``depends=`` entry."""
    by_name = {}
    for path in module_root.rglob("*.ko"):
        by_name[path.stem.replace("-", "_")] = path
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in chain:
            raise ValueError(f"module dependency loop: {' -> '.join(chain + (name,))}")
        path = by_name.get(name)
        if path is None:
            raise FileNotFoundError(f"kernel module {name} not found under {module_root}")
        rel = str(path.relative_to(module_root))
        if rel in order:
            return
        for dep in modinfo_depends(path):
            visit(dep, chain + (name,))
        order.append(rel)

    for name in wanted:
        visit(name, ())
    return order


def modinfo_depends(path: Path) -> list[str]:
    data = path.read_bytes()
    for chunk in data.split(b"\0"):
        if chunk.startswith(b"depends="):
            return [d for d in chunk[len(b"depends="):].decode().split(",") if d]
    return []


def build_initramfs(busybox: Path, module_root: Path, kernel_version: str,
                    modules: tuple[str, ...]) -> bytes:
    """The gzip-compressed initramfs: busybox, the modules (with modules.dep) and /init."""
    order = module_closure(module_root, modules)
    cpio = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "run", "etc", "tmp", "lib", "lib/modules",
              f"lib/modules/{kernel_version}"):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.chardev("dev/ttyS0", 4, 64)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.symlink("bin/cp", "busybox")
    cpio.modules(kernel_version, module_root, order)
    dep_lines = []
    for rel in order:
        deps = [r for r in order if Path(r).stem.replace("-", "_") in
                {d.replace("-", "_") for d in modinfo_depends(module_root / rel)}]
        dep_lines.append(f"{rel}: {' '.join(deps)}".rstrip())
    # modules.dep so busybox modprobe works too (pitfall 11: the .deb ships none).
    cpio.file(f"lib/modules/{kernel_version}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def stage_live_root(busybox: Path, root: Path) -> None:
    """The directory tree mksquashfs turns into the live root."""
    for d in ("bin", "sbin", "dev", "proc", "sys", "run", "etc", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    target = root / "bin" / "busybox"
    target.write_bytes(busybox.read_bytes())
    target.chmod(0o755)
    for applet in APPLETS:
        link = root / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    init = root / "sbin" / "init"
    init.write_text(LIVE_INIT)
    init.chmod(0o755)
    (root / "etc" / "bootyard-release").write_text("bootyard-lab-live-1\n")
