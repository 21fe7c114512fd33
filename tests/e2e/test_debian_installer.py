"""Debian's real installer boots from bootyard as the README says, under QEMU (TCG): the netboot
kernel and initrd of the Debian package ``debian-installer-12-netboot-amd64`` (apt-get download,
cached), put in place by ``bootyard image import``, a profile naming the image with the preseed
defaults, a host in install mode. The installer fetches its preseed with the host's token (the
HTTP service's request log and the host's timeline show it) and goes on to ask the mirror the
preseed names (bootyard's own ``/mirror/``) for its ``Release`` file. A full install is not
needed: that request proves the chain (firmware -> iPXE -> kernel + initrd -> preseed ->
mirror)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from harness.netlab import wait_for
from lab import assets
from lab.qemu import BIOS

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]
PACKAGE = "debian-installer-12-netboot-amd64"
# The d-i initrd (40 MB) unpacks and runs its udebs under TCG on a loaded 2-core machine: minutes.
RELEASE_TIMEOUT = 1500.0
MIRROR_RELEASE = re.compile(r"path=(/mirror/debian/dists/[a-z]+/(In)?Release)\b")


def installer_package() -> str:
    """The package's .deb in the lab's asset cache (apt-get download once)."""
    cache = assets.cache_dir() / "debian-installer"
    cache.mkdir(parents=True, exist_ok=True)
    with assets.cache_lock():
        found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
        if not found:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True,
                           capture_output=True, timeout=600)
            found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    assert found, f"apt-get download {PACKAGE} left no .deb in {cache}"
    return str(found[-1])


def bootyard(boot, *args: str, timeout: float = 300) -> str:
    result = subprocess.run([sys.executable, "-m", "cli", "--redis-url", boot.stack.redis_url,
                             *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"bootyard {' '.join(args)}: {result.stderr}"
    return result.stdout + result.stderr


def test_debian_installer_fetches_its_preseed_and_asks_the_mirror(bootlab, tmp_path):
    deb = installer_package()
    boot = bootlab("bootyard")
    boot.stack_env["BOOTYARD_HTTP__TOKEN_IN_SCRIPTS"] = "true"  # the preseed URL carries it
    host = boot.plan.add_host("inst1")
    boot.start()
    images = boot.plan.www_root / "images"
    out = bootyard(boot, "image", "import", "debian12", deb, "--images-dir", str(images))
    assert "debian12/linux" in out and "debian12/initrd.gz" in out, out
    out = bootyard(boot, "profile", "add", "debian12", "--image", "debian12", "--install",
                   "preseed", "--var", "root_password_hash=$6$lab$notarealhash")
    default = "auto=true priority=critical url={{ urls.preseed }}"
    assert default in out, out  # the preseed default command line, filled in by bootyard
    # the same, with the kernel's and the installer's console on the lab's serial port
    bootyard(boot, "profile", "set", "debian12", "--cmdline", f"{default} console=ttyS0")
    bootyard(boot, "host", "set", host.mac, "--profile", "debian12", "--boot-mode", "install")
    # a subnet that hands out no DNS server makes the installer stop and ask for one (before it
    # has its preseed): the README's subnet has dns; here the server's address (no DNS there:
    # every name the installer needs is an address)
    bootyard(boot, "subnet", "set", "lab", "--dns", boot.plan.server_ip)
    http_log = boot.workdir / "http.log"
    vm = boot.vm(host.mac, BIOS, memory_mb=1024)
    vm.on_line = boot.stack.console_watcher(host.mac)
    started = time.monotonic()
    try:
        vm.start()

        def mirror_asked():
            found = MIRROR_RELEASE.search(http_log.read_text())
            return found.group(1) if found else None
        try:
            release = wait_for(mirror_asked, RELEASE_TIMEOUT, interval=1.0,
                               what="the installer's request for the mirror's Release")
        except TimeoutError:
            raise AssertionError(f"no Release request after {RELEASE_TIMEOUT}s; console:\n"
                                 f"{vm.tail(40)}\nHTTP log:\n"
                                 f"{''.join(http_log.read_text().splitlines(True)[-20:])}"
                                 ) from None
        elapsed = time.monotonic() - started
    finally:
        vm.stop()
    print(f"\ninstaller asked for {release} {elapsed:.0f} s after power-on")
    log = http_log.read_text()
    # the kernel, initrd and preseed went to the host, the preseed by its token
    for path in ("/images/debian12/linux", "/images/debian12/initrd.gz"):
        assert re.search(rf"path={re.escape(path)} status=200 ", log), path
    preseed = re.search(rf"path=/install/{host.mac}/preseed.cfg status=200 .* auth=token", log)
    assert preseed, [line for line in log.splitlines() if "preseed" in line]
    kinds = [(e.kind, e.fields.get("file") or e.fields.get("path"), e.fields.get("via"))
             for e in boot.events(host.mac)]
    assert ("http.install", "preseed.cfg", "token") in kinds, kinds
    assert ("http.file", "/images/debian12/linux", None) in kinds, kinds
    assert ("http.file", "/images/debian12/initrd.gz", None) in kinds, kinds
