"""Boot-script policy: whole expected iPXE scripts and GRUB configs per boot mode, as text."""

from __future__ import annotations

import dataclasses

import pytest

from services.http.policy import BootContext, grub_config, image_url, initrd_names, ipxe_script
from shared.records import Export, Host, Profile

MAC = "52:54:00:12:34:56"
CTX = BootContext(base_url="http://10.0.0.1:8080", san_server="10.0.0.1", unknown_delay=7)
DEBIAN = Profile(name="debian12", kernel="debian/linux",
                 initrd=("debian/initrd.gz", "extra/firmware.cpio.gz"),
                 cmdline="auto=true priority=critical", install="preseed")
LIVE = Profile(name="live", kernel="live/vmlinuz", initrd=("live/initrd.img",),
               root_image="live/root.squashfs", live_style="dracut", cmdline="rw")
ISCSI = Export(name="web1-root", kind="iscsi", backing="/srv/web1.img",
               iqn="iqn.2026-11.org.example:web1", lun=1)
AOE = Export(name="web1-aoe", kind="aoe", backing="/srv/web1.img", aoe_shelf=0, aoe_slot=1)


def host(**kw) -> Host:
    base = dict(mac=MAC, hostname="web1", ip="10.0.0.21", profile="debian12")
    base.update(kw)
    return Host(**base)


FAILED = """:failed
echo bootyard: web1 (52:54:00:12:34:56): {mode} failed: ${{errno}}
sleep 10
exit
"""


def test_install_script_names_every_initrd_on_the_command_line():
    script = ipxe_script(MAC, host(), DEBIAN, None, CTX)
    assert script.outcome == "install"
    assert script.text == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode install
echo bootyard: web1 (52:54:00:12:34:56): install debian12
kernel http://10.0.0.1:8080/images/debian/linux initrd=initrd.gz initrd=firmware.cpio.gz \
auto=true priority=critical || goto failed
initrd --name initrd.gz http://10.0.0.1:8080/images/debian/initrd.gz || goto failed
initrd --name firmware.cpio.gz http://10.0.0.1:8080/images/extra/firmware.cpio.gz || goto failed
boot || goto failed
""" + FAILED.format(mode="install")


def test_live_dracut_and_rooturl_styles():
    dracut = ipxe_script(MAC, host(boot_mode="live", profile="live"), LIVE, None, CTX)
    assert dracut.text == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile live boot mode live
echo bootyard: web1 (52:54:00:12:34:56): live live
kernel http://10.0.0.1:8080/images/live/vmlinuz initrd=initrd.img \
root=live:http://10.0.0.1:8080/images/live/root.squashfs ip=dhcp rd.neednet=1 \
bootyard.booted=http://10.0.0.1:8080/booted/52:54:00:12:34:56 rw || goto failed
initrd --name initrd.img http://10.0.0.1:8080/images/live/initrd.img || goto failed
boot || goto failed
""" + FAILED.format(mode="live")
    busybox = dataclasses.replace(LIVE, live_style="rooturl", cmdline="")
    text = ipxe_script(MAC, host(boot_mode="live", profile="live"), busybox, None, CTX).text
    assert "kernel http://10.0.0.1:8080/images/live/vmlinuz initrd=initrd.img " \
           "rooturl=http://10.0.0.1:8080/images/live/root.squashfs ip=dhcp " \
           "bootyard.booted=http://10.0.0.1:8080/booted/52:54:00:12:34:56 || goto failed\n" in text


def test_netroot_iscsi_aoe_and_ibft():
    profile = dataclasses.replace(LIVE, name="diskless", export="web1-root", cmdline="ro")
    iscsi = ipxe_script(MAC, host(boot_mode="netroot"), profile, ISCSI, CTX)
    assert iscsi.text == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode netroot
echo bootyard: web1 (52:54:00:12:34:56): netroot diskless
kernel http://10.0.0.1:8080/images/live/vmlinuz initrd=initrd.img \
netroot=iscsi:10.0.0.1:::1:iqn.2026-11.org.example:web1 \
rd.iscsi.initiator=iqn.2026-11.org.bootyard:web1 ip=dhcp rd.neednet=1 \
bootyard.booted=http://10.0.0.1:8080/booted/52:54:00:12:34:56 ro || goto failed
initrd --name initrd.img http://10.0.0.1:8080/images/live/initrd.img || goto failed
boot || goto failed
""" + FAILED.format(mode="netroot")
    bare = dataclasses.replace(profile, cmdline="")
    aoe = ipxe_script(MAC, host(boot_mode="netroot"), bare, AOE, CTX)
    assert "initrd=initrd.img root=/dev/etherd/e0.1 netroot=aoe:e0.1 rd.neednet=1 ip=dhcp " \
           "bootyard.booted=http://10.0.0.1:8080/booted/52:54:00:12:34:56 || goto failed\n" in aoe.text
    ibft = ipxe_script(MAC, host(boot_mode="netroot", vars={"iscsi": "ibft"}), bare, ISCSI,
                       CTX)
    assert ("set initiator-iqn iqn.2026-11.org.bootyard:web1\n"
            "sanhook iscsi:10.0.0.1:::1:iqn.2026-11.org.example:web1 || goto failed\n"
            "kernel http://10.0.0.1:8080/images/live/vmlinuz initrd=initrd.img "
            "rd.iscsi.firmware=1 rd.iscsi.ibft=1 netroot=iscsi:ibft "
            "bootyard.booted=http://10.0.0.1:8080/booted/52:54:00:12:34:56 || goto failed\n") in ibft.text


def test_sanboot_iscsi_sets_initiator_and_aoe():
    profile = dataclasses.replace(DEBIAN, export="web1-root")
    iscsi = ipxe_script(MAC, host(boot_mode="sanboot"), profile, ISCSI, CTX)
    assert iscsi.outcome == "sanboot"
    assert iscsi.text == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode sanboot
echo bootyard: web1 (52:54:00:12:34:56): sanboot web1-root
set initiator-iqn iqn.2026-11.org.bootyard:web1
sanboot iscsi:10.0.0.1:::1:iqn.2026-11.org.example:web1 || goto failed
""" + FAILED.format(mode="sanboot")
    custom = host(boot_mode="sanboot", hostname=None, vars={})
    text = ipxe_script(MAC, custom, profile, AOE, CTX).text
    assert "sanboot aoe:e0.1 || goto failed\n" in text and "initiator-iqn" not in text
    assert "iqn.2026-11.org.bootyard:525400123456" in ipxe_script(
        MAC, custom, profile, ISCSI, CTX).text


def test_local_disabled_and_unknown():
    assert ipxe_script(MAC, host(boot_mode="local"), DEBIAN, None, CTX).text == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode local
echo bootyard: web1 (52:54:00:12:34:56): booting from the local disk
exit
"""
    disabled = ipxe_script(MAC, host(enabled=False), DEBIAN, None, CTX)
    assert disabled.outcome == "disabled"
    assert disabled.text == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode install
echo bootyard: web1 (52:54:00:12:34:56) is disabled in the inventory; booting the next device
exit
"""
    unknown = ipxe_script(MAC, None, None, None, CTX)
    assert unknown.outcome == "unknown"
    assert unknown.text == """#!ipxe
# bootyard: unknown host 52:54:00:12:34:56
echo bootyard: this machine (52:54:00:12:34:56) is not in the inventory; it has been recorded.
echo bootyard: to deploy it: bootyard host add 52:54:00:12:34:56 --profile NAME
imgfetch --name bootyard-discover http://10.0.0.1:8080/boot/discover?mac=52:54:00:12:34:56\
&arch=${buildarch}&platform=${platform}&manufacturer=${manufacturer:uristring}\
&product=${product:uristring}&serial=${serial:uristring}&uuid=${uuid} \
&& imgfree bootyard-discover || echo bootyard: could not report this machine's details
sleep 7
exit
"""
    quiet = dataclasses.replace(CTX, unknown_host="exit")
    assert ipxe_script(MAC, None, None, None, quiet).text == \
        "#!ipxe\n# bootyard: unknown host 52:54:00:12:34:56\nexit\n"


@pytest.mark.parametrize("mode,profile,export,reason", [
    ("install", None, None, "no profile (host profile=debian12)"),
    ("install", dataclasses.replace(DEBIAN, kernel=None), None, "profile debian12 has no kernel"),
    ("live", DEBIAN, None, "profile debian12 has no root_image for live boot"),
    ("sanboot", DEBIAN, None, "profile debian12 names no usable block export (export=unset)"),
    ("netroot", DEBIAN, None, "profile debian12 names no usable block export (export=unset)"),
])
def test_misconfigured_hosts_say_why(mode, profile, export, reason):
    script = ipxe_script(MAC, host(boot_mode=mode), profile, export, CTX)
    assert script.outcome == "error" and script.reason == reason
    assert script.text == f"""#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode {mode}
echo bootyard: web1 (52:54:00:12:34:56) cannot boot: {reason}
echo bootyard: fix the inventory (bootyard validate), then reboot this machine
sleep 10
exit
"""


def test_grub_config_for_uefi_http_boot():
    text = grub_config(MAC, host(), DEBIAN, None, CTX).text
    assert text == """# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode install
set timeout=0
set default=0
menuentry 'bootyard: install debian12 on web1 (52:54:00:12:34:56)' {
    echo 'bootyard: loading the kernel'
    linux (http,10.0.0.1:8080)/images/debian/linux auto=true priority=critical
    echo 'bootyard: loading the initrd'
    initrd (http,10.0.0.1:8080)/images/debian/initrd.gz \
(http,10.0.0.1:8080)/images/extra/firmware.cpio.gz
}
"""
    san = grub_config(MAC, host(boot_mode="sanboot"), DEBIAN, ISCSI, CTX)
    assert san.outcome == "error" and "GRUB cannot boot from AoE/iSCSI" in san.text
    assert grub_config(MAC, host(boot_mode="local"), DEBIAN, None, CTX).text.endswith("exit\n")
    odd_profile = dataclasses.replace(DEBIAN, cmdline="console=ttyS0 x=a;b y='q'")
    odd = grub_config(MAC, host(), odd_profile, None, CTX).text
    assert "linux (http,10.0.0.1:8080)/images/debian/linux console=ttyS0 'x=a;b' " \
           "'y='\\''q'\\'''\n" in odd


def test_urls_and_initrd_names():
    assert image_url("http://s", "https://elsewhere/k") == "https://elsewhere/k"
    assert image_url("http://s", "/a+b/k") == "http://s/images/a+b/k"
    with pytest.raises(ValueError, match="without spaces"):
        image_url("http://s", "/a b/k")
    assert initrd_names(("a/initrd.gz", "b/initrd.gz", "http://x/y/")) == \
        ["initrd.gz", "1-initrd.gz", "initrd2"]
