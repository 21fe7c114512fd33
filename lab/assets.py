"""Boot assets for the QEMU lab, fetched from Debian's packages and cached between runs.

``python -m lab.assets`` (or :func:`ensure_assets`) makes, under the cache directory
(``$BOOTYARD_ASSET_CACHE``, default ``var/cache/assets`` in the repository):

- ``debs/``: the ``.deb`` files from ``apt-get download`` (the Debian kernel, resolved from the
  ``linux-image-amd64`` meta-package to its versioned package, and busybox-static), unpacked with
  ``dpkg -x`` (nothing is installed on the system);
- ``images/vmlinuz``, ``images/initrd.img`` (busybox initramfs, see :mod:`lab.initramfs`),
  ``images/root.squashfs`` (the live root, made with mksquashfs);
- ``tftp/``: the network boot programs read from the installed Debian packages: iPXE
  (``undionly.kpxe``, ``ipxe.efi``, ``snponly.efi``), PXELINUX (``pxelinux.0``, ``ldlinux.c32``)
  and a GRUB EFI network directory (``grub/``, made with ``grub-mknetdir``).

Everything is rebuilt when the kernel version or the guest scripts change (a stamp records both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab import initramfs

REPO = Path(__file__).resolve().parent.parent
MODULES = ("virtio_pci", "virtio_net", "loop", "squashfs", "overlay")
FIRMWARE = {
    # name in the TFTP root: installed file (from scripts/install-debian-packages.sh)
    "undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe",
    "ipxe.efi": "/usr/lib/ipxe/ipxe.efi",
    "snponly.efi": "/usr/lib/ipxe/snponly.efi",
    "pxelinux.0": "/usr/lib/PXELINUX/pxelinux.0",
    "lpxelinux.0": "/usr/lib/PXELINUX/lpxelinux.0",
    "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32",
}
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")



class AssetError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Assets:
    root: Path
    kernel_version: str

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def tftp(self) -> Path:
        return self.root / "tftp"

    @property
    def kernel(self) -> Path:
        return self.images / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.images / "initrd.img"

    @property
    def squashfs(self) -> Path:
        return self.images / "root.squashfs"


def cache_dir() -> Path:
    return Path(os.environ.get("BOOTYARD_ASSET_CACHE") or REPO / "var" / "cache" / "assets")


def _run(argv: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssetError(f"{' '.join(argv)} failed ({result.returncode}): "
                         f"{(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout


def resolve_kernel_package() -> str:
    """The versioned package linux-image-amd64 depends on (e.g. linux-image-6.1.0-56-amd64)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise AssetError("apt-cache depends linux-image-amd64 names no linux-image-* package "
                     "(run apt-get update?)")


_held: dict[str, int] = {}


@contextlib.contextmanager
def cache_lock(root: Path | None = None):
    """Hold the asset cache for this process: one builder at a time across processes (pytest
    workers, helpers' test runs, `python -m lab.assets`), re-entrant within a process."""
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = str(root.resolve())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield
        finally:
            _held[key] = 0
            fcntl.flock(f, fcntl.LOCK_UN)


def download(package: str, debs: Path) -> Path:
    """``apt-get download`` one package into ``debs`` (once); returns the .deb path."""
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    _run(["apt-get", "download", "-q", package], cwd=debs)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise AssetError(f"apt-get download {package} produced no .deb in {debs}")
    return found[-1]


def unpack(deb: Path, into: Path) -> Path:
    if not (into / ".unpacked").exists():
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        _run(["dpkg", "-x", str(deb), str(into)])
        (into / ".unpacked").touch()
    return into


def _stamp(kernel_package: str) -> str:
    text = Path(initramfs.__file__).read_bytes() + Path(__file__).read_bytes()
    return json.dumps({"kernel": kernel_package,
                       "scripts": hashlib.sha256(text).hexdigest()[:16]})


def ensure_assets(root: Path | None = None, log=print) -> Assets:
    """Fetch and build what is missing; return the asset paths."""
    root = root or cache_dir()
    with cache_lock(root):
        return _ensure_assets(root, log)


def _ensure_assets(root: Path, log) -> Assets:
    root.mkdir(parents=True, exist_ok=True)
    stamp_file = root / "stamp.json"
    kernel_package = resolve_kernel_package()
    stamp = _stamp(kernel_package)
    kernel_version = kernel_package.removeprefix("linux-image-")
    assets = Assets(root, kernel_version)
    if stamp_file.exists() and stamp_file.read_text() == stamp and assets.squashfs.exists():
        return assets
    debs = root / "debs"
    log(f"assets: fetching {kernel_package} and busybox-static into {debs}")
    kernel_tree = unpack(download(kernel_package, debs), root / "unpacked" / kernel_package)
    busybox_tree = unpack(download("busybox-static", debs), root / "unpacked" / "busybox-static")
    busybox = busybox_tree / "bin" / "busybox"
    vmlinuz = kernel_tree / "boot" / f"vmlinuz-{kernel_version}"
    module_root = kernel_tree / "lib" / "modules" / kernel_version
    for path in (busybox, vmlinuz, module_root):
        if not path.exists():
            raise AssetError(f"{path} missing after dpkg -x")
    assets.images.mkdir(exist_ok=True)
    shutil.copyfile(vmlinuz, assets.kernel)
    log(f"assets: building initramfs ({', '.join(MODULES)})")
    data = initramfs.build_initramfs(busybox, module_root, kernel_version, MODULES)
    tmp = assets.initrd.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(assets.initrd)
    log("assets: building live root squashfs")
    stage = root / "live-root"
    shutil.rmtree(stage, ignore_errors=True)
    initramfs.stage_live_root(busybox, stage)
    tmp = assets.squashfs.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _run(["mksquashfs", str(stage), str(tmp), "-noappend", "-all-root", "-comp", "gzip",
          "-quiet", "-no-progress"])
    tmp.replace(assets.squashfs)
    _tftp_root(assets, log)
    stamp_file.write_text(stamp)
    return assets


def _tftp_root(assets: Assets, log) -> None:
    tftp = assets.tftp
    tftp.mkdir(exist_ok=True)
    for name, source in FIRMWARE.items():
        if not Path(source).exists():
            raise AssetError(f"{source} missing: run scripts/install-debian-packages.sh as root")
        shutil.copyfile(source, tftp / name)
    if not (tftp / "grub" / "x86_64-efi" / "core.efi").exists():
        log("assets: grub-mknetdir (x86_64-efi)")
        _run(["grub-mknetdir", f"--net-directory={tftp}", "--subdir=grub",
              "-d", "/usr/lib/grub/x86_64-efi"])
    for source in (OVMF_CODE, OVMF_VARS):
        if not source.exists():
            raise AssetError(f"{source} missing: run scripts/install-debian-packages.sh as root")


def populate(assets: Assets, www: Path, tftp: Path) -> None:
    """Fill a server's HTTP root (``www/images/...``) and TFTP root from the cache.

    Files are hard-linked when the cache is on the same file system, else copied: the services'
    path sanitiser refuses symlinks that leave the served root, as it should."""
    pairs = [(assets.kernel, www / "images" / "vmlinuz"),
             (assets.initrd, www / "images" / "initrd.img"),
             (assets.squashfs, www / "images" / "root.squashfs"),
             (assets.tftp / "ipxe.efi", www / "images" / "ipxe.efi"),
             (assets.kernel, tftp / "images" / "vmlinuz"),
             (assets.initrd, tftp / "images" / "initrd.img")]
    for name in FIRMWARE:
        pairs.append((assets.tftp / name, tftp / name))
    for source in (assets.tftp / "grub").rglob("*"):
        if source.is_file():
            pairs.append((source, tftp / source.relative_to(assets.tftp)))
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


def main() -> int:
    try:
        assets = ensure_assets()
    except AssetError as exc:
        print(f"lab.assets: {exc}", file=sys.stderr)
        return 1
    for path in (assets.kernel, assets.initrd, assets.squashfs):
        print(f"{path}  {path.stat().st_size} bytes")
    print(f"kernel {assets.kernel_version}; tftp root {assets.tftp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
