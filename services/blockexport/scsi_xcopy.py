"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): copies inside one logical
unit, block to block, done by the target without the data crossing the network.

The copy manager knows one copy target, the unit itself, named in the parameter list by an
identification descriptor (type E4h) holding one of the unit's designators (the NAA or the T10
vendor ID of VPD page 83h). Segment descriptors of type 02h (block device to block device) copy
ranges of it; anything else is refused with the sense SPC-4 gives. Results of a copy whose LIST
ID USAGE asks for them to be held (00b, 01b) are kept per I_T nexus until it ends.

The parsing and checks are pure (:func:`parse`); :func:`run` does the reads and writes.
"""

from __future__ import annotations

import dataclasses

from services.blockexport.scsi_cdb import be
from services.blockexport.scsi_sense import (
    ILLEGAL_REQUEST,
    NO_ADDITIONAL,
    PARAMETER_LIST_LENGTH_ERROR,
    Check,
    invalid_cdb,
    invalid_parameter,
)

COPY_ABORTED = 0x0A
UNREACHABLE_COPY_TARGET = (0x08, 0x04)
TOO_MANY_TARGET_DESCRIPTORS = (0x26, 0x06)
UNSUPPORTED_TARGET_DESCRIPTOR = (0x26, 0x07)
TOO_MANY_SEGMENT_DESCRIPTORS = (0x26, 0x08)
UNSUPPORTED_SEGMENT_DESCRIPTOR = (0x26, 0x09)

HEADER = 16
IDENTIFICATION = 0xE4  # target descriptor: identification descriptor
TARGET_LENGTH = 32
BLOCK_TO_BLOCK = 0x02  # segment descriptor: block device to block device
MAX_TARGETS = 2
MAX_SEGMENTS = 16
MAX_LIST_LENGTH = 1024  # bytes of target and segment descriptors
MAX_SEGMENT_BYTES = 32 << 20
HELD_RESULTS = 16  # copy results kept per nexus
COPY_STATUS, OPERATING_PARAMETERS = 0x00, 0x03


@dataclasses.dataclass(frozen=True)
class Segment:
    source: int  # target descriptor indexes
    destination: int
    blocks: int
    source_lba: int
    destination_lba: int


@dataclasses.dataclass(frozen=True)
class CopyList:
    list_id: int
    hold: bool  # LIST ID USAGE 00b or 01b: results kept for RECEIVE COPY RESULTS
    targets: int  # how many target descriptors (all of them this unit)
    segments: tuple[Segment, ...]


def parse(data: bytes, length: int, designators: list[bytes], block_size: int) -> CopyList:
    """The parameter list of EXTENDED COPY (LID1), checked; ``designators`` are this unit's
    designation descriptors (VPD 83h), whole."""
    if length < HEADER or len(data) < length:
        raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
    data = data[:length]
    usage = (data[1] >> 3) & 0x03
    targets_length, segments_length = be(data, 2, 2), be(data, 8, 4)
    inline = be(data, 12, 4)
    if inline:
        raise invalid_parameter(12)  # no inline data segments here
    if (HEADER + targets_length + segments_length > length
            or targets_length + segments_length > MAX_LIST_LENGTH):
        raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
    if targets_length % TARGET_LENGTH:
        raise invalid_parameter(2)
    if targets_length // TARGET_LENGTH > MAX_TARGETS:
        raise Check(ILLEGAL_REQUEST, TOO_MANY_TARGET_DESCRIPTORS)
    starts, position, end = [], HEADER + targets_length, HEADER + targets_length + segments_length
    while position < end:
        if position + 4 > end:
            raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
        starts.append(position)
        position += 4 + be(data, position + 2, 2)
    if position != end:
        raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
    if len(starts) > MAX_SEGMENTS:
        raise Check(ILLEGAL_REQUEST, TOO_MANY_SEGMENT_DESCRIPTORS)
    targets = targets_length // TARGET_LENGTH
    for index in range(targets):
        _target(data[HEADER + index * TARGET_LENGTH:HEADER + (index + 1) * TARGET_LENGTH],
                HEADER + index * TARGET_LENGTH, designators, block_size)
    segments = tuple(_segment(data, start, targets) for start in starts)
    return CopyList(data[0], usage in (0, 1), targets, segments)


def _target(descriptor: bytes, offset: int, designators: list[bytes], block_size: int) -> None:
    if descriptor[0] != IDENTIFICATION:
        raise Check(ILLEGAL_REQUEST, UNSUPPORTED_TARGET_DESCRIPTOR)
    if descriptor[1] & 0x1F:  # peripheral device type: only block devices (00h)
        raise invalid_parameter(offset + 1)
    # LU ID TYPE and NUL are ignored (SPC-4: the designator says which unit)
    size = descriptor[7]
    designator = bytes(descriptor[4:8 + size])
    matches = any(designator[0] & 0x0F == d[0] & 0x0F and designator[1] & 0x3F == d[1] & 0x3F
                  and designator[3:] == d[3:] for d in designators)
    if size > 20 or not matches:
        raise Check(COPY_ABORTED, UNREACHABLE_COPY_TARGET)
    if be(descriptor, 29, 3) != block_size:
        raise Check(COPY_ABORTED, UNREACHABLE_COPY_TARGET)


def _segment(data: bytes, start: int, targets: int) -> Segment:
    if data[start] != BLOCK_TO_BLOCK:
        raise Check(ILLEGAL_REQUEST, UNSUPPORTED_SEGMENT_DESCRIPTOR)
    if be(data, start + 2, 2) != 0x18:
        raise invalid_parameter(start + 2)
    if data[start + 1] & 0x02:  # DC: the count is in destination blocks; same unit, same size
        pass
    segment = Segment(be(data, start + 4, 2), be(data, start + 6, 2), be(data, start + 10, 2),
                      be(data, start + 12, 8), be(data, start + 20, 8))
    if segment.source >= targets or segment.destination >= targets:
        raise Check(COPY_ABORTED, UNREACHABLE_COPY_TARGET)
    return segment


def check_ranges(copy: CopyList, blocks: int, block_size: int) -> None:
    """Every segment inside the unit and within the segment limit, before anything is done."""
    for segment in copy.segments:
        if segment.blocks * block_size > MAX_SEGMENT_BYTES:
            raise Check(COPY_ABORTED, NO_ADDITIONAL)
        for lba in (segment.source_lba, segment.destination_lba):
            if lba + segment.blocks > blocks:
                raise Check(COPY_ABORTED, NO_ADDITIONAL)


def operating_parameters(block_size: int) -> bytes:
    out = bytearray(44)
    out[8:10] = MAX_TARGETS.to_bytes(2, "big")
    out[10:12] = MAX_SEGMENTS.to_bytes(2, "big")
    out[12:16] = MAX_LIST_LENGTH.to_bytes(4, "big")
    out[16:20] = MAX_SEGMENT_BYTES.to_bytes(4, "big")
    out[34:36] = (1).to_bytes(2, "big")  # total concurrent copies
    out[36] = 1  # maximum concurrent copies
    out[37] = block_size.bit_length() - 1  # data segment granularity (log2 bytes)
    codes = bytes((BLOCK_TO_BLOCK, IDENTIFICATION))
    out[43] = len(codes)
    data = bytes(out) + codes
    return (len(data) - 4).to_bytes(4, "big") + data[4:]


def copy_status(done: bool, segments: int, transferred_bytes: int) -> bytes:
    kib = min(transferred_bytes >> 10, 0xFFFFFFFF)
    return ((8).to_bytes(4, "big") + bytes((0x01 if done else 0x02,))
            + segments.to_bytes(2, "big") + bytes((0xF1,)) + kib.to_bytes(4, "big"))


def receive_copy_results(cdb: bytes, held: dict[int, bytes], block_size: int) -> bytes:
    action, list_id = cdb[1] & 0x1F, cdb[2]
    allocation = be(cdb, 10, 4)
    if action == OPERATING_PARAMETERS:
        return operating_parameters(block_size)[:allocation]
    if action == COPY_STATUS:
        if list_id not in held:
            raise invalid_cdb(2)
        return held[list_id][:allocation]
    raise invalid_cdb(1, 4)
