"""SCSI status codes, sense keys, additional sense codes and fixed-format sense data (SPC-4).

Pure. A command handler that refuses a request raises :class:`Check` (a CHECK CONDITION with
its sense key, ASC/ASCQ and, for a bad CDB or parameter list field, the sense-key-specific
field pointer); the engine turns it into a :class:`~services.blockexport.scsi.Response`.
"""

from __future__ import annotations

import dataclasses

# Status (SAM-5 5.3)
GOOD = 0x00
CHECK_CONDITION = 0x02
CONDITION_MET = 0x04
BUSY = 0x08
RESERVATION_CONFLICT = 0x18
TASK_SET_FULL = 0x28
ACA_ACTIVE = 0x30
TASK_ABORTED = 0x40

# Sense keys (SPC-4 4.5.6)
NO_SENSE = 0x0
RECOVERED_ERROR = 0x1
NOT_READY = 0x2
MEDIUM_ERROR = 0x3
HARDWARE_ERROR = 0x4
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7
ABORTED_COMMAND = 0xB
MISCOMPARE = 0xE

# Additional sense code and qualifier, as (ASC, ASCQ)
NO_ADDITIONAL = (0x00, 0x00)
WRITE_ERROR = (0x0C, 0x00)
UNRECOVERED_READ_ERROR = (0x11, 0x00)
INVALID_FIELD_IN_INFORMATION_UNIT = (0x0E, 0x03)
PARAMETER_LIST_LENGTH_ERROR = (0x1A, 0x00)
MISCOMPARE_DURING_VERIFY = (0x1D, 0x00)
INVALID_COMMAND_OPERATION_CODE = (0x20, 0x00)
LBA_OUT_OF_RANGE = (0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
LOGICAL_UNIT_NOT_SUPPORTED = (0x25, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST = (0x26, 0x00)
WRITE_PROTECTED = (0x27, 0x00)
POWER_ON_RESET = (0x29, 0x00)
BUS_DEVICE_RESET = (0x29, 0x03)
NEXUS_LOSS = (0x29, 0x07)
MODE_PARAMETERS_CHANGED = (0x2A, 0x01)
RESERVATIONS_PREEMPTED = (0x2A, 0x03)
RESERVATIONS_RELEASED = (0x2A, 0x04)
REGISTRATIONS_PREEMPTED = (0x2A, 0x05)
COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = (0x2F, 0x00)
SAVING_PARAMETERS_NOT_SUPPORTED = (0x39, 0x00)
INTERNAL_TARGET_FAILURE = (0x44, 0x00)
INSUFFICIENT_REGISTRATION_RESOURCES = (0x55, 0x04)
SPACE_ALLOCATION_FAILED = (0x27, 0x07)  # SBC-3: write protect, space allocation failed

FIXED_SENSE_LENGTH = 18


@dataclasses.dataclass(frozen=True)
class Field:
    """The sense-key-specific field pointer: which byte (and bit) of the CDB or of the
    parameter list is wrong (SPC-4 4.5.2.4.2)."""
    byte: int
    bit: int | None = None
    cdb: bool = True  # C/D: the CDB (True) or the parameter data (False)


class Check(Exception):
    """A command ends with CHECK CONDITION and this sense."""

    def __init__(self, key: int, code: tuple[int, int], field: Field | None = None,
                 information: int | None = None) -> None:
        super().__init__(f"sense key {key:#x} asc/ascq {code[0]:#04x}/{code[1]:#04x}")
        self.key = key
        self.code = code
        self.field = field
        self.information = information

    def sense(self) -> bytes:
        return fixed_sense(self.key, self.code, self.field, self.information)


def fixed_sense(key: int, code: tuple[int, int], field: Field | None = None,
                information: int | None = None) -> bytes:
    """Fixed-format sense data, current error (response code 0x70), 18 bytes."""
    out = bytearray(FIXED_SENSE_LENGTH)
    out[0] = 0x70
    if information is not None:
        out[0] |= 0x80  # VALID: the INFORMATION field holds a value
        out[3:7] = (information & 0xFFFFFFFF).to_bytes(4, "big")
    out[2] = key & 0x0F
    out[7] = FIXED_SENSE_LENGTH - 8
    out[12], out[13] = code
    if field is not None:
        sks = 0x80 | (0x40 if field.cdb else 0)
        if field.bit is not None:
            sks |= 0x08 | (field.bit & 0x07)
        out[15] = sks
        out[16:18] = field.byte.to_bytes(2, "big")
    return bytes(out)


def parse_sense(sense: bytes) -> tuple[int, tuple[int, int]]:
    """(sense key, (ASC, ASCQ)) of fixed or descriptor sense data (for tests and logs)."""
    if len(sense) < 4:
        return NO_SENSE, NO_ADDITIONAL
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F, (sense[2], sense[3])
    if len(sense) < 14:
        return sense[2] & 0x0F, NO_ADDITIONAL
    return sense[2] & 0x0F, (sense[12], sense[13])


def invalid_cdb(byte: int, bit: int | None = None) -> Check:
    return Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, Field(byte, bit))


def invalid_parameter(byte: int, bit: int | None = None) -> Check:
    return Check(ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAMETER_LIST, Field(byte, bit, cdb=False))


def lba_out_of_range() -> Check:
    return Check(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)


def write_protected() -> Check:
    return Check(DATA_PROTECT, WRITE_PROTECTED)
