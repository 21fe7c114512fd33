"""The bootyard CLI against a real redis-server."""

import subprocess
import sys

from cli.commands import main

MAC = "52:54:00:12:34:56"




def seed(cli):
    assert cli("subnet", "add", "lab", "--network", "198.18.5.0/24", "--ranges",
               "198.18.5.100-198.18.5.199", "--router", "198.18.5.1", "--dns", "198.18.5.1",
               "--domain", "lab.example")[0] == 0
    assert cli("profile", "add", "debian12", "--kernel", "debian/linux", "--initrd",
               "debian/initrd.gz", "--install", "preseed", "--cmdline", "console=ttyS0 quiet",
               "--var", "suite=bookworm", "--var", "root_password_hash=$6$s$h")[0] == 0
    assert cli("host", "add", "52-54-00-12-34-56", "--ip", "198.18.5.21", "--hostname", "web1",
               "--profile", "debian12", "--var", "disk=/dev/vda", "--tags", "rack1,web")[0] == 0


def test_host_lifecycle(cli, raw):
    seed(cli)
    assert raw.hgetall(f"bootyard:host:{MAC}") == {
        "ip": "198.18.5.21", "hostname": "web1", "profile": "debian12", "var.disk": "/dev/vda",
        "tags": "rack1,web"}
    code, out, _ = cli("host", "show", "5254.0012.3456")
    assert code == 0 and f"bootyard:host:{MAC}" in out and "var.disk  /dev/vda" in out
    code, out, _ = cli("host", "list")
    # effective values: the default boot mode and enabled, not blanks; then the boot state
    assert out.splitlines()[1].split() == [MAC, "web1", "198.18.5.21", "debian12", "install",
                                           "yes", "rack1,web", "idle"]
    assert cli("host", "set", MAC, "--boot-mode", "local", "--unset", "tags", "--var", "disk=")[0] == 0
    assert raw.hgetall(f"bootyard:host:{MAC}") == {
        "ip": "198.18.5.21", "hostname": "web1", "profile": "debian12", "boot_mode": "local"}
    code, _, err = cli("host", "add", MAC, "--ip", "198.18.5.22")
    assert code == 1 and "already exists" in err
    assert cli("host", "rm", MAC)[0] == 0
    assert not raw.exists(f"bootyard:host:{MAC}")


def test_user_errors_are_one_line(cli):
    seed(cli)
    for argv, text in [
        (("host", "show", "52:54:00"), "is not a MAC address"),
        (("host", "rm", "52:54:00:00:00:99"), "no host 52:54:00:00:00:99"),
        (("host", "set", "52:54:00:00:00:99", "--ip", "198.18.5.30"), "use 'bootyard host add'"),
        (("host", "set", MAC, "--ip", "999.1.1.1"), "ip='999.1.1.1'"),
        (("host", "set", MAC, "--unset", "colour"), "host has no field 'colour'"),
        (("profile", "add", "Bad Name"), "not a valid profile name"),
        (("subnet", "add", "x", "--router", "10.0.0.1"), "network='': required field is missing"),
    ]:
        code, out, err = cli(*argv)
        assert code == 1, argv
        assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_redis_is_one_line_without_traceback():
    result = subprocess.run([sys.executable, "-m", "cli", "--redis-url",
                             "redis://127.0.0.1:1/0", "host", "list"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "Redis unreachable at redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_validate_names_the_host_and_field_set_with_redis_cli(cli, redis_server):
    seed(cli)
    assert cli("validate")[0] == 0
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "HSET", f"bootyard:host:{MAC}",
                    "ip", "999.1.1.1"], check=True, capture_output=True)
    code, out, _ = cli("validate")
    assert code == 1
    assert f"error: bootyard:host:{MAC} ip='999.1.1.1'" in out
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "HSET", f"bootyard:host:{MAC}",
                    "ip", "198.18.5.21"], check=True, capture_output=True)
    assert cli("validate")[0] == 0


def test_validate_checks_references(cli, raw):
    seed(cli)
    raw.hset("bootyard:host:52:54:00:00:00:02", mapping={"ip": "198.18.5.21", "profile": "nope"})
    raw.hset("bootyard:host:52:54:00:00:00:03", mapping={"ip": "198.18.5.150"})
    code, out, _ = cli("validate")
    assert code == 1
    assert "bootyard:host:52:54:00:00:00:02 profile='nope': no such profile" in out
    assert "same fixed address as host 52:54:00:12:34:56" in out
    assert "error: bootyard:host:52:54:00:00:00:03 ip='198.18.5.150': inside the dynamic range" in out


def snapshot(client):
    """Every inventory object (the audit stream is not inventory)."""
    return {key: client.hgetall(key) for key in client.scan_iter("bootyard:*")
            if not key.startswith("bootyard:audit")}


def test_import_export_import_is_identical(cli, raw, tmp_path):
    seed(cli)
    cli("blockexport", "add", "web1-root", "--kind", "iscsi", "--backing", "/srv/web1.img",
        "--iqn", "iqn.2026-11.org.bootyard:web1")
    cli("mirror", "add", "debian", "--source", "rsync://deb.example/debian", "--path", "debian")
    code, first, _ = cli("export")
    assert code == 0 and "hosts:" in first and "profiles:" in first and "subnets:" in first
    before = snapshot(raw)
    dump = tmp_path / "inv.yaml"
    dump.write_text(first)
    raw.flushall()
    assert cli("import", str(dump))[0] == 0
    assert snapshot(raw) == before
    code, second, _ = cli("export")
    assert second == first
    assert cli("import", str(dump))[0] == 0  # idempotent
    assert snapshot(raw) == before


def test_import_replace_makes_redis_match_the_file(cli, raw, tmp_path):
    seed(cli)
    code, text, _ = cli("export")
    dump = tmp_path / "inv.yaml"
    dump.write_text(text)
    cli("host", "add", "52:54:00:00:00:09", "--hostname", "extra")
    assert cli("import", str(dump))[0] == 0
    assert raw.exists("bootyard:host:52:54:00:00:00:09")  # plain import keeps other objects
    code, out, err = cli("import", "--replace", str(dump))
    assert code == 1 and "would delete 1 object(s)" in err and "give --yes" in err
    assert "- bootyard:host:52:54:00:00:00:09" in err
    assert raw.exists("bootyard:host:52:54:00:00:00:09")  # nothing deleted without --yes
    code, out, _ = cli("import", "--replace", "--yes", str(dump))
    assert code == 0 and "1 deleted" in out and "- bootyard:host:52:54:00:00:00:09" in out
    assert not raw.exists("bootyard:host:52:54:00:00:00:09")


def test_import_refuses_a_bad_file_and_writes_nothing(cli, raw, tmp_path):
    dump = tmp_path / "bad.yaml"
    dump.write_text("hosts:\n  52-54-00-00-00-01: {ip: 10.0.0.300}\n  52:54:00:00:00:02: "
                    "{profile: missing}\n  zz: {}\n")
    code, _, err = cli("import", str(dump))
    assert code == 1
    assert "bootyard:host:52:54:00:00:00:01 ip='10.0.0.300'" in err
    assert "'zz' is not a MAC address" in err
    assert "nothing was imported" in err
    assert snapshot(raw) == {}


def test_acknowledged_writes_survive_a_redis_restart(private_redis, monkeypatch, capsys):
    monkeypatch.setenv("BOOTYARD_REDIS_URL", private_redis.url)
    assert main(["host", "add", MAC, "--hostname", "survivor"]) == 0
    private_redis.restart()
    capsys.readouterr()
    assert main(["host", "show", MAC]) == 0
    assert "survivor" in capsys.readouterr().out


def test_add_without_fields_is_refused_not_silently_dropped(cli, raw):
    code, out, err = cli("host", "add", MAC)
    assert code == 1 and "added" not in out and "give at least one field" in err
    assert not raw.exists(f"bootyard:host:{MAC}")
