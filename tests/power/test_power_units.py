"""The pure parts of power control: host settings, the magic packet, what ipmitool's answers
mean, which Redfish reset type is chosen; and the secret (power_secret) kept out of every output
of the CLI, the history and the templates."""

from __future__ import annotations

import io
import json

import pytest
import redis
from powerkit import MAC

from shared import power, power_ipmi, power_redfish
from shared.records import plain
from shared.schema import KINDS
from shared.validation import parse_record

HOST = KINDS["host"]


def host(**fields):
    record, problems = parse_record(HOST, MAC, fields)
    assert record is not None, problems
    return record


# ---------------------------------------------------------------- host settings

def test_targets_from_host_records():
    t = power.target(host(power="redfish", power_address="bmc7.example:8443",
                          power_user="root", power_secret="s3cret"))
    assert (t.scheme, t.host, t.port, t.base_url()) == (
        "https", "bmc7.example", 8443, "https://bmc7.example:8443")
    assert "s3cret" not in repr(t)
    t = power.target(host(power="redfish", power_address="http://10.0.0.5"))
    assert t.base_url() == "http://10.0.0.5" and t.verify_tls
    t = power.target(host(power="ipmi", power_address="[fd00::5]:1623"))
    assert (t.host, t.port) == ("fd00::5", 1623)
    t = power.target(host(power="wol"))
    assert t.wol_mac == MAC and t.interface is None
    with pytest.raises(power.PowerError, match="no power control set") as err:
        power.target(host())
    assert err.value.reason == "not_configured"


@pytest.mark.parametrize("fields, field, reason", [
    ({"power": "ipmi"}, "power_address", "needs the BMC's address"),
    ({"power": "ipmi", "power_address": "https://bmc"}, "power_address", "not a URL"),
    ({"power": "redfish", "power_address": "ftp://bmc"}, "power_address", "https:// or http://"),
    ({"power": "redfish", "power_address": "https://bmc/redfish/v1"}, "power_address",
     "not a path"),
    ({"power": "redfish", "power_address": "bmc:99999"}, "power_address", "between 1 and"),
    ({"power": "smoke-signals"}, "power", "one of wol, ipmi, redfish"),
    ({"power_system": "/Systems/1"}, "power_system", "/redfish/v1/Systems/1"),
    ({"power_mac": "zz"}, "power_mac", ""),
    ({"power_interface": "eth0; rm"}, "power_interface", "interface name"),
    ({"power_secret": "two\nlines"}, "power_secret", "single line"),
])
def test_bad_power_settings_name_the_field(fields, field, reason):
    record, problems = parse_record(HOST, MAC, fields)
    assert record is None
    assert any(p.field == field and reason in p.reason for p in problems), problems
    if field == "power_secret":  # a refused secret is not printed either
        assert all("two" not in str(p) for p in problems)


def test_wol_only_on_deploy_interfaces():
    t = power.target(host(power="wol"))
    assert power.wol_interfaces(t, ("eth0", "eth1")) == ("eth0", "eth1")
    t = power.target(host(power="wol", power_interface="eth1"))
    assert power.wol_interfaces(t, ("eth0", "eth1")) == ("eth1",)
    with pytest.raises(power.PowerError, match="refused on interface 'eth1'"):
        power.wol_interfaces(t, ("eth0",))
    with pytest.raises(power.PowerError, match="no deploy interface is configured"):
        power.wol_interfaces(t, ())


def test_magic_packet_round_trip():
    packet = power.magic_packet(MAC)
    assert len(packet) == 102 and packet[:6] == b"\xff" * 6
    assert packet[6:12] == bytes.fromhex(MAC.replace(":", ""))
    frame = bytes(14) + b"\x45" + bytes(27) + packet  # inside an Ethernet/IP/UDP frame
    assert power.find_magic(frame) == MAC
    assert power.find_magic(b"\xff" * 7 + packet) == MAC  # the sync run is found in longer ones
    assert power.find_magic(packet[:-1]) is None
    assert power.find_magic(b"\xff" * 102) is None
    broken = bytearray(packet)
    broken[50] ^= 1
    assert power.find_magic(bytes(broken)) is None


# ---------------------------------------------------------------- IPMI

def test_ipmitool_command_keeps_the_password_off_its_command_line():
    t = power.target(host(power="ipmi", power_address="10.1.2.3", power_user="admin",
                          power_secret="pw-x"))
    argv = power_ipmi.command(t, "power", "on")
    assert argv[:3] == ["ipmitool", "-I", "lanplus"] and argv[-3:] == ["chassis", "power", "on"]
    assert "-E" in argv and "pw-x" not in argv
    assert argv[argv.index("-p") + 1] == "623" and argv[argv.index("-C") + 1] == "3"
    assert power_ipmi.environment(t)["IPMI_PASSWORD"] == "pw-x"


@pytest.mark.parametrize("output, reason", [
    ("> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session",
     "auth_refused"),
    ("RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2",
     "auth_refused"),
    ("Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities "
     "request\nError: Unable to establish IPMI v2 / RMCP+ session", "unreachable"),
    ("Address lookup for bmc.invalid failed\nCould not open socket!", "unreachable"),
    ("Error: Unable to establish IPMI v2 / RMCP+ session", "unreachable"),
    ("Set Chassis Power Control to Up/On failed: Invalid data field in request", "bmc_error"),
])
def test_ipmitool_failures_are_classified(output, reason):
    assert power_ipmi.classify(output)[0] == reason


def test_ipmitool_status():
    assert power_ipmi.parse_status("Chassis Power is on\n") == "on"
    assert power_ipmi.parse_status("Loading IANA PEN Registry...\nChassis Power is off") == "off"
    assert power_ipmi.parse_status("something else") is None


# ---------------------------------------------------------------- Redfish

def test_redfish_reset_type_choice_and_fallback():
    assert power_redfish.choose_resets("on", "off", None) == ["On", "ForceOn", "PushPowerButton"]
    assert power_redfish.choose_resets("on", "off", ["ForceOn", "ForceOff"]) == ["ForceOn"]
    assert power_redfish.choose_resets("off", "on", ["On", "GracefulShutdown"]) == [
        "GracefulShutdown"]
    assert power_redfish.choose_resets("cycle", "on", ["On", "ForceOff", "PowerCycle"]) == [
        "PowerCycle"]
    assert power_redfish.choose_resets("cycle", "off", ["On", "ForceRestart"]) == ["On"]
    assert power_redfish.choose_resets("cycle", "on", ["On", "ForceOff"]) == []


def test_redfish_resources_are_read_as_the_schema_says():
    system = {"PowerState": "PoweringOn", "Boot": {
        "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Hdd"]},
        "Actions": {"#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            "@Redfish.ActionInfo": "/redfish/v1/Systems/1/ResetActionInfo"}}}
    assert power_redfish.power_state(system) == "on"
    assert power_redfish.power_state({"PowerState": "Off"}) == "off"
    assert power_redfish.boot_override(system) is None  # no Pxe among the allowable targets
    assert power_redfish.boot_override({}) == {"Boot": {"BootSourceOverrideTarget": "Pxe",
                                                        "BootSourceOverrideEnabled": "Once"}}
    action = power_redfish.reset_action(system)
    assert power_redfish.allowed_resets(action) is None
    info = {"Parameters": [{"Name": "ResetType", "AllowableValues": ["On", "ForceOff"]}]}
    assert power_redfish.allowed_resets(action, info) == ("On", "ForceOff")
    assert power_redfish.system_path({"Members": [{"@odata.id": "/redfish/v1/Systems/a"}]},
                                     None) == "/redfish/v1/Systems/a"
    with pytest.raises(ValueError, match="set power_system"):
        power_redfish.system_path({"Members": [{"@odata.id": "/a"}, {"@odata.id": "/b"}]}, None)
    assert power_redfish.error_text(400, {"error": {"message": "x", "@Message.ExtendedInfo": [
        {"Message": "The value Foo is not in the list"}]}}) == \
        "HTTP 400: The value Foo is not in the list"


# ---------------------------------------------------------------- the secret

def test_the_secret_is_never_printed_without_asking(cli, redis_url, monkeypatch, tmp_path):
    secret = "pw-9f8e7d"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    code, _out, err = cli("host", "add", MAC, "--power", "ipmi", "--power-address", "10.9.9.9",
                          "--power-user", "admin", "--power-secret", "-", "--boot-mode", "local")
    assert code == 0, err
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert raw.hget(f"bootyard:host:{MAC}", "power_secret") == secret  # read from stdin
        for argv in (("host", "show", MAC), ("host", "show", MAC, "--yaml"),
                     ("host", "list", "--json"), ("export",), ("history",),
                     ("history", "--json"), ("host", "set", MAC, "--power-secret", "new-pw-1",
                                             "--dry-run")):
            code, out, err = cli(*argv)
            assert code == 0, (argv, err)
            assert secret not in out + err and "new-pw-1" not in out + err, argv
        code, out, _ = cli("host", "show", MAC)
        assert "power_secret   ********" in out
        code, out, _ = cli("export", "--show-secrets")
        assert f"power_secret: {secret}" in out
        # an export (masked) imported again keeps the secret
        code, out, _ = cli("export")
        exported = tmp_path / "inv.yaml"
        exported.write_text(out.replace("10.9.9.9", "10.9.9.10"))
        assert cli("import", str(exported))[0] == 0
        assert raw.hgetall(f"bootyard:host:{MAC}")["power_secret"] == secret
        assert raw.hgetall(f"bootyard:host:{MAC}")["power_address"] == "10.9.9.10"
        # a changed secret is a change in the history, shown masked
        assert cli("host", "set", MAC, "--power-secret", "new-pw-2")[0] == 0
        code, out, _ = cli("history", "--host", MAC)
        assert "power_secret: ******** -> ******** (changed)" in out and "new-pw-2" not in out
        for _id, entry in raw.xrange("bootyard:audit"):
            assert secret not in json.dumps(entry) and "new-pw-2" not in json.dumps(entry)
    finally:
        raw.close()
    # and boot templates never see it
    record = host(power="ipmi", power_address="10.9.9.9", power_secret=secret)
    assert "power_secret" not in plain(record) and plain(record)["power"] == "ipmi"


def test_power_needs_hosts_named(cli):
    code, _out, err = cli("power", "on")
    assert code == 1 and "name the hosts to power on" in err
    code, _out, err = cli("power", "status", "--tag", "nothing-has-it")
    assert code == 1 and "no host matches" in err
