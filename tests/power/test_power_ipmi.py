"""IPMI power control against OpenIPMI's BMC simulator (ipmi_sim, on loopback) whose chassis
power really starts and stops a QEMU machine: `bootyard power on|status|cycle|off`, the one-time
PXE boot device, a wrong password, and what the timeline, the history and the outputs show
(never the password)."""

from __future__ import annotations

import json
import re

import pytest
import redis
from powerkit import MAC, wait_vm

pytestmark = [pytest.mark.slow]


def add_host(cli, bmc, password=None, mac=MAC):
    code, _out, err = cli("host", "add", mac, "--hostname", "node1", "--boot-mode", "local",
                          "--power", "ipmi", "--power-address", bmc.address, "--power-user",
                          bmc.user, "--power-secret", password or bmc.password)
    assert code == 0, err


def test_ipmi_power_on_status_cycle_off_start_and_stop_the_vm(cli, ipmi_bmc, redis_url):
    bmc = ipmi_bmc
    add_host(cli, bmc)
    code, out, err = cli("power", "status", MAC)
    assert code == 0, err
    assert out.split()[:5] == [MAC, "ipmi", "status", "ok", "off"], out
    assert not bmc.vm.running()

    code, out, err = cli("power", "on", MAC)
    assert code == 0, err
    assert out.split()[:5] == [MAC, "ipmi", "on", "ok", "on"], out
    assert "bootdev pxe" in out
    wait_vm(bmc.vm.running, "the VM started by chassis power on")
    assert bmc.vm.boot_order() == "n"  # the one-time PXE boot the BMC was asked for
    first = bmc.vm.pid()

    code, out, err = cli("power", "status", MAC)
    assert (code, out.split()[3:5]) == (0, ["ok", "on"]), out + err
    code, out, err = cli("power", "on", MAC)  # already on: nothing done
    assert (code, out.split()[3]) == (0, "already"), out + err
    assert bmc.vm.pid() == first

    code, out, err = cli("power", "cycle", MAC, "--no-pxe")
    assert code == 0, err
    assert "chassis power cycle" in out
    wait_vm(lambda: bmc.vm.pid() not in (None, first), "the VM restarted by the power cycle")
    assert bmc.vm.boot_order() == "c"  # --no-pxe: the BMC was not asked for a PXE boot

    code, out, err = cli("power", "off", MAC)
    assert (code, out.split()[3:5]) == (0, ["ok", "off"]), out + err
    wait_vm(lambda: not bmc.vm.running(), "the VM stopped by chassis power off")
    code, out, err = cli("power", "status", MAC)
    assert out.split()[3:5] == ["ok", "off"], out

    # the timeline and the history have each action; the password is nowhere
    code, out, _ = cli("events", "--host", MAC, "--kind", "power")
    assert code == 0
    kinds = re.findall(r" (power\.\w+) ", out)
    assert kinds.count("power.request") == kinds.count("power.result") == 7, out
    assert "method=ipmi" in out and "outcome=ok" in out and f"bmc={bmc.address}" in out
    code, out, _ = cli("history", "--host", MAC)
    assert out.count("  power  ") == 7, out
    assert "action=cycle" in out and "outcome=ok" in out
    raw = redis.Redis.from_url(redis_url)
    try:
        for key in (b"bootyard:events", f"bootyard:events:{MAC}".encode(), b"bootyard:audit"):
            assert bmc.password.encode() not in repr(raw.xrange(key)).encode(), key
    finally:
        raw.close()
    for argv in (("host", "show", MAC), ("host", "show", MAC, "--json"),
                 ("host", "list", "--json"), ("export",), ("history", "--json")):
        code, out, _ = cli(*argv)
        assert bmc.password not in out, argv
    code, out, _ = cli("host", "show", MAC, "--json", "--show-secrets")
    assert json.loads(out)["fields"]["power_secret"] == bmc.password


def test_ipmi_wrong_password_is_a_clear_error(cli, ipmi_bmc):
    add_host(cli, ipmi_bmc, password="not-the-password")
    code, out, err = cli("power", "on", MAC)
    assert code == 1
    assert out.split()[:4] == [MAC, "ipmi", "on", "failed"], out
    assert f"host {MAC} (BMC {ipmi_bmc.address})" in out
    assert "refused the user name or password" in out
    assert "not-the-password" not in out + err
    assert not ipmi_bmc.vm.running()
    code, out, _ = cli("events", "--host", MAC, "--kind", "power.result")
    assert "reason=auth_refused" in out and "outcome=failed" in out


def test_several_hosts_at_once_one_line_each(cli, ipmi_bmc):
    add_host(cli, ipmi_bmc)
    code, _out, err = cli("host", "set", MAC, "--tags", "rack7")
    other = "52:54:00:5e:00:02"  # no power control: its own line says so
    assert cli("host", "add", other, "--tags", "rack7", "--boot-mode", "local")[0] == 0
    code, out, err = cli("power", "status", "--tag", "rack7")
    assert code == 1
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines[MAC].split()[:4] == ["ipmi", "status", "ok", "off"]
    assert lines[other].split()[2] == "failed" and "no power control set" in lines[other]
    assert "2 hosts: 1 failed, 1 ok" in err
