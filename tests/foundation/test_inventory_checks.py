"""One set of checks on every write path (issue 17): the CLI, the admin API and import refuse
the same records; validate finds them in Redis; bad input is one line, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from shared import bootplan, inventory
from shared.schema import KINDS
from shared.validation import parse_record

MAC = "52:54:00:12:34:56"
MAC2 = "52:54:00:00:00:02"




def seed(cli):
    for argv in (
        ("subnet", "add", "lab", "--network", "198.18.5.0/24", "--ranges",
         "198.18.5.100-198.18.5.199", "--router", "198.18.5.1"),
        ("profile", "add", "debian12", "--kernel", "debian12/linux", "--initrd",
         "debian12/initrd.gz", "--install", "preseed", "--var", "root_password_hash=$6$s$h"),
        ("blockexport", "add", "disk1", "--kind", "aoe", "--backing", "/srv/d1.img",
         "--aoe-shelf", "0", "--aoe-slot", "1"),
        ("host", "add", MAC, "--ip", "198.18.5.21", "--hostname", "web1", "--profile",
         "debian12"),
    ):
        code, _, err = cli(*argv)
        assert code == 0, (argv, err)


# (what, CLI arguments, text of the refusal): each refused by the CLI, the API and import
BAD_WRITES = [
    ("unknown profile", ("host", "add", MAC2, "--profile", "nope"), "no such profile"),
    ("duplicate reserved IP", ("host", "add", MAC2, "--ip", "198.18.5.21"),
     "same fixed address as host 52:54:00:12:34:56"),
    ("duplicate hostname", ("host", "add", MAC2, "--hostname", "WEB1"),
     "same host name as host 52:54:00:12:34:56"),
    ("reserved IP in a dynamic range", ("host", "add", MAC2, "--ip", "198.18.5.150"),
     "inside the dynamic range 198.18.5.100-198.18.5.199 of subnet lab"),
    ("overlapping subnets", ("subnet", "add", "lab2", "--network", "198.18.5.128/25"),
     "overlaps subnet lab (198.18.5.0/24)"),
    ("overlapping ranges", ("subnet", "add", "lab3", "--network", "198.18.6.0/24", "--ranges",
                            "198.18.6.10-198.18.6.50,198.18.6.40-198.18.6.60"),
     "overlaps the range 198.18.6.10-198.18.6.50"),
    ("unknown export", ("profile", "add", "p2", "--kernel", "k", "--export", "nope"),
     "no such export"),
    ("a mode the profile cannot serve", ("host", "add", MAC2, "--profile", "debian12",
                                         "--boot-mode", "sanboot"),
     "cannot boot: profile debian12 names no usable block export"),
    ("a live host without a root image", ("host", "add", MAC2, "--profile", "debian12",
                                          "--boot-mode", "live"),
     "has no root_image for live boot"),
]


@pytest.mark.parametrize("what,argv,reason", BAD_WRITES, ids=[b[0] for b in BAD_WRITES])
def test_the_cli_refuses_and_writes_nothing(cli, raw, what, argv, reason):
    seed(cli)
    before = sorted(raw.scan_iter("bootyard:*"))
    code, out, err = cli(*argv)
    assert code == 1 and reason in err, err
    assert err.startswith("bootyard: ") and len(err.strip().splitlines()) == 1
    assert sorted(raw.scan_iter("bootyard:*")) == before
    # --force writes it (the error printed as a warning), and validate then reports it
    code, _, err = cli(*argv, "--force")
    assert code == 0 and reason in err
    code, out, _ = cli("validate", "--no-templates")
    assert code == 1 and reason in out


@pytest.mark.parametrize("what,argv,reason", BAD_WRITES, ids=[b[0] for b in BAD_WRITES])
def test_import_refuses_the_same(cli, raw, tmp_path, what, argv, reason):
    seed(cli)
    cli(*argv, "--force")
    code, text, _ = cli("export")
    raw.flushall()
    seed(cli)
    dump = tmp_path / "inv.yaml"
    dump.write_text(text)
    code, _, err = cli("import", str(dump))
    assert code == 1 and reason in err and "nothing was imported" in err


async def test_the_api_refuses_the_same(inventory_store_api):
    api = inventory_store_api
    for what, argv, reason in BAD_WRITES:
        noun, _, ident, *options = argv
        body = {"id": ident}
        while options:
            name, value = options.pop(0)[2:].replace("-", "_"), options.pop(0)
            body[name] = value
        plural = {"blockexport": "exports"}.get(noun, noun + "s")
        resp = await api.post(f"/api/v1/{plural}", json=body)
        assert resp.status == 422, what
        reasons = [p["reason"] for p in (await resp.json())["problems"]]
        assert any(reason in r for r in reasons), (what, reasons)


@pytest.fixture
async def inventory_store_api(redis_url, aiohttp_client):
    from services.http.adminapi import AdminApi
    from shared.events import EventLog
    from shared.leases import Leases
    from shared.store import InventoryStore, connect

    client = connect(redis_url)
    app = AdminApi(InventoryStore(client, redis_url), EventLog(client, "test"), "", "s" * 32,
                   leases=Leases(client)).app()
    api = await aiohttp_client(app)
    for plural, body in (
        ("subnets", {"id": "lab", "network": "198.18.5.0/24",
                     "ranges": ["198.18.5.100-198.18.5.199"], "router": "198.18.5.1"}),
        ("profiles", {"id": "debian12", "kernel": "debian12/linux",
                      "initrd": ["debian12/initrd.gz"], "install": "preseed"}),
        ("exports", {"id": "disk1", "kind": "aoe", "backing": "/srv/d1.img", "aoe_shelf": "0",
                     "aoe_slot": "1"}),
        ("hosts", {"id": MAC, "ip": "198.18.5.21", "hostname": "web1", "profile": "debian12"}),
    ):
        assert (await api.post(f"/api/v1/{plural}", json=body)).status == 201
    yield api
    await client.aclose()


def test_values_are_normalised_where_safe(cli, raw):
    seed(cli)
    code, _, err = cli("host", "add", MAC2, "--ip", " 198.18.5.24", "--boot-mode", "Local",
                       "--hostname", "Web2 ", "--enabled", "YES", "--profile", " Debian12")
    assert code == 0, err
    assert raw.hgetall(f"bootyard:host:{MAC2}") == {
        "ip": "198.18.5.24", "boot_mode": "local", "hostname": "web2", "enabled": "yes",
        "profile": "debian12"}
    # the same typed with redis-cli: used, but validate says so (a warning; --strict fails)
    raw.hset(f"bootyard:host:{MAC2}", mapping={"boot_mode": "Local", "ip": " 198.18.5.24"})
    code, out, _ = cli("validate", "--no-templates")
    assert code == 0
    assert f"warning: bootyard:host:{MAC2} boot_mode='Local': not in canonical form" in out
    assert cli("validate", "--strict", "--no-templates")[0] == 1


def test_validate_finds_typo_keys_and_wrong_types(cli, raw):
    seed(cli)
    raw.hset("bootyard:hosts:52:54:00:00:00:05", "hostname", "lost")
    raw.set("bootyard:host:52:54:00:00:00:06", "not a hash")
    raw.hset("bootyard:events", "x", "y")
    code, out, err = cli("host", "list")
    assert code == 0 and MAC in out  # the good hosts are listed, the bad key named
    assert "bootyard:host:52:54:00:00:00:06" in err and "not a hash" in err
    code, out, _ = cli("validate", "--no-templates")
    assert code == 1
    assert ("error: bootyard:hosts:52:54:00:00:00:05 (key)='hash': matches no kind, so every "
            "service ignores it: did you mean bootyard:host:52:54:00:00:00:05?") in out
    assert "bootyard:host:52:54:00:00:00:06 (key)='string': is a Redis string, but a host " \
           "object is a hash" in out
    assert "bootyard:events (key)='hash': is a Redis hash, but the boot timeline is a stream" in out
    code, _, err = cli("host", "show", "52:54:00:00:00:06")
    assert code == 1 and "wrong Redis type" in err and len(err.strip().splitlines()) == 1


class _NotRedis:
    """A TCP server that answers like a web server (what a wrong port gets)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass


def test_every_bad_input_is_one_line_and_no_traceback(redis_url, raw):
    raw.set("bootyard:host:52:54:00:00:00:06", "not a hash")
    web = _NotRedis()
    cases = [
        (["--redis-url", redis_url, "host", "show", "52:54:00:00:00:06"], "wrong Redis type"),
        (["--redis-url", redis_url, "events", "-n", "0"], "not a positive number"),
        (["--redis-url", redis_url, "events", "-n", "x"], "is not a whole number"),
        (["--redis-url", "localhost:6379", "host", "list"], "not a Redis URL"),
        (["--redis-url", "http://127.0.0.1:6379/", "host", "list"], "not a Redis URL"),
        (["--redis-url", "redis://127.0.0.1:99999/0", "host", "list"], "port '99999'"),
        (["--redis-url", "redis://127.0.0.1:6379/x", "host", "list"], "database 'x'"),
        (["--redis-url", f"redis://127.0.0.1:{web.port}/0", "host", "list"], "Redis"),
        (["--redis-url", redis_url, "import", "/nonexistent.yaml"], "/nonexistent.yaml"),
        (["--redis-url", redis_url, "host", "add", "zz"], "is not a MAC address"),
        (["--redis-url", redis_url, "host", "set", "--tag", "none", "--hostname", "x"],
         "no host matches"),
        (["host", "list", "--redis-url", "http://x/"], "not a Redis URL"),  # after the command
    ]
    for argv, text in cases:
        result = subprocess.run([sys.executable, "-m", "cli", *argv], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0, argv
        assert "Traceback" not in result.stderr, (argv, result.stderr)
        assert text in result.stderr.strip().splitlines()[-1], (argv, result.stderr)
        if result.returncode == 1:
            assert len(result.stderr.strip().splitlines()) == 1, (argv, result.stderr)
    web.sock.close()


def test_profile_install_gets_the_installers_command_line(cli, raw):
    seed(cli)
    assert raw.hget("bootyard:profile:debian12", "cmdline") == \
        "auto=true priority=critical url={{ urls.preseed }}"
    for install, expected in (("kickstart", "inst.ks={{ urls.kickstart }} inst.ks.sendmac"),
                              ("cloud-init", "ds=nocloud;s={{ urls.nocloud }}")):
        assert cli("profile", "set", "debian12", "--install", install)[0] == 0
        assert raw.hget("bootyard:profile:debian12", "cmdline") == expected
    assert cli("profile", "add", "own", "--kernel", "k", "--install", "preseed",
               "--cmdline", "console=ttyS0")[0] == 0
    assert raw.hget("bootyard:profile:own", "cmdline") == "console=ttyS0"
    # the README's example boots an installer that fetches its file
    assert cli("profile", "set", "debian12", "--install", "preseed")[0] == 0
    host, _ = parse_record(KINDS["host"], MAC, raw.hgetall(f"bootyard:host:{MAC}"))
    profile, _ = parse_record(KINDS["profile"], "debian12", raw.hgetall("bootyard:profile:debian12"))
    plan = bootplan.plan(MAC, host, profile, None, bootplan.Facts("http://198.18.5.1:8080"))
    assert plan.cmdline == (f"auto=true priority=critical url=http://198.18.5.1:8080/install/"
                            f"{MAC}/preseed.cfg")


def test_validate_renders_install_files_and_command_lines(cli, raw):
    seed(cli)
    assert cli("validate", "--templates", "templates")[0] == 0
    raw.hdel("bootyard:profile:debian12", "var.root_password_hash")
    code, out, _ = cli("validate", "--templates", "templates")
    assert code == 1
    assert (f"error: bootyard:host:{MAC} (install file)='preseed.cfg.j2': template "
            "preseed.cfg.j2 does not render for this host (profile debian12): UndefinedError: "
            "'dict object' has no attribute 'root_password_hash'") in out
    raw.hset(f"bootyard:host:{MAC}", "var.root_password_hash", "$6$s$h")
    assert cli("validate", "--templates", "templates")[0] == 0
    # a cmdline that needs a variable the host lacks: refused on write, found by validate
    code, _, err = cli("profile", "set", "debian12", "--cmdline", "console={{ vars.console }}")
    assert code == 1 and f"bootyard:host:{MAC} profile='debian12'" in err
    assert "template profile debian12 cmdline" in err and "'console'" in err
    raw.hset("bootyard:profile:debian12", "cmdline", "console={{ vars.console }}")
    code, out, _ = cli("validate", "--no-templates")
    assert code == 1 and "template profile debian12 cmdline" in out and "'console'" in out


def test_rm_refuses_to_leave_references_dangling(cli, raw):
    seed(cli)
    code, _, err = cli("profile", "rm", "debian12")
    assert code == 1 and "no such profile" in err
    assert raw.exists("bootyard:profile:debian12")
    assert cli("profile", "rm", "debian12", "--force")[0] == 0


def test_check_changes_reports_only_new_problems_of_other_objects():
    dump = {name: {} for name in KINDS}
    dump["host"] = {MAC: {"ip": "10.0.0.5"}, MAC2: {"ip": "10.0.0.5"}}
    errors, _ = inventory.check_changes(dump, {("host", "52:54:00:00:00:03"): {"hostname": "x"}})
    assert errors == []  # the existing clash is not this write's fault
    errors, _ = inventory.check_changes(dump, {("host", MAC): {"ip": "10.0.0.5", "tags": "a"}})
    assert [e.reason for e in errors] == ["same fixed address as host 52:54:00:00:00:02"]


def test_bulk_selectors_with_dry_run(cli, raw):
    seed(cli)
    macs = [f"52:54:00:00:01:{i:02x}" for i in range(50)]
    for i, mac in enumerate(macs):
        assert cli("host", "add", mac, "--tags", "rack2" if i % 2 else "rack3",
                   "--profile", "debian12", "--ip", f"198.18.5.{30 + i}")[0] == 0
    rack2 = [m for i, m in enumerate(macs) if i % 2]
    code, out, _ = cli("host", "set", "--tag", "rack2", "--boot-mode", "local", "--dry-run")
    assert code == 0 and "dry run: 25 hosts would change" in out
    assert f"~ bootyard:host:{rack2[0]}" in out and "boot_mode: '(unset)' -> 'local'" in out
    assert not any(raw.hget(f"bootyard:host:{m}", "boot_mode") for m in macs)
    code, out, _ = cli("host", "set", "--tag", "rack2", "--boot-mode", "local")
    assert code == 0 and "updated 25 of 25 hosts" in out
    assert {m for m in macs if raw.hget(f"bootyard:host:{m}", "boot_mode") == "local"} == \
        set(rack2)
    code, out, _ = cli("host", "list", "--tag", "rack2", "--json")
    import json
    assert sorted(json.loads(out)) == rack2
    code, out, _ = cli("host", "ls", "--subnet", "lab", "--profile", "debian12")
    assert len(out.splitlines()) == 1 + 51
    code, out, _ = cli("host", "rm", macs[0], macs[1], "--dry-run")
    assert code == 0 and "- bootyard:host:52:54:00:00:01:00" in out and raw.exists(
        f"bootyard:host:{macs[0]}")
    assert cli("host", "delete", macs[0], macs[1])[0] == 0
    assert not raw.exists(f"bootyard:host:{macs[0]}") and not raw.exists(
        f"bootyard:host:{macs[1]}")


def test_csv_import_and_import_dry_run(cli, raw, tmp_path):
    seed(cli)
    table = tmp_path / "hosts.csv"
    table.write_text('mac,hostname,ip,profile,tags,var.disk\n'
                     '52-54-00-00-02-01,db1,198.18.5.41,debian12,"rack1,db",/dev/sda\n'
                     '52:54:00:00:02:02, DB2 ,198.18.5.42,debian12,db,\n')
    code, out, _ = cli("import", "--dry-run", str(table))
    assert code == 0 and "+ bootyard:host:52:54:00:00:02:01" in out and "would give 2 added" in out
    assert not raw.exists("bootyard:host:52:54:00:00:02:01")
    code, out, err = cli("import", str(table))
    assert code == 0, err
    assert raw.hgetall("bootyard:host:52:54:00:00:02:01") == {
        "hostname": "db1", "ip": "198.18.5.41", "profile": "debian12", "tags": "rack1,db",
        "var.disk": "/dev/sda"}
    assert raw.hget("bootyard:host:52:54:00:00:02:02", "hostname") == "db2"
    table.write_text("mac,ip\n52:54:00:00:02:03,198.18.5.21\n")
    code, _, err = cli("import", str(table))
    assert code == 1 and "same fixed address as host 52:54:00:12:34:56" in err


def test_history_records_who_changed_what(cli, raw, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    seed(cli)
    assert cli("host", "set", MAC, "--boot-mode", "install", "--hostname", "web9")[0] == 0
    code, out, _ = cli("history", "--host", MAC)
    lines = out.splitlines()
    assert len(lines) == 2
    assert f"alice@{socket.gethostname()}  add  bootyard:host:{MAC}" in lines[0]
    assert "set  bootyard:host:" in lines[1] and "boot_mode: (unset) -> install" in lines[1]
    assert "hostname: web1 -> web9" in lines[1]
    code, out, _ = cli("history", "--json", "-n", "1")
    import json
    (entry,) = json.loads(out)
    assert entry["after"]["hostname"] == "web9" and entry["before"]["hostname"] == "web1"


async def test_api_changes_are_in_the_history(inventory_store_api):
    api = inventory_store_api
    resp = await api.patch(f"/api/v1/hosts/{MAC}", json={"boot_mode": "Install"})
    assert resp.status == 200
    assert (await resp.json())["fields"]["boot_mode"] == "install"  # normalised
    entries = await (await api.get(f"/api/v1/history?host={MAC}")).json()
    assert [e["op"] for e in entries] == ["add", "set"]
    assert entries[1]["who"].startswith("api:admin@")
    assert entries[1]["after"]["boot_mode"] == "install" and "boot_mode" not in entries[1]["before"]


async def _emit(url, *events):
    from shared.events import EventLog
    from shared.store import connect
    client = connect(url)
    log = EventLog(client, "dhcp")
    for kind, mac in events:
        log.emit(kind, mac, ip="198.18.5.21")
    await log.flush()
    await client.aclose()


def test_events_json_since_kind(cli, redis_url):
    import asyncio
    import json
    asyncio.run(_emit(redis_url, ("dhcp.discover", MAC), ("dhcp.ack", MAC),
                      ("tftp.transfer", MAC)))
    code, out, _ = cli("events", "--json", "--kind", "dhcp")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["kind"] for e in lines] == ["dhcp.discover", "dhcp.ack"]
    assert set(lines[0]) == {"id", "ts", "service", "kind", "mac", "fields",
                             "attempt"}  # the API's shape (attempt: shared/attempts.py)
    code, out, _ = cli("events", "--kind", "dhcp.ack", "--since", "10m")
    assert code == 0 and len(out.splitlines()) == 1 and "dhcp.ack" in out
    code, out, _ = cli("events", "--since", "2000-01-01T00:00", "--kind", "tftp")
    assert len(out.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        cli("events", "--since", "yesterday")
    assert exc.value.code == 2


def test_bash_completion_and_version(tmp_path):
    script = subprocess.run([sys.executable, "-m", "cli", "completion", "bash"],
                            capture_output=True, text=True, check=True).stdout
    (tmp_path / "c.sh").write_text(script)

    def complete(*words):
        line = " ".join(f"'{w}'" for w in words)
        result = subprocess.run(
            ["bash", "-c", f"source {tmp_path}/c.sh; COMP_WORDS=(bootyard {line}); "
                           f"COMP_CWORD={len(words)}; _bootyard; echo ${{COMPREPLY[@]}}"],
            capture_output=True, text=True, check=True)
        return result.stdout.split()
    assert complete("ho") == ["host"]
    assert complete("host", "l") == ["list", "ls"]
    assert complete("host", "set", MAC, "--boot") == ["--boot-mode"]
    version = subprocess.run([sys.executable, "-m", "cli", "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("bootyard ")


@pytest.mark.parametrize("install", ["preseed", "kickstart", "cloud-init"])
def test_shipped_templates_render_with_the_documented_variables(cli, install):
    """docs/http.md: root_password_hash is the one variable the shipped templates need
    (cloud-init's is optional); every other one has a default."""
    assert cli("subnet", "add", "lab", "--network", "198.18.5.0/24")[0] == 0
    assert cli("profile", "add", "p", "--kernel", "k/linux", "--initrd", "k/initrd.gz",
               "--install", install)[0] == 0
    assert cli("host", "add", MAC, "--ip", "198.18.5.21", "--profile", "p")[0] == 0
    code, out, _ = cli("validate", "--templates", "templates")
    if install == "cloud-init":
        assert code == 0, out
    else:
        assert code == 1 and "root_password_hash" in out and f"bootyard:host:{MAC}" in out
    assert cli("profile", "set", "p", "--var", "root_password_hash=$6$s$h")[0] == 0
    code, out, _ = cli("validate", "--templates", "templates")
    assert code == 0, out
