"""Initiator-side iSCSI PDUs built by hand for the tests (RFC 7143 section 11), independent of
the target's encoder: login, text, SCSI command, Data-Out, NOP-Out, task management, logout;
and a reader of the target's responses' fixed fields."""

from __future__ import annotations

import struct

import crc32c as _crc

ISID = bytes.fromhex("400001370000")


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def pdu(bhs: bytes, data: bytes = b"", hd: bool = False, dd: bool = False) -> bytes:
    assert len(bhs) == 48
    bhs = bhs[:5] + len(data).to_bytes(3, "big") + bhs[8:]
    out = bhs
    if hd:
        out += struct.pack("<I", _crc.crc32c(bhs))
    if data:
        out += pad(data)
        if dd:
            out += struct.pack("<I", _crc.crc32c(pad(data)))
    return out


def text(pairs) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def login(pairs, *, csg=0, nsg=1, transit=True, cont=False, itt=1, cmdsn=1, isid=ISID,
          tsih=0, cid=0, expstatsn=0, vmin=0, vmax=0) -> bytes:
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit
                                                                             else 0)
    bhs = bytes([0x43, flags, vmax, vmin, 0, 0, 0, 0]) + isid + tsih.to_bytes(2, "big") \
        + struct.pack(">IHHII", itt, cid, 0, cmdsn, expstatsn) + bytes(16)
    return pdu(bhs, text(pairs) if not isinstance(pairs, bytes) else pairs)


def text_request(pairs, *, itt=2, ttt=0xFFFFFFFF, cmdsn=1, final=True, cont=False,
                 immediate=True) -> bytes:
    flags = (0x80 if final else 0) | (0x40 if cont else 0)
    bhs = bytes([0x04 | (0x40 if immediate else 0), flags, 0, 0, 0, 0, 0, 0]) + bytes(8) \
        + struct.pack(">IIII", itt, ttt, cmdsn, 0) + bytes(16)
    return pdu(bhs, text(pairs))


def lun_field(lun: int) -> bytes:
    return (lun << 48).to_bytes(8, "big")


def command(cdb: bytes, *, itt, cmdsn, edtl=0, read=False, write=False, final=True, lun=0,
            data=b"", immediate=False, hd=False, dd=False) -> bytes:
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
    bhs = bytes([0x01 | (0x40 if immediate else 0), flags, 0, 0, 0, 0, 0, 0]) + lun_field(lun) \
        + struct.pack(">IIII", itt, edtl, cmdsn, 0) + cdb.ljust(16, b"\0")
    return pdu(bhs, data, hd, dd)


def data_out(data: bytes, *, itt, ttt=0xFFFFFFFF, datasn=0, offset=0, final=True, lun=0,
             hd=False, dd=False) -> bytes:
    bhs = bytes([0x05, 0x80 if final else 0, 0, 0, 0, 0, 0, 0]) + lun_field(lun) \
        + struct.pack(">IIIIIIII", itt, ttt, 0, 0, 0, datasn, offset, 0)
    return pdu(bhs, data, hd, dd)


def nop_out(*, itt, cmdsn, ttt=0xFFFFFFFF, data=b"", immediate=True) -> bytes:
    bhs = bytes([0x00 | (0x40 if immediate else 0), 0x80, 0, 0, 0, 0, 0, 0]) + bytes(8) \
        + struct.pack(">IIII", itt, ttt, cmdsn, 0) + bytes(16)
    return pdu(bhs, data)


def task_mgmt(function: int, *, itt, cmdsn, ref_itt=0xFFFFFFFF, ref_cmdsn=0, lun=0) -> bytes:
    bhs = bytes([0x42, 0x80 | function, 0, 0, 0, 0, 0, 0]) + lun_field(lun) \
        + struct.pack(">IIIII", itt, ref_itt, cmdsn, 0, ref_cmdsn) + bytes(12)
    return pdu(bhs)


def logout(*, itt, cmdsn, reason=0, cid=0, immediate=True) -> bytes:
    bhs = bytes([0x06 | (0x40 if immediate else 0), 0x80 | reason, 0, 0, 0, 0, 0, 0]) \
        + bytes(8) + struct.pack(">IHHII", itt, cid, 0, cmdsn, 0) + bytes(16)
    return pdu(bhs)


def fields(bhs: bytes) -> dict:
    """The target PDU's fixed fields by RFC name."""
    itt, f20, f24, f28, f32, f36, f40, f44 = struct.unpack_from(">8I", bhs, 16)
    return {"op": bhs[0] & 0x3F, "flags": bhs[1], "b2": bhs[2], "b3": bhs[3],
            "dsl": int.from_bytes(bhs[5:8], "big"), "itt": itt, "ttt": f20, "statsn": f24,
            "expcmdsn": f28, "maxcmdsn": f32, "f36": f36, "f40": f40, "f44": f44,
            "status_class": bhs[36], "status_detail": bhs[37], "tsih": int.from_bytes(bhs[14:16], "big")}


def split(stream: bytes, hd: bool = False, dd: bool = False) -> list[tuple[bytes, bytes]]:
    """The (BHS, data) of each PDU in a byte stream from the target."""
    out = []
    pos = 0
    while pos < len(stream):
        bhs = stream[pos:pos + 48]
        dsl = int.from_bytes(bhs[5:8], "big")
        pos += 48 + bhs[4] * 4 + (4 if hd else 0)
        data = stream[pos:pos + dsl]
        pos += -(-dsl // 4) * 4 + (4 if dd and dsl else 0)
        out.append((bhs, data))
    return out


def parse_text(data: bytes) -> dict[str, str]:
    return dict(item.decode().split("=", 1) for item in data.split(b"\0") if item)


def parse_text_list(data: bytes) -> list[tuple[str, str]]:
    return [tuple(item.decode().split("=", 1)) for item in data.split(b"\0") if item]
