"""The boot cases every loader is tested with, and one way to render a case through a loader."""

from __future__ import annotations

import dataclasses

from services.http import policy
from services.tftp import render as tftp_render
from shared.records import Export, Host, Profile

MAC = "52:54:00:12:34:56"
BASE = "http://10.0.0.1:8080"
SAN = "10.0.0.1"
LOADERS = ("ipxe", "grub-http", "grub-tftp", "pxelinux", "ipxe-tftp", "ipxe-tftp-alone")

INSTALL = Profile(name="debian12", kernel="debian/linux",
                  initrd=("debian/initrd.gz", "extra/firmware.cpio.gz"),
                  cmdline="auto=true priority=critical hostname={{ host.hostname }}",
                  install="preseed")
LIVE = Profile(name="live", kernel="live/vmlinuz", initrd=("live/initrd.img",),
               root_image="live/root.squashfs", live_style="dracut", cmdline="rw quiet")
ROOTURL = dataclasses.replace(LIVE, name="busybox", live_style="rooturl", cmdline="")
NETROOT = Profile(name="diskless", kernel="live/vmlinuz", initrd=("live/initrd.img",),
                  export="web1-root", cmdline="ro")
NETROOT_AOE = dataclasses.replace(NETROOT, export="web1-aoe")
ISCSI = Export(name="web1-root", kind="iscsi", backing="/srv/web1.img",
               iqn="iqn.2026-11.org.example:web1", lun=1)
AOE = Export(name="web1-aoe", kind="aoe", backing="/srv/web1.img", aoe_shelf=0, aoe_slot=1)
URLS = Profile(name="remote", kernel="http://mirror.example/d/linux",
               initrd=("http://mirror.example:8000/d/initrd.gz",), cmdline="console=ttyS0")


def host(**kw) -> Host:
    base = {"mac": MAC, "hostname": "web1", "ip": "10.0.0.21", "profile": "debian12"}
    base.update(kw)
    return Host(**base)


# case name: (host or None, profile, export, unknown_host setting)
CASES = {
    "install": (host(), INSTALL, None, "discovery"),
    "install-urls": (host(profile="remote"), URLS, None, "discovery"),
    "live-dracut": (host(boot_mode="live", profile="live"), LIVE, None, "discovery"),
    "live-rooturl": (host(boot_mode="live", profile="busybox"), ROOTURL, None, "discovery"),
    "netroot-aoe": (host(boot_mode="netroot", profile="diskless"), NETROOT_AOE, AOE,
                    "discovery"),
    "netroot-iscsi": (host(boot_mode="netroot", profile="diskless"), NETROOT, ISCSI,
                      "discovery"),
    "netroot-iscsi-ibft": (host(boot_mode="netroot", profile="diskless",
                                vars={"iscsi": "ibft"}), NETROOT, ISCSI, "discovery"),
    "sanboot-iscsi": (host(boot_mode="sanboot", profile="diskless"), NETROOT, ISCSI,
                      "discovery"),
    "sanboot-aoe": (host(boot_mode="sanboot", profile="diskless"), NETROOT_AOE, AOE,
                    "discovery"),
    "local": (host(boot_mode="local"), INSTALL, None, "discovery"),
    "disabled": (host(enabled=False), INSTALL, None, "discovery"),
    "unknown-discovery": (None, None, None, "discovery"),
    "unknown-local": (None, None, None, "local"),
    "unknown-none": (None, None, None, "none"),
}


def render(case: str, loader: str) -> str:
    """The text ``loader`` gets for ``case``, or ``ERROR: ...``."""
    h, profile, export, unknown = CASES[case]
    if loader in ("ipxe", "grub-http"):
        ctx = policy.BootContext(base_url=BASE, san_server=SAN, unknown_delay=7,
                                 unknown_host=unknown)
        make = policy.ipxe_script if loader == "ipxe" else policy.grub_config
        script = make(MAC, h, profile, export, ctx)
        return f"outcome={script.outcome}\n{script.text}"
    kind = {"grub-tftp": "grub", "pxelinux": "pxelinux", "ipxe-tftp": "ipxe",
            "ipxe-tftp-alone": "ipxe"}[loader]
    base = None if loader == "ipxe-tftp-alone" else BASE  # TFTP without tftp.http_base_url
    try:
        boot = tftp_render.plan(MAC, h, profile, export, http_base_url=base, unknown_host=unknown)
        return tftp_render.render(kind, boot, base)
    except tftp_render.RenderError as exc:
        return f"ERROR: {exc}\n"
