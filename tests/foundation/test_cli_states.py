"""``bootyard host list``: the boot state columns and ``--state`` (cli/states.py), from events in
the hosts' streams as the services write them, and the ``bootstate`` settings."""

import json
import time

import pytest
import redis

from cli.commands import main
from shared import keys

STUCK = "52:54:00:12:34:56"
FRESH = "52:54:00:12:34:57"
IDLE = "52:54:00:12:34:58"


@pytest.fixture
def cli(redis_url, monkeypatch, capsys):
    monkeypatch.setenv("BOOTYARD_REDIS_URL", redis_url)

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def emit(client, mac, ts, service, kind, **fields):
    """An event as EventLog.emit writes it (both streams), at time ``ts``."""
    entry = {"ts": f"{ts:.3f}", "service": service, "kind": kind, "mac": mac, **fields}
    client.xadd(keys.EVENTS_STREAM, entry)
    client.xadd(keys.host_events(mac), entry)


def test_host_list_state_columns_and_filter(cli, redis_url, monkeypatch):
    assert cli("profile", "add", "debian12", "--kernel", "debian/linux", "--initrd",
               "debian/initrd.gz", "--install", "preseed")[0] == 0
    for n, mac in enumerate((STUCK, FRESH, IDLE)):
        assert cli("host", "add", mac, "--ip", f"198.18.5.{21 + n}", "--profile",
                   "debian12")[0] == 0
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    now = time.time()
    for mac, ago in ((STUCK, 600), (FRESH, 50)):
        ip = client.hget(keys.object_key("host", mac), "ip")
        emit(client, mac, now - ago, "dhcp", "dhcp.offer", ip=ip, boot_file="undionly.kpxe")
        emit(client, mac, now - ago, "dhcp", "dhcp.ack", ip=ip, boot_file="undionly.kpxe")
    emit(client, STUCK, now - 599, "tftp", "tftp.transfer", ip="198.18.5.21",
         file="undionly.kpxe", result="not_found")
    client.close()

    code, out, _ = cli("host", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[-4:] == ["STATE", "STAGE", "SINCE", "REASON"]
    row = {line.split()[0]: line for line in lines[1:]}
    assert "stuck  bound  10 min ago  asked TFTP for undionly.kpxe: not found" in row[STUCK]
    assert row[IDLE].split()[-1] == "idle"

    code, out, _ = cli("host", "list", "--state", "stuck")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [STUCK, FRESH]

    # the bootstate settings: a host may stay bound 10 minutes
    monkeypatch.setenv("BOOTYARD_BOOTSTATE__BOUND", "900")
    code, out, _ = cli("host", "list", "--state", "stuck", "--json")
    assert code == 0 and list(json.loads(out)) == []
    code, out, _ = cli("host", "list", "--state", "progressing", "--json")
    listed = json.loads(out)
    assert sorted(listed) == [STUCK, FRESH]
    assert listed[FRESH]["boot_state"]["stage"] == "bound"
    assert listed[FRESH]["profile"] == "debian12"


def test_events_of_a_host_show_where_each_boot_attempt_begins(cli, redis_url):
    assert cli("host", "add", STUCK, "--ip", "198.18.5.21")[0] == 0
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for start in (1000.0, 5000.0):  # two boots, the first one stuck at bound
        emit(client, STUCK, start, "dhcp", "dhcp.offer", ip="198.18.5.21",
             boot_file="undionly.kpxe")
        emit(client, STUCK, start + 1, "dhcp", "dhcp.ack", ip="198.18.5.21",
             boot_file="undionly.kpxe")
    client.close()
    code, out, _ = cli("events", "--host", STUCK)
    lines = out.splitlines()
    assert code == 0
    assert [line for line in lines if line.startswith("---")] == [
        f"--- boot attempt {STUCK}@1000000", f"--- boot attempt {STUCK}@5000000"]
    assert lines[0].startswith("---") and lines[3].startswith("---") and len(lines) == 6


def test_host_show_lists_every_boot_attempt(cli, redis_url):
    assert cli("host", "add", STUCK, "--ip", "198.18.5.21")[0] == 0
    code, out, _ = cli("host", "show", STUCK)
    assert code == 0 and out.splitlines()[-1] == "boot state: idle"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for start, attempt in ((1000.0, f"{STUCK}@1000000"), (5000.0, f"{STUCK}@5000000")):
        # as the services write them now: with the attempt id the DHCP service decided
        emit(client, STUCK, start, "dhcp", "dhcp.offer", ip="198.18.5.21",
             boot_file="undionly.kpxe", attempt=attempt)
        emit(client, STUCK, start + 1, "dhcp", "dhcp.ack", ip="198.18.5.21",
             boot_file="undionly.kpxe", attempt=attempt)
    client.close()
    code, out, _ = cli("host", "show", STUCK)
    lines = out.splitlines()
    assert lines[-3].startswith("boot state: stuck, bound an address since ")
    assert lines[-3].endswith("never fetched its boot file undionly.kpxe in "
                              f"{lines[-3].split(' in ')[-1]}")
    assert lines[-2].startswith(f"  attempt 1 {STUCK}@1000000  ") and " stuck " in lines[-2]
    assert lines[-1].startswith(f"  attempt 2 {STUCK}@5000000  ")
