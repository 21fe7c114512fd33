"""``bootyard discovered list|show|rm``, ``bootyard host adopt`` and ``host show``'s hardware,
the hardware report's shape, discovery rules and the discovery boot plan."""

from __future__ import annotations

import json

import pytest
from enlistkit import MAC, REPORT

from shared import bootcontext, bootplan, discovery, hardware
from shared.schema import KINDS
from shared.validation import parse_record

HW = hardware.dumps(hardware.check(REPORT))


def _discovered(raw, mac: str = MAC) -> None:
    raw.hset(KINDS["discovered"].key(mac), mapping={
        "ip": "198.18.5.120", "first_seen": "1764950000", "last_seen": "1764950100",
        "reports": "1", "hw": HW})


def test_list_show_and_rm_of_discovered_machines(cli, raw):
    _discovered(raw)
    code, out, err = cli("discovered", "list")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:4] == ["MAC", "IP", "VENDOR", "PRODUCT"]
    assert row.startswith(MAC) and "LAB-0042" in row and "vda:3.0G" in row
    code, out, _ = cli("discovered", "list", "--json")
    assert json.loads(out)[MAC]["hw"]["disks"][0]["size_bytes"] == 3221225472 + 4096
    code, out, _ = cli("discovered", "show", MAC.replace(":", "-"))
    assert code == 0 and "disk      vda  3221229568 bytes" in out
    assert f"nic       eth0  {MAC}  link up  virtio_net" in out
    assert f"bootyard host adopt {MAC} --profile NAME" in out
    code, out, _ = cli("discovered", "rm", MAC)
    assert code == 0 and f"removed discovered {MAC}" in out
    assert not raw.exists(KINDS["discovered"].key(MAC))
    code, _, err = cli("discovered", "show", MAC)
    assert code == 1 and f"no discovered {MAC}" in err


def test_adopt_makes_a_host_with_the_hardware_and_records_it(cli, raw):
    _discovered(raw)
    code, _, err = cli("host", "adopt", MAC, "--profile", "missing")
    assert code == 1 and "no such profile" in err  # the host checks run on adoption
    assert raw.exists(KINDS["discovered"].key(MAC))
    assert cli("profile", "add", "live", "--kernel", "vmlinuz", "--root-image",
               "root.squashfs")[0] == 0
    code, out, err = cli("host", "adopt", MAC, "--profile", "live", "--hostname", "node7",
                         "--boot-mode", "live", "--tag", "rack1")
    assert code == 0, err
    assert f"adopted {MAC}" in out
    host = raw.hgetall(KINDS["host"].key(MAC))
    assert host["profile"] == "live" and host["hostname"] == "node7"
    assert host["boot_mode"] == "live" and host["tags"] == "rack1"
    assert json.loads(host["hw"]) == json.loads(HW)
    assert not raw.exists(KINDS["discovered"].key(MAC))
    code, out, _ = cli("host", "show", MAC)
    assert code == 0 and "disk      vda  3221229568 bytes (3.0G)  serial disk-1" in out
    code, out, _ = cli("history", "--host", MAC)
    assert "add  bootyard:host:" + MAC in out
    code, out, _ = cli("events", "--host", MAC, "--kind", "discovery.adopted")
    assert "discovery.adopted" in out and "profile=live" in out
    code, _, err = cli("host", "adopt", MAC, "--profile", "live")
    assert code == 1 and f"no discovered machine {MAC}" in err


def test_discovery_rules_are_an_inventory_kind_with_checked_fields(cli, raw):
    code, _, err = cli("discovery-rule", "add", "dell", "--match", "vendor", "--profile", "x")
    assert code == 1 and "write PATH=GLOB" in err
    code, _, err = cli("discovery-rule", "add", "dell", "--match", "dmi.vendor=Dell*",
                       "--profile", "nosuch")
    assert code == 1 and "no such profile" in err
    cli("profile", "add", "node", "--kernel", "vmlinuz")
    code, _, err = cli("discovery-rule", "add", "dell", "--match", "dmi.vendor=Dell*",
                       "--profile", "node", "--hostname", "rack1-{n}")
    assert code == 0, err
    code, out, _ = cli("discovery-rule", "list")
    assert "dmi.vendor=Dell*" in out and "rack1-{n}" in out
    code, _, err = cli("profile", "rm", "node")  # the rule still names it
    assert code == 1 and "discovery_rule:dell" in err


def test_hardware_reports_are_checked_member_by_member():
    assert hardware.check(REPORT)["nics"][0]["mac"] == MAC
    for bad, why in (({"cpus": -1}, "cpus"), ({"cpus": True}, "cpus"),
                     ({"firmware": "coreboot"}, "firmware"), ({"dmi": {"vendor": 5}}, "dmi.vendor"),
                     ({"nics": [{"mac": "zz"}]}, "nics[0].mac"),
                     ({"disks": [{"name": "a" * 40}]}, "disks[0].name"),
                     ({"disks": [{"name": "sda"}] * 65}, "more than 64"),
                     ({"dmi": {"serial": "x\n"}}, "printable")):
        with pytest.raises(hardware.HardwareError, match=why.replace("[", r"\[")):
            hardware.check(bad)
    record, problems = parse_record(KINDS["host"], MAC, {"hw": "[1]"})
    assert record is None and "expected an object" in problems[0].reason


def test_the_install_disk_is_in_every_template_context():
    host, _ = parse_record(KINDS["host"], MAC, {"hw": HW, "profile": "p"})
    profile, _ = parse_record(KINDS["profile"], "p", {
        "kernel": "vmlinuz", "cmdline": "root=/dev/{{ hw.disks[0].name }}2"})
    plan = bootplan.plan(MAC, host, profile, None, bootplan.Facts(base_url="http://s"))
    assert plan.args[-1] == "root=/dev/vda2"
    context = bootcontext.template_context(MAC, host, profile, None, "http://s", url_token=None,
                                           done_token="t")
    assert context["hw"]["disks"][0]["name"] == "vda" and context["host"]["hw"]["cpus"] == 2


def test_discovery_plan_refuses_what_cannot_go_into_a_script():
    facts = bootplan.Facts(base_url="http://s", discovery=bootplan.Discovery(
        cmdline="console=ttyS0 $(reboot)"))
    plan = bootplan.discovery_plan(MAC, facts)
    assert plan.outcome == "error" and "discovery.cmdline" in plan.reason
    plan = bootplan.plan(MAC, None, None, None, bootplan.Facts(base_url="http://s"))
    assert plan.outcome == "unknown"  # discovery off: the unknown-host action as before
    assert bootplan.discovery_url("http://s/") == "http://s/boot/discovery.ipxe?mac=${mac}"


def test_rule_host_names_fill_placeholders_and_count():
    hw = hardware.check(REPORT)
    assert discovery.hostname_for("node-{serial}", MAC, hw, set()) == "node-lab-0042"
    assert discovery.hostname_for("n{n}", MAC, hw, {"n1", "n2"}) == "n3"
    with pytest.raises(discovery.AdoptionError, match="no serial"):
        discovery.hostname_for("node-{serial}", MAC, {}, set())


def test_validate_warns_of_a_discovered_mac_that_is_a_host_too(cli, raw):
    _discovered(raw)
    assert cli("host", "add", MAC, "--boot-mode", "local")[0] == 0
    code, out, err = cli("validate")
    assert code == 0
    assert f"bootyard:discovered:{MAC}" in out + err and "is a host too" in out + err
