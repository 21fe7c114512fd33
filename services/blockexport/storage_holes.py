"""Holes in files for the storage layer's discard (SCSI UNMAP) and allocation map (GET LBA
STATUS): punching them, writing zeros where that is not possible, finding them."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

SECTOR = 512

_FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def punch_hole(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE): the range reads back as zeros, its space freed."""
    if length <= 0:
        return
    if _libc.fallocate(fd, _FALLOC_PUNCH, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def write_zeros(fd: int, offset: int, length: int) -> None:
    """Zeros over the range, 1 MiB a write (where holes cannot be punched)."""
    chunk = bytes(min(length, 1 << 20))
    end = offset + length
    while offset < end:
        view = memoryview(chunk[:end - offset])
        position = offset
        while view:
            done = os.pwrite(fd, view, position)
            view, position = view[done:], position + done
        offset += len(chunk)


def file_allocation(fd: int, offset: int, length: int) -> list[tuple[int, int, bool]]:
    """Data and hole runs of a file (SEEK_DATA/SEEK_HOLE); all mapped where unsupported."""
    end = offset + length
    out: list[tuple[int, int, bool]] = []
    position = offset
    while position < end:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no SEEK_DATA here (a block device): all mapped
                return [(offset, length, True)]
            data = end  # only a hole from here to the end of the file
        if data > position:
            stop = min(data, end)
            out.append((position, stop - position, False))
            position = stop
            continue
        try:
            hole = os.lseek(fd, position, os.SEEK_HOLE)
        except OSError:
            hole = end
        stop = min(max(hole, position + SECTOR), end)
        out.append((position, stop - position, True))
        position = stop
    return out
