"""Redfish power control against a Redfish mock (redfish_mock.py: the DMTF resources, session
and basic authentication, allowable reset types, the boot override) whose ComputerSystem is a
QEMU machine: `bootyard power on|status|cycle|off` start and stop it, with the reset types the
BMC allows, the one-time PXE override before a power-on, and clear errors."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
from powerkit import MAC, mock_requests, wait_vm

pytestmark = [pytest.mark.slow]


def add_host(cli, bmc, *extra, password=None):
    code, _out, err = cli("host", "add", MAC, "--boot-mode", "local", "--power", "redfish",
                          "--power-address", bmc.address, "--power-user", bmc.user,
                          "--power-secret", password or bmc.password, *extra)
    assert code == 0, err


def resets(bmc) -> list[str]:
    return [r["body"]["ResetType"] for r in mock_requests(bmc)
            if r["path"].endswith("ComputerSystem.Reset")]


def test_redfish_on_status_cycle_off_start_and_stop_the_vm(cli, redfish_bmc):
    # a BMC without ForceRestart: a cycle falls back to PowerCycle
    bmc = redfish_bmc(allow="On,ForceOff,GracefulShutdown,PowerCycle,Nmi")
    add_host(cli, bmc)
    code, out, err = cli("power", "status", MAC)
    assert (code, out.split()[:5]) == (0, [MAC, "redfish", "status", "ok", "off"]), out + err
    assert "PowerState Off" in out

    code, out, err = cli("power", "on", MAC)
    assert code == 0, err
    assert out.split()[3:5] == ["ok", "on"] and "ResetType On" in out, out
    wait_vm(bmc.vm.running, "the VM powered on through Redfish")
    assert bmc.vm.boot_order() == "n"  # the Pxe/Once override, used by this boot
    requests = mock_requests(bmc)
    patch = next(i for i, r in enumerate(requests) if r["method"] == "PATCH")
    post = next(i for i, r in enumerate(requests) if r["path"].endswith("Reset"))
    assert patch < post
    assert requests[patch]["body"] == {"Boot": {"BootSourceOverrideTarget": "Pxe",
                                                "BootSourceOverrideEnabled": "Once"}}
    # session authentication: a token on every request after the login, the session deleted
    assert all(r["token"] for r in requests if r["path"].startswith("/redfish/v1/Systems"))
    assert any(r["method"] == "DELETE" and "/Sessions/" in r["path"] for r in requests)

    code, out, _ = cli("power", "status", MAC)
    assert out.split()[3:5] == ["ok", "on"], out
    first = bmc.vm.pid()
    code, out, err = cli("power", "cycle", MAC)
    assert code == 0, err
    assert "ResetType PowerCycle" in out, out
    wait_vm(lambda: bmc.vm.pid() not in (None, first), "the VM restarted by PowerCycle")
    assert resets(bmc) == ["On", "PowerCycle"]  # ForceRestart is not allowed: never sent

    code, out, err = cli("power", "off", MAC)
    assert (code, out.split()[3:5]) == (0, ["ok", "off"]), out + err
    wait_vm(lambda: not bmc.vm.running(), "the VM powered off through Redfish")
    assert resets(bmc)[-1] == "ForceOff"
    code, out, _ = cli("power", "off", MAC)
    assert out.split()[3] == "already", out

    code, out, _ = cli("events", "--host", MAC, "--kind", "power.result")
    assert "method=redfish" in out and "pxe=once" in out and bmc.password not in out


def test_redfish_action_info_and_basic_auth(cli, redfish_bmc):
    """Allowable values in an ActionInfo resource, and HTTP basic authentication."""
    bmc = redfish_bmc(allow="ForceOn,ForceOff,ForceRestart", action_info=True)
    add_host(cli, bmc, "--power-auth", "basic")
    code, out, err = cli("power", "on", MAC, "--no-pxe")
    assert code == 0, out + err
    assert "ResetType ForceOn" in out, out  # On is not allowed: ForceOn
    wait_vm(bmc.vm.running, "the VM powered on")
    assert bmc.vm.boot_order() == "c"
    requests = mock_requests(bmc)
    assert not any(r["path"].endswith("Sessions") for r in requests)
    assert all(r["basic"] for r in requests if r["path"].startswith("/redfish/v1/Systems"))
    assert not any(r["method"] == "PATCH" for r in requests)  # --no-pxe
    code, out, _ = cli("power", "cycle", MAC)
    assert "ResetType ForceRestart" in out, out


def test_redfish_errors_name_host_bmc_and_reason(cli, redfish_bmc):
    bmc = redfish_bmc(allow="On,ForceOff")
    add_host(cli, bmc, password="wrong-password")
    code, out, err = cli("power", "status", MAC)
    assert code == 1
    assert out.split()[3] == "failed"
    assert f"host {MAC} (BMC {bmc.address})" in out and "refused a session for 'root'" in out
    assert "wrong-password" not in out + err

    assert cli("host", "set", MAC, "--power-secret", bmc.password)[0] == 0
    code, out, _ = cli("power", "cycle", MAC)  # off, so a cycle powers on: On is allowed
    assert code == 0, out
    wait_vm(bmc.vm.running, "the VM powered on by a cycle of an off machine")
    code, out, _ = cli("power", "cycle", MAC)  # on: no restart type is allowed
    assert code == 1 and out.split()[3] == "unsupported", out
    assert "no reset type for cycle among those the BMC allows (On, ForceOff)" in out

    assert cli("host", "set", MAC, "--power-address", "127.0.0.1:9")[0] == 0
    code, out, _ = cli("power", "status", MAC)
    assert code == 1 and "cannot reach the BMC" in out and "(BMC 127.0.0.1:9)" in out, out


def test_redfish_tls_is_verified_unless_the_host_says_not(cli, redfish_bmc, tmp_path):
    cert, key = tmp_path / "bmc.crt", tmp_path / "bmc.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    bmc = redfish_bmc(tls=(cert, key))
    add_host(cli, bmc)
    code, out, _ = cli("power", "status", MAC)
    assert code == 1 and "TLS certificate is not trusted" in out, out
    assert "power_verify_tls no" in out
    assert cli("host", "set", MAC, "--power-verify-tls", "no")[0] == 0
    code, out, _ = cli("power", "status", MAC)
    assert code == 0 and out.split()[3:5] == ["ok", "off"], out


def test_many_hosts_at_once_within_the_concurrency_bound(cli, redfish_bmc, monkeypatch):
    """Six hosts behind one BMC (each host's action is one session), power.concurrency 2: every
    host answered, never more than 2 sessions open at once."""
    bmc = redfish_bmc()
    macs = [f"52:54:00:5e:01:{i:02x}" for i in range(6)]
    for mac in macs:
        code, _out, err = cli("host", "add", mac, "--boot-mode", "local", "--tags", "rack9",
                              "--power", "redfish", "--power-address", bmc.address,
                              "--power-user", bmc.user, "--power-secret", bmc.password)
        assert code == 0, err
    monkeypatch.setenv("BOOTYARD_POWER__CONCURRENCY", "2")
    code, out, err = cli("power", "status", "--tag", "rack9")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()] == macs
    assert all(line.split()[3:5] == ["ok", "off"] for line in out.splitlines()), out
    assert "6 hosts: 6 ok" in err
    with urllib.request.urlopen(f"{bmc.address}/mock/requests", timeout=10) as resp:
        seen = json.loads(resp.read())
    assert 1 <= seen["most_sessions"] <= 2 and seen["sessions"] == 0
