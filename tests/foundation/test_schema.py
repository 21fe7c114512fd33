import ipaddress

import pytest

from shared.hashform import from_hash, to_hash
from shared.schema import KINDS, split_key
from shared.validation import parse_record

HOST = KINDS["host"]
SUBNET = KINDS["subnet"]
MAC = "52:54:00:12:34:56"


def test_valid_host_parses_to_a_typed_record():
    record, problems = parse_record(HOST, MAC, {
        "hostname": "Web1", "ip": "10.0.0.5", "profile": "debian12", "boot_mode": "Live",
        "tags": "rack1, web", "enabled": "no", "var.disk": "/dev/vda"})
    assert problems == []
    assert record.hostname == "web1" and record.boot_mode == "live" and record.enabled is False
    assert record.tags == ("rack1", "web") and record.vars == {"disk": "/dev/vda"}


@pytest.mark.parametrize("field,value,reason", [
    ("ip", "999.1.1.1", "not an IPv4 address"),
    ("hostname", "-bad-", "not a valid host name"),
    ("boot_mode", "pxe", "must be one of install, live, netroot, sanboot, local"),
    ("enabled", "maybe", "expected yes or no"),
    ("profile", "Bad Name", "names are lower-case"),
    ("var.bad-name", "x", "variable names are letters"),
    ("tags", "ok,not ok", "tag 'not ok'"),
])
def test_each_bad_field_is_named_with_value_and_reason(field, value, reason):
    record, problems = parse_record(HOST, MAC, {field: value})
    assert record is None
    (problem,) = problems
    assert (problem.key, problem.field, problem.value) == (f"bootyard:host:{MAC}", field, value)
    assert reason in problem.reason
    assert f"bootyard:host:{MAC} {field}=" in str(problem)


def test_unknown_field_is_a_warning_and_the_record_stays_usable():
    record, problems = parse_record(HOST, MAC, {"hostnmae": "x", "ip": "10.0.0.5"})
    assert record is not None and record.ip == "10.0.0.5"
    assert [(p.field, p.severity) for p in problems] == [("hostnmae", "warning")]


def test_non_canonical_key_says_how_to_rename():
    record, problems = parse_record(HOST, "52-54-00-12-34-56", {"ip": "10.0.0.5"})
    assert record is None and "rename it to bootyard:host:52:54:00:12:34:56" in problems[0].reason


def test_subnet_cross_field_checks_and_required_fields():
    record, problems = parse_record(SUBNET, "lab", {
        "network": "10.0.0.0/24", "ranges": "10.0.0.100-10.0.0.50,10.0.1.1-10.0.1.9",
        "router": "10.9.9.9"})
    assert record is None
    reasons = " | ".join(p.reason for p in problems)
    assert "ends before it starts" in reasons
    record, problems = parse_record(SUBNET, "lab", {"network": "10.0.0.0/24",
                                                    "ranges": "10.0.1.1-10.0.1.9",
                                                    "router": "10.9.9.9"})
    assert {p.field for p in problems} == {"ranges", "router"}
    record, problems = parse_record(SUBNET, "lab", {"router": "10.0.0.1"})
    assert [(p.field, p.reason) for p in problems] == [("network", "required field is missing")]
    record, problems = parse_record(SUBNET, "lab", {"network": "10.0.0.0/24",
                                                    "ranges": "10.0.0.10-10.0.0.20"})
    assert record.network == ipaddress.IPv4Network("10.0.0.0/24")
    assert record.ranges == (("10.0.0.10", "10.0.0.20"),) and record.lease_time == 3600


def test_export_needs_its_target_fields():
    _, problems = parse_record(KINDS["export"], "root1", {"kind": "aoe", "backing": "/x"})
    assert problems[0].field == "aoe_shelf"
    _, problems = parse_record(KINDS["export"], "root1", {"kind": "iscsi", "backing": "/x"})
    assert problems[0].field == "iqn"
    record, problems = parse_record(KINDS["export"], "root1", {
        "kind": "iscsi", "backing": "/x", "iqn": "iqn.2026-11.org.bootyard:root1"})
    assert problems == [] and record.lun == 0  # LUN 0 is the disk (docs/blockexport.md)


def test_export_chap_fields():
    base = {"kind": "iscsi", "backing": "/x", "iqn": "iqn.2026-11.org.bootyard:root1"}
    record, problems = parse_record(KINDS["export"], "root1", dict(
        base, chap_user="web1", chap_secret="twelve-chars", chap_mutual_secret="other-secret1",
        allow="iqn.2026-11.org.bootyard:web1, 10.0.0.0/24, 10.1.0.7", unmatched="refuse"))
    assert problems == [] and record.unmatched == "refuse"
    assert record.allow == ("iqn.2026-11.org.bootyard:web1", "10.0.0.0/24", "10.1.0.7/32")
    assert "twelve-chars" not in repr(record)
    for fields, field in (({"chap_secret": "short"}, "chap_secret"),
                          ({"chap_secret": "twelve-chars"}, "chap_user"),
                          ({"chap_user": "u", "chap_secret": "twelve-chars",
                            "chap_mutual_secret": "twelve-chars"}, "chap_mutual_secret"),
                          ({"chap_mutual_secret": "twelve-chars"}, "chap_mutual_secret"),
                          ({"chap_user": "u", "chap_secret": "********"}, "chap_secret"),
                          ({"allow": "web1"}, "allow"),
                          ({"unmatched": "maybe"}, "unmatched")):
        _, problems = parse_record(KINDS["export"], "root1", dict(base, **fields))
        assert any(p.field == field for p in problems), (fields, problems)


def test_hash_forms_round_trip():
    raw = to_hash(HOST, {"ip": "10.0.0.5", "tags": ["a", "b"], "vars": {"disk": "/dev/vda"},
                         "enabled": False})
    assert raw == {"ip": "10.0.0.5", "tags": "a,b", "var.disk": "/dev/vda", "enabled": "no"}
    assert from_hash(HOST, raw) == {"enabled": "no", "ip": "10.0.0.5", "tags": ["a", "b"],
                                    "vars": {"disk": "/dev/vda"}}


def test_split_key():
    assert split_key(f"bootyard:host:{MAC}") == (HOST, MAC)
    assert split_key("bootyard:events:52:54:00:12:34:56") is None
    assert split_key("other:host:x") is None


def test_plain_gives_template_and_json_ready_data():
    import json

    from shared.records import plain

    subnet, problems = parse_record(SUBNET, "lab", {
        "network": "10.0.0.0/24", "ranges": "10.0.0.100-10.0.0.150", "dns": "10.0.0.1,10.0.0.2"})
    assert not problems
    data = plain(subnet)
    assert data["network"] == "10.0.0.0/24"
    assert data["ranges"] == [["10.0.0.100", "10.0.0.150"]]
    assert data["dns"] == ["10.0.0.1", "10.0.0.2"]
    assert json.loads(json.dumps(data)) == data
    assert plain(None) == {}
