"""Helpers of the SCSI engine tests: CDB builders and a one-call initiator over a LogicalUnit."""

from __future__ import annotations

import dataclasses

from services.blockexport.scsi import LogicalUnit, Request, Response
from services.blockexport.scsi_sense import parse_sense

NEXUS_A = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test,i,0x23d000001"
NEXUS_B = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2,i,0x23d000002"


def cdb10(opcode: int, lba: int = 0, blocks: int = 0, flags: int = 0) -> bytes:
    return (bytes((opcode, flags)) + lba.to_bytes(4, "big") + b"\0"
            + blocks.to_bytes(2, "big") + b"\0")


def cdb12(opcode: int, lba: int = 0, blocks: int = 0, flags: int = 0) -> bytes:
    return (bytes((opcode, flags)) + lba.to_bytes(4, "big") + blocks.to_bytes(4, "big")
            + b"\0\0")


def cdb16(opcode: int, lba: int = 0, blocks: int = 0, flags: int = 0) -> bytes:
    return (bytes((opcode, flags)) + lba.to_bytes(8, "big") + blocks.to_bytes(4, "big")
            + b"\0\0")


def cdb6(opcode: int, lba: int = 0, blocks: int = 0) -> bytes:
    return bytes((opcode,)) + lba.to_bytes(3, "big") + bytes((blocks, 0))


def pr_out(action: int, key: int = 0, action_key: int = 0, kind: int = 0,
           flags: int = 0) -> tuple[bytes, bytes]:
    cdb = bytes((0x5F, action, kind, 0, 0)) + (24).to_bytes(4, "big") + b"\0"
    data = key.to_bytes(8, "big") + action_key.to_bytes(8, "big") + bytes(4) + bytes(
        (flags, 0, 0, 0))
    return cdb, data


def pr_in(action: int, allocation: int = 1024) -> bytes:
    return bytes((0x5E, action, 0, 0, 0, 0, 0)) + allocation.to_bytes(2, "big") + b"\0"


@dataclasses.dataclass
class Initiator:
    lu: LogicalUnit
    disk: object
    nexus: str = NEXUS_A

    def __call__(self, cdb: bytes, data: bytes = b"", expected: int | None = None,
                 write: bool | None = None) -> Response:
        if expected is None:
            expected = len(data) if data else 65536
        write = bool(data) if write is None else write
        return self.lu.execute(Request(cdb.ljust(16, b"\0"), 0, self.nexus, data, expected,
                                       not write, write), self.disk)

    def as_(self, nexus: str) -> Initiator:
        return Initiator(self.lu, self.disk, nexus)


def sense_of(response: Response) -> tuple[int, tuple[int, int]]:
    assert response.status == 0x02, response
    return parse_sense(response.sense)


def field_pointer(response: Response) -> tuple[bool, int, int | None]:
    """(C/D, byte, bit or None) of the sense-key-specific field pointer."""
    sks = response.sense[15]
    assert sks & 0x80, "SKSV not set"
    bit = sks & 0x07 if sks & 0x08 else None
    return bool(sks & 0x40), int.from_bytes(response.sense[16:18], "big"), bit
