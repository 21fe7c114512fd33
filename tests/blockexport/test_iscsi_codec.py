"""The iSCSI PDU codec (services/blockexport/iscsi_pdu.py) with bytes: CRC32C against RFC 3720's
vectors, every received opcode decoded from PDUs built by hand (tests/blockexport/iscsiwire.py),
digests checked, every sent PDU's fixed fields, and decode never raising anything but
DecodeError."""

from __future__ import annotations

import struct

import iscsiwire as w
import pytest
from hypothesis import given, settings, strategies as st

from services.blockexport import iscsi_pdu as p


def test_crc32c_rfc3720_vectors():
    # RFC 3720 appendix B.4
    assert p.crc32c(bytes(32)) == 0x8A9136AA
    assert p.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert p.crc32c(bytes(range(32))) == 0x46DD794E
    assert p.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


def test_frame_lengths():
    raw = w.command(b"\x2a" + bytes(15), itt=5, cmdsn=9, edtl=4096, write=True, data=b"abcde")
    assert p.frame_lengths(raw[:48], False, False) == (0, 8)
    assert p.frame_lengths(raw[:48], True, True) == (4, 12)


def test_scsi_command_with_immediate_data_and_digests():
    raw = w.command(bytes([0x2A, 0, 0, 0, 0, 9, 0, 0, 1, 0]), itt=0x1234, cmdsn=77, edtl=512,
                    write=True, lun=1, data=b"x" * 512, hd=True, dd=True)
    c = p.decode(raw, True, True)
    assert isinstance(c, p.ScsiCommand)
    assert (c.itt, c.cmdsn, c.edtl, c.write, c.read, c.final, c.lun >> 48) == \
        (0x1234, 77, 512, True, False, True, 1)
    assert c.cdb[:10] == bytes([0x2A, 0, 0, 0, 0, 9, 0, 0, 1, 0]) and len(c.cdb) == 16
    assert c.data == b"x" * 512
    bad_header = bytearray(raw)
    bad_header[20] ^= 1
    with pytest.raises(p.DigestError) as info:
        p.decode(bytes(bad_header), True, True)
    assert info.value.which == "header"
    bad_data = bytearray(raw)
    bad_data[60] ^= 1
    with pytest.raises(p.DigestError) as info:
        p.decode(bytes(bad_data), True, True)
    assert info.value.which == "data" and info.value.reason == "data_digest"


def test_extended_cdb_ahs():
    cdb = bytes(range(1, 33))  # a 32-byte CDB: 16 in the BHS, 16 in an Extended CDB AHS
    bhs = bytearray(w.command(cdb[:16], itt=1, cmdsn=1)[:48])
    bhs[4] = 5  # TotalAHSLength: 20 bytes = length(2) type(1) reserved(1) + 16
    ahs = (17).to_bytes(2, "big") + b"\x01\x00" + cdb[16:]
    c = p.decode(bytes(bhs) + ahs)
    assert c.cdb == cdb
    bhs[4] = 1
    with pytest.raises(p.DecodeError):
        p.decode(bytes(bhs) + (40).to_bytes(2, "big") + b"\x01\x00")


def test_every_received_opcode():
    login = p.decode(w.login([("InitiatorName", "iqn.x:y")], csg=1, nsg=3, itt=9, cmdsn=4,
                             cid=3, tsih=0x22))
    assert isinstance(login, p.LoginRequest)
    assert (login.transit, login.csg, login.nsg, login.itt, login.cmdsn, login.cid,
            login.tsih, login.isid) == (True, 1, 3, 9, 4, 3, 0x22, w.ISID)
    assert login.immediate and p.parse_text(login.data) == [("InitiatorName", "iqn.x:y")]
    d = p.decode(w.data_out(b"abcd", itt=3, ttt=7, datasn=2, offset=8192, final=False))
    assert isinstance(d, p.DataOut)
    assert (d.itt, d.ttt, d.datasn, d.offset, d.final, d.data) == (3, 7, 2, 8192, False, b"abcd")
    n = p.decode(w.nop_out(itt=5, cmdsn=6, data=b"ping"))
    assert isinstance(n, p.NopOut) and (n.itt, n.cmdsn, n.data) == (5, 6, b"ping")
    t = p.decode(w.task_mgmt(1, itt=8, cmdsn=9, ref_itt=4, ref_cmdsn=3, lun=1))
    assert isinstance(t, p.TaskMgmtRequest)
    assert (t.function, t.ref_itt, t.ref_cmdsn, t.lun >> 48) == (1, 4, 3, 1)
    lo = p.decode(w.logout(itt=10, cmdsn=11, reason=1, cid=2))
    assert isinstance(lo, p.LogoutRequest) and (lo.reason, lo.cid) == (1, 2)
    tx = p.decode(w.text_request([("SendTargets", "All")], itt=2, cmdsn=1))
    assert isinstance(tx, p.TextRequest) and tx.final and not tx.cont
    snack = bytes([0x10, 0x80]) + bytes(46)
    assert isinstance(p.decode(snack), p.SnackRequest)
    assert isinstance(p.decode(bytes([0x21, 0x80]) + bytes(46)), p.Unknown)


def test_sent_pdus_fields():
    n = p.Numbers(statsn=10, expcmdsn=20, maxcmdsn=51)
    f = w.fields(p.nop_in(n, itt=3, ttt=0xFFFFFFFF))
    assert (f["op"], f["flags"], f["itt"], f["ttt"], f["statsn"], f["expcmdsn"],
            f["maxcmdsn"]) == (0x20, 0x80, 3, 0xFFFFFFFF, 10, 20, 51)
    header, data = p.scsi_response(n, 7, 2, sense=b"\x70" + bytes(17), underflow=100,
                                   expdatasn=3)
    f = w.fields(header)
    assert (f["op"], f["flags"], f["b3"], f["dsl"], f["f36"], f["f44"]) == \
        (0x21, 0x82, 2, 20, 3, 100)
    assert data[:2] == b"\x00\x12"
    f = w.fields(p.data_in(n, 7, 0, 4, 8192, 4096, final=True, status=0, overflow=512))
    assert (f["op"], f["flags"], f["dsl"], f["statsn"], f["f36"], f["f40"], f["f44"]) == \
        (0x25, 0x85, 4096, 10, 4, 8192, 512)
    f = w.fields(p.data_in(n, 7, 0, 0, 0, 4096, final=False))
    assert f["flags"] == 0 and f["statsn"] == 0
    f = w.fields(p.r2t(n, 7, 0, ttt=99, r2tsn=1, offset=65536, length=262144))
    assert (f["op"], f["ttt"], f["f36"], f["f40"], f["f44"]) == (0x31, 99, 1, 65536, 262144)
    f = w.fields(p.task_mgmt_response(n, 8, 5))
    assert (f["op"], f["b2"]) == (0x22, 5)
    lr = p.login_response(n, transit=True, cont=False, csg=1, nsg=3, isid=w.ISID, tsih=0x55,
                          itt=1, status_class=2, status_detail=1)
    f = w.fields(lr)
    assert (f["op"], f["flags"], f["tsih"], f["status_class"], f["status_detail"]) == \
        (0x23, 0x87, 0x55, 2, 1)
    assert lr[8:14] == w.ISID
    header, data = p.reject(n, p.RejectReason.PROTOCOL_ERROR, b"\x05" + bytes(47))
    f = w.fields(header)
    assert (f["op"], f["b2"], f["itt"], f["dsl"]) == (0x3F, 4, 0xFFFFFFFF, 48)
    assert data[0] == 5
    f = w.fields(p.logout_response(n, 12, 0))
    assert (f["op"], f["itt"]) == (0x26, 12)
    f = w.fields(p.async_message(n, 1, param3=5))
    assert f["op"] == 0x32 and f["f36"] >> 24 == 1


def test_frame_pads_and_digests():
    raw = p.frame(p.nop_in(p.Numbers(1, 1, 1), 1, 0xFFFFFFFF), b"abc", True, True)
    assert len(raw) == 48 + 4 + 4 + 4
    assert struct.unpack("<I", raw[48:52])[0] == p.crc32c(raw[:48])
    assert struct.unpack("<I", raw[56:60])[0] == p.crc32c(b"abc\0")


def test_text_keys():
    assert p.parse_text(b"A=1\0B=x=y\0\0\0") == [("A", "1"), ("B", "x=y")]
    assert p.format_text([("A", "1")]) == b"A=1\0"
    for bad in (b"novalue\0", b"=1\0", b"A=\xff\0"):
        with pytest.raises(p.DecodeError):
            p.parse_text(bad)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.booleans(), st.booleans())
def test_decode_raises_only_decode_error(data, hd, dd):
    try:
        p.decode(data, hd, dd)
    except p.DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0x3F), st.integers(0, 255), st.binary(min_size=46, max_size=46),
       st.integers(0, 3))
def test_decode_any_header(op, flags, rest, ahs_words):
    bhs = bytearray(bytes([op, flags]) + rest)
    bhs[4] = ahs_words
    bhs[5:8] = b"\0\0\0"
    try:
        p.decode(bytes(bhs) + bytes(ahs_words * 4))
    except p.DecodeError:
        pass
