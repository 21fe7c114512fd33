"""The iSCSI login and negotiation (services/blockexport/iscsi_login.py) with bytes: iPXE's exact
key set, open-iscsi's, CHAP one-way and mutual (an MD5 vector computed with openssl), the
answers for unknown, invalid, irrelevant and repeated keys, and the refusals (unknown target,
allow-list, missing keys, version, CHAP skipped)."""

from __future__ import annotations

import hashlib
import itertools

import iscsiwire as w
import pytest

from services.blockexport import iscsi_pdu as p
from services.blockexport.iscsi_login import (
    Login,
    Offer,
    TargetConfig,
    allowed,
    chap_response,
    decode_binary,
)

IQN = "iqn.2026-11.org.example:disk1"
INITIATOR = "iqn.2010-04.org.ipxe:web1"
SECRET = "secretsecret12"
MUTUAL = "mutualsecret34"
# iPXE's operational keys (src/net/tcp/iscsi.c), in its order
IPXE_OPERATIONAL = [
    ("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxConnections", "1"),
    ("InitialR2T", "Yes"), ("ImmediateData", "No"), ("MaxRecvDataSegmentLength", "8192"),
    ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"), ("DefaultTime2Wait", "0"),
    ("DefaultTime2Retain", "0"), ("MaxOutstandingR2T", "1"), ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"), ("ErrorRecoveryLevel", "0")]


def make_login(target: TargetConfig | None = None, address="192.0.2.10") -> Login:
    targets = {t.iqn: t for t in [target or TargetConfig(IQN, "disk1")]}
    counter = itertools.count(7)
    return Login(targets=targets.get, visible=lambda i, a: list(targets.values()),
                 address=address, offer=Offer(), statsn=100,
                 challenge=lambda n: bytes(next(counter) % 256 for _ in range(n)),
                 tsih=lambda: 0x1234)


def step(login: Login, raw: bytes):
    result = login.receive(p.decode(raw))
    (bhs, data), = w.split(result.response)
    return result, w.fields(bhs), w.parse_text_list(data)


def first_keys(auth="None", **extra):
    keys = {"InitiatorName": INITIATOR, "TargetName": IQN, "SessionType": "Normal",
            "AuthMethod": auth}
    keys.update(extra)
    return list(keys.items())


def test_ipxe_key_set_without_chap():
    login = make_login()
    result, f, answers = step(login, w.login(first_keys("None"), csg=0, nsg=1))
    assert result.state == "continue"
    assert (f["op"], f["status_class"], f["flags"] & 0x80, f["flags"] & 3) == (0x23, 0, 0x80, 1)
    assert ("AuthMethod", "None") in answers and ("TargetPortalGroupTag", "1") in answers
    assert f["statsn"] == 100
    result, f, answers = step(login, w.login(IPXE_OPERATIONAL, csg=1, nsg=3))
    assert result.state == "done"
    assert f["flags"] == 0x80 | (1 << 2) | 3 and f["tsih"] == 0x1234 and f["statsn"] == 101
    values = dict(answers)
    assert "Reject" not in values.values() and "NotUnderstood" not in values.values()
    assert values["InitialR2T"] == "Yes" and values["ImmediateData"] == "No"
    assert values["FirstBurstLength"] == "65536" and values["MaxBurstLength"] == "262144"
    assert values["ErrorRecoveryLevel"] == "0" and values["MaxConnections"] == "1"
    assert values["MaxRecvDataSegmentLength"] == "262144"  # ours, declared
    params = login.params
    assert (params.max_send_dsl, params.initial_r2t, params.immediate_data, params.first_burst,
            params.max_burst, params.max_outstanding_r2t, params.header_digest) == \
        (8192, True, False, 65536, 262144, 1, False)


def test_open_iscsi_defaults_and_digests():
    login = make_login()
    step(login, w.login(first_keys("None"), csg=0, nsg=1))
    keys = [("HeaderDigest", "CRC32C,None"), ("DataDigest", "None,CRC32C"),
            ("MaxRecvDataSegmentLength", "262144"), ("MaxBurstLength", "16776192"),
            ("FirstBurstLength", "262144"), ("InitialR2T", "No"), ("ImmediateData", "Yes"),
            ("MaxConnections", "1"), ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0"),
            ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "0"), ("IFMarker", "No"),
            ("OFMarker", "No")]
    result, _, answers = step(login, w.login(keys, csg=1, nsg=3))
    values = dict(answers)
    assert result.state == "done"
    assert values["HeaderDigest"] == "CRC32C" and values["DataDigest"] == "None"
    assert values["MaxBurstLength"] == "1048576" and values["InitialR2T"] == "No"
    assert values["IFMarker"] == "No"
    assert login.params.header_digest and not login.params.data_digest
    assert login.params.first_burst == 262144 and not login.params.initial_r2t


def test_chap_vector_against_openssl():
    # printf '\x07secretsecret12' + bytes 0..15 | openssl md5
    assert chap_response(7, b"secretsecret12", bytes(range(16))).hex() == \
        "d2ad9b553183668fa064205c85779b04"
    assert decode_binary("0x0a0B") == b"\x0a\x0b"
    assert decode_binary("0bAAE=") == b"\x00\x01"
    assert decode_binary("12") is None and decode_binary("0xzz") is None


def chap_target(**extra) -> TargetConfig:
    return TargetConfig(IQN, "disk1", chap_user="web1", chap_secret=SECRET, **extra)


def test_one_way_chap_ipxe():
    login = make_login(chap_target())
    result, f, answers = step(login, w.login(first_keys("CHAP,None"), csg=0, nsg=1))
    assert result.state == "continue" and f["flags"] & 0x80 == 0  # no transit yet
    assert ("AuthMethod", "CHAP") in answers
    result, f, answers = step(login, w.login([("CHAP_A", "5")], csg=0, nsg=1, transit=False))
    values = dict(answers)
    assert values["CHAP_A"] == "5"
    ident = int(values["CHAP_I"])
    challenge = bytes.fromhex(values["CHAP_C"][2:])
    assert len(challenge) == 16
    response = hashlib.md5(bytes([ident]) + SECRET.encode() + challenge).hexdigest()
    result, f, answers = step(login, w.login([("CHAP_N", "web1"), ("CHAP_R", "0x" + response)],
                                             csg=0, nsg=1))
    assert result.state == "continue" and f["flags"] & 0x80 and f["status_class"] == 0
    result, f, _ = step(login, w.login(IPXE_OPERATIONAL, csg=1, nsg=3))
    assert result.state == "done"


def test_wrong_chap_secret_fails_and_hides_secrets():
    login = make_login(chap_target())
    step(login, w.login(first_keys("CHAP,None"), csg=0, nsg=1))
    _, _, answers = step(login, w.login([("CHAP_A", "7,5")], csg=0, nsg=1, transit=False))
    values = dict(answers)
    challenge = bytes.fromhex(values["CHAP_C"][2:])
    bad = hashlib.md5(bytes([int(values["CHAP_I"])]) + b"wrongsecret1" + challenge).hexdigest()
    result, f, _ = step(login, w.login([("CHAP_N", "web1"), ("CHAP_R", "0x" + bad)], csg=0,
                                       nsg=1))
    assert result.state == "failed" and result.reason == "chap"
    assert (f["status_class"], f["status_detail"]) == (2, 1)
    assert SECRET not in result.detail and SECRET not in repr(login.target)


def test_chap_only_md5():
    login = make_login(chap_target())
    step(login, w.login(first_keys("CHAP"), csg=0, nsg=1))
    result, _, answers = step(login, w.login([("CHAP_A", "6,7")], csg=0, nsg=1, transit=False))
    assert result.state == "failed" and ("CHAP_A", "Reject") in answers


def test_mutual_chap():
    login = make_login(chap_target(mutual_user="target1", mutual_secret=MUTUAL))
    step(login, w.login(first_keys("CHAP,None"), csg=0, nsg=1))
    _, _, answers = step(login, w.login([("CHAP_A", "5")], csg=0, nsg=1, transit=False))
    values = dict(answers)
    challenge = bytes.fromhex(values["CHAP_C"][2:])
    response = hashlib.md5(bytes([int(values["CHAP_I"])]) + SECRET.encode()
                           + challenge).hexdigest()
    mine = bytes(range(100, 116))
    result, f, answers = step(login, w.login(
        [("CHAP_N", "web1"), ("CHAP_R", "0x" + response), ("CHAP_I", "77"),
         ("CHAP_C", "0x" + mine.hex())], csg=0, nsg=1))
    values = dict(answers)
    assert result.state == "continue" and f["status_class"] == 0
    assert values["CHAP_N"] == "target1"
    assert values["CHAP_R"] == "0x" + hashlib.md5(bytes([77]) + MUTUAL.encode() + mine).hexdigest()
    # our own challenge sent back (a reflection) is refused
    login = make_login(chap_target(mutual_secret=MUTUAL))
    step(login, w.login(first_keys("CHAP"), csg=0, nsg=1))
    _, _, answers = step(login, w.login([("CHAP_A", "5")], csg=0, nsg=1, transit=False))
    values = dict(answers)
    challenge = bytes.fromhex(values["CHAP_C"][2:])
    response = hashlib.md5(bytes([int(values["CHAP_I"])]) + SECRET.encode()
                           + challenge).hexdigest()
    result, _, _ = step(login, w.login([("CHAP_N", "web1"), ("CHAP_R", "0x" + response),
                                        ("CHAP_I", "1"), ("CHAP_C", values["CHAP_C"])],
                                       csg=0, nsg=1))
    assert result.state == "failed" and result.reason == "chap"


def test_chap_required_but_skipped():
    login = make_login(chap_target())
    result, f, _ = step(login, w.login(first_keys("None") + IPXE_OPERATIONAL, csg=1, nsg=3))
    assert result.state == "failed" and result.reason == "auth_required"
    assert (f["status_class"], f["status_detail"]) == (2, 1)
    login = make_login(chap_target())
    result, _, answers = step(login, w.login(first_keys("None"), csg=0, nsg=1))
    assert result.state == "failed" and ("AuthMethod", "Reject") in answers


@pytest.mark.parametrize("key,value,answer", [
    ("X-com.example.Foo", "1", "NotUnderstood"),
    ("FavouriteColour", "blue", "NotUnderstood"),
    ("MaxBurstLength", "100", "Reject"),
    ("MaxBurstLength", "many", "Reject"),
    ("InitialR2T", "Maybe", "Reject"),
    ("HeaderDigest", "MD5", "Reject"),
    ("ErrorRecoveryLevel", "7", "Reject"),
    ("OFMarkInt", "2048~2048", "Reject"),
    ("TargetAlias", "x", "Irrelevant"),
    ("MaxBurstLength", "0x1000", "4096"),
])
def test_key_answers(key, value, answer):
    login = make_login()
    step(login, w.login(first_keys("None"), csg=0, nsg=1))
    result, _, answers = step(login, w.login([(key, value)], csg=1, nsg=3))
    assert result.state == "done"
    assert (key, answer) in answers


def test_discovery_irrelevant_keys():
    login = make_login()
    keys = [("InitiatorName", INITIATOR), ("SessionType", "Discovery"), ("AuthMethod", "None")]
    step(login, w.login(keys, csg=0, nsg=1))
    result, _, answers = step(login, w.login([("InitialR2T", "Yes"), ("MaxBurstLength", "512"),
                                              ("HeaderDigest", "None")], csg=1, nsg=3))
    assert result.state == "done" and login.session_type == "Discovery"
    assert ("InitialR2T", "Irrelevant") in answers and ("MaxBurstLength", "Irrelevant") in answers
    assert ("HeaderDigest", "None") in answers
    assert not any(k == "TargetPortalGroupTag" for k, _ in answers)


def test_refusals():
    cases = [
        (first_keys("None", TargetName="iqn.2026-11.org.example:nope"), {}, (2, 3),
         "unknown_target"),
        ([("TargetName", IQN), ("AuthMethod", "None")], {}, (2, 7), "missing_key"),
        ([("InitiatorName", INITIATOR), ("AuthMethod", "None")], {}, (2, 7), "missing_key"),
        (first_keys("None"), {"vmin": 1, "vmax": 2}, (2, 5), "version"),
        (first_keys("None", SessionType="Weird"), {}, (2, 9), "bad_key"),
        (first_keys("None"), {"tsih": 5}, (2, 10), "protocol"),
    ]
    for keys, extra, status, reason in cases:
        result, f, _ = step(make_login(), w.login(keys, csg=0, nsg=1, **extra))
        assert result.state == "failed", keys
        assert (f["status_class"], f["status_detail"]) == status, keys
        assert result.reason == reason


def test_repeated_key_ends_login():
    login = make_login()
    step(login, w.login(first_keys("None"), csg=0, nsg=1))
    step(login, w.login([("MaxBurstLength", "65536")], csg=1, nsg=3, transit=False))
    result, f, _ = step(login, w.login([("MaxBurstLength", "65536")], csg=1, nsg=3))
    assert result.state == "failed" and (f["status_class"], f["status_detail"]) == (2, 0)


def test_text_continued_over_pdus():
    login = make_login()
    raw = w.text(first_keys("None"))
    result, f, answers = step(login, w.login(raw[:10], csg=0, nsg=1, transit=False, cont=True))
    assert result.state == "continue" and answers == [] and f["status_class"] == 0
    result, _, answers = step(login, w.login(raw[10:], csg=0, nsg=1))
    assert result.state == "continue" and ("AuthMethod", "None") in answers


def test_allow_list():
    target = TargetConfig(IQN, "disk1", allow=(INITIATOR, "198.51.100.0/24", "192.0.2.99"))
    assert allowed(target, INITIATOR, "203.0.113.1")
    assert allowed(target, "iqn.2000-01.com.other:x", "198.51.100.7")
    assert allowed(target, "iqn.2000-01.com.other:x", "192.0.2.99")
    assert not allowed(target, "iqn.2000-01.com.other:x", "192.0.2.10")
    login = make_login(target)
    result, f, _ = step(login, w.login(
        [("InitiatorName", "iqn.2000-01.com.other:x"), ("TargetName", IQN)], csg=0, nsg=1))
    assert result.reason == "not_allowed" and (f["status_class"], f["status_detail"]) == (2, 2)
