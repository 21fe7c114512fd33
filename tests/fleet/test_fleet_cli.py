"""Groups, per-host overrides, ``host show --effective``, reinstall and rescue through the
``bootyard`` command on a real Redis (docs/fleet.md)."""

from __future__ import annotations

import json

import pytest

MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


@pytest.fixture
def fleet(cli):
    assert cli("subnet", "add", "lab", "--network", "198.18.5.0/24", "--ranges",
               "198.18.5.100-198.18.5.199")[0] == 0
    for name, extra in (("debian12", ["--install", "preseed"]),
                        ("rocky9", ["--install", "kickstart"]),
                        ("live-rescue", ["--root-image", "rescue/root.squashfs"])):
        code, _, err = cli("profile", "add", name, "--kernel", f"{name}/linux", "--initrd",
                           f"{name}/initrd.gz", *extra)
        assert code == 0, err
    for mac, ip, tags in ((MAC1, "198.18.5.21", "rack1,web"), (MAC2, "198.18.5.22", "rack1"),
                          (MAC3, "198.18.5.23", "rack2")):
        code, _, err = cli("host", "add", mac, "--ip", ip, "--tags", tags)
        assert code == 0, err
    return cli


def test_group_sets_profile_vars_kernel_args_and_host_overrides(fleet, raw):
    cli = fleet
    code, _, err = cli("group", "add", "rack1", "--match", "tags=rack1", "--profile",
                       "debian12", "--var", "disk=/dev/sda", "--kernel-args",
                       "console=ttyS0,115200", "--option", "ntp-servers=198.18.5.1")
    assert code == 0, err
    assert raw.hgetall("bootyard:group:rack1") == {
        "match.tags": "rack1", "profile": "debian12", "var.disk": "/dev/sda",
        "kernel_args": "console=ttyS0,115200", "option.ntp-servers": "198.18.5.1"}
    code, _, err = cli("group", "add", "web", "--match", "tags=rack1,web", "--profile",
                       "rocky9")
    assert code == 0, err
    assert cli("host", "set", MAC2, "--var", "disk=/dev/nvme0n1")[0] == 0

    code, out, err = cli("host", "show", MAC1, "--effective", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["groups"] == [{"name": "web", "specificity": 2},
                               {"name": "rack1", "specificity": 1}]
    assert found["profile"] == {"value": "rocky9", "source": "group:web"}  # more specific
    assert found["kernel_args"] == {"value": "console=ttyS0,115200", "source": "group:rack1"}
    assert found["vars"]["disk"] == {"value": "/dev/sda", "source": "group:rack1"}
    assert found["options"]["ntp-servers"] == {"value": "198.18.5.1", "source": "group:rack1"}
    assert found["plan"]["outcome"] == "install"
    assert found["plan"]["cmdline"].endswith("console=ttyS0,115200")  # after the profile's

    found = json.loads(cli("host", "show", MAC2, "--effective", "--json")[1])
    assert found["profile"] == {"value": "debian12", "source": "group:rack1"}
    assert found["vars"]["disk"] == {"value": "/dev/nvme0n1", "source": "host"}

    # a host's own field wins over its groups
    assert cli("host", "set", MAC1, "--profile", "debian12", "--kernel-args",
               "console=tty0")[0] == 0
    code, out, _ = cli("host", "show", MAC1, "--effective")
    assert code == 0
    assert "profile      debian12  [host]" in out
    assert "kernel_args  console=tty0  [host]" in out
    assert "var.disk = /dev/sda  [group:rack1]" in out

    code, out, _ = cli("group", "show", "rack1")
    assert code == 0 and "matches      2 host(s)" in out and MAC1 in out and MAC3 not in out
    code, out, _ = cli("group", "list")
    assert "tags=rack1,web" in out and "rocky9" in out
    # the hosts a group matches, as a selector (with the others: all must hold)
    code, out, _ = cli("host", "list", "--tag", "rack1")
    assert "debian12 (group:rack1)" in out.splitlines()[2]  # MAC2: its group's profile
    code, out, _ = cli("host", "list", "--group", "rack1", "--json")
    assert sorted(json.loads(out)) == [MAC1, MAC2]
    code, out, _ = cli("host", "list", "--group", "rack1", "--tag", "web", "--json")
    assert sorted(json.loads(out)) == [MAC1]
    assert cli("host", "set", "--group", "web", "--boot-mode", "local")[0] == 0
    assert raw.hget(f"bootyard:host:{MAC1}", "boot_mode") == "local"
    assert raw.hget(f"bootyard:host:{MAC2}", "boot_mode") is None
    code, _, err = cli("host", "list", "--group", "nosuch")
    assert code == 1 and "no usable group nosuch" in err


def test_a_tie_is_refused_and_validate_names_both_groups_and_the_host(fleet, raw):
    cli = fleet
    assert cli("group", "add", "a", "--match", "tags=rack1", "--profile", "debian12")[0] == 0
    code, _, err = cli("group", "add", "b", "--match", "mac=52:54:00:00:00", "--profile",
                       "rocky9")
    assert code == 1
    assert "tie" in err and "groups a and b" in err and MAC1 in err
    assert not raw.exists("bootyard:group:b")
    # written behind bootyard's back: validate names it
    raw.hset("bootyard:group:b", mapping={"match.mac": "52:54:00:00:00", "profile": "rocky9"})
    code, out, _ = cli("validate", "--no-templates")
    assert code == 1
    assert f"bootyard:host:{MAC1} profile=''" in out and "groups a and b" in out
    assert f"bootyard:host:{MAC3}" not in out  # rack2: only b matches
    # the same value is no tie; the host's own value ends it too
    assert cli("host", "set", MAC1, MAC2, "--profile", "debian12")[0] == 0
    code, out, err = cli("validate", "--no-templates")
    assert code == 0, out


def test_selectors_are_checked_on_write(fleet):
    cli = fleet
    for args, reason in ((["--match", "colour=red"], "unknown selector 'colour'"),
                         (["--match", "mac=52:54:0"], "a prefix of whole octets"),
                         (["--match", "firmware=efi"], "bios, uefi"),
                         (["--match", "hw.dmi..vendor=x"], "hw path"),
                         (["--option", "lease-time=60"], "unknown name"),
                         (["--option", "51=u32:60"], "the subnet's lease_time"),
                         (["--option", "ntp-servers=10.0.0.300"], "not an IPv4 address"),
                         (["--option", "224=rack-7"], "give its type"),
                         (["--kernel-args", "console=$x"], "'$'")):
        code, _, err = cli("group", "add", "g", "--match", "tags=rack1", *args)
        assert code == 1, args
        assert reason in err, (args, err)
        assert "bootyard:group:g" in err


def test_reinstall_and_rescue_are_one_shot_and_audited(fleet, raw):
    cli = fleet
    assert cli("host", "set", MAC1, MAC2, "--profile", "debian12", "--boot-mode", "local")[0] == 0
    code, out, err = cli("host", "reinstall", "--tag", "rack1")
    assert code == 0, err
    assert raw.hget(f"bootyard:host:{MAC1}", "boot_mode") == "install"
    assert raw.hget(f"bootyard:host:{MAC2}", "boot_mode") == "install"
    code, _, err = cli("host", "reinstall", MAC3, "--profile", "live-rescue")
    assert code == 1 and "install=none" in err
    code, out, err = cli("host", "rescue", MAC1, "--profile", "live-rescue")
    assert code == 0, err
    assert raw.hget(f"bootyard:host:{MAC1}", "once_profile") == "live-rescue"
    found = json.loads(cli("host", "show", MAC1, "--effective", "--json")[1])
    assert found["profile"] == {"value": "live-rescue", "source": "host:once"}
    assert found["boot_mode"] == {"value": "live", "source": "host:once"}
    assert found["plan"]["outcome"] == "live"
    code, _, err = cli("host", "rescue", MAC1, "--profile", "debian12")
    assert code == 1 and "no root_image" in err  # debian12 cannot boot live
    code, out, err = cli("history", "--host", MAC1, "--json")
    changes = [json.loads(e["after"]) if isinstance(e["after"], str) else e["after"]
               for e in json.loads(out)]
    assert any(c.get("once_profile") == "live-rescue" for c in changes)
    assert cli("host", "rescue", MAC1, "--cancel")[0] == 0
    assert raw.hget(f"bootyard:host:{MAC1}", "once_profile") is None


def test_groups_and_options_round_trip_through_export_and_import(fleet, raw, tmp_path):
    cli = fleet
    assert cli("group", "add", "qemu", "--match", "hw.dmi.vendor=QEMU", "--match",
               "firmware=uefi", "--profile", "debian12", "--option",
               "tftp-server-name=boot.example")[0] == 0
    assert cli("subnet", "set", "lab", "--option", "domain-name-servers=198.18.5.1")[0] == 0
    code, text, _ = cli("export")
    assert "groups:\n  qemu:\n" in text and "match:\n" in text and "hw.dmi.vendor: QEMU" in text
    assert "options:\n      domain-name-servers: 198.18.5.1" in text
    before = {k: raw.hgetall(k) for k in raw.keys("bootyard:*:*") if raw.type(k) == "hash"}
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    raw.flushall()
    code, _, err = cli("import", str(path))
    assert code == 0, err
    after = {k: raw.hgetall(k) for k in raw.keys("bootyard:*:*") if raw.type(k) == "hash"}
    assert after == before
    csv = tmp_path / "groups.csv"
    csv.write_text("name,match.tags,profile,option.ntp-servers\nr2,rack2,rocky9,198.18.5.1\n")
    code, _, err = cli("import", str(csv), "--kind", "group")
    assert code == 0, err
    assert raw.hgetall("bootyard:group:r2") == {"match.tags": "rack2", "profile": "rocky9",
                                                "option.ntp-servers": "198.18.5.1"}
