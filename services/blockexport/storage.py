"""Block storage behind the exports: plain disks and the calls every disk has.

Shared by every block protocol (AoE now, iSCSI next); it knows nothing of frames. All calls
block (file I/O): the server runs them in worker threads, never on the event loop.

Two kinds of disk, both with the same calls (:class:`Disk`):

- :class:`PlainDisk`: a file or block device, read-write or read-only.
- ``CowDisk`` (storage_cow.py, with the overlays' files and their crash safety): a golden image
  (opened read-only, never written) and one overlay per host, keyed by the host's MAC and
  created on its first write. ``CowDisk.view`` gives the disk one host sees: its overlay's
  blocks where it wrote, the golden image elsewhere.

The durability contract (docs/blockexport.md): when :meth:`Disk.write` returns, every write in
the batch is on stable storage (``fdatasync``), so the caller may answer all of them. One batch
holds the writes that were outstanding together, so one sync pays for many writes. A sector is
written by one ``pwrite`` of whole sectors, so it never reads back as a mix of two writes.
A write-back caller (iSCSI with WCE=1) passes ``sync=False``: the writes are in the kernel when
``write`` returns (a kill -9 of the process loses none of them) and durable after
:meth:`Disk.flush`; an overlay still syncs a batch's data before new blocks' bits go to ``map``.

Discard (SCSI UNMAP, :meth:`Disk.discard`): a plain disk punches holes (the range reads back as
zeros); an overlay drops the host's copy of the blocks (storage_cow.py).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Sequence

from services.blockexport.storage_holes import file_allocation, punch_hole, write_zeros

SECTOR = 512
NOWAIT = getattr(os, "RWF_NOWAIT", 0)  # Linux >= 4.14 (buffered reads)


class StorageError(Exception):
    """A disk cannot be opened or used; the message names the path and the reason."""


Write = tuple[int, bytes]  # (byte offset, whole sectors of data)
Extent = tuple[int, int]  # (byte offset, length in bytes)
UNMAPPED_ZEROS = "zeros"  # a discarded range reads back as zeros (plain disks: holes)
UNMAPPED_GOLDEN = "golden"  # ... as the golden image (overlays: the host's blocks dropped)


def _size_of(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)  # files and block devices alike


def _open(path: str, flags: int, what: str) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"{what} {path}: {exc.strerror}") from None


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) < length:  # past the end of a file that is shorter than it should be
        data += bytes(length - len(data))
    return data


def _pread_cached(fd: int, into: memoryview, offset: int) -> bool:
    """Fill ``into`` from ``fd`` at ``offset`` if the page cache holds all of it, without ever
    waiting for the device (RWF_NOWAIT); False when it does not (or on any error: the caller
    then reads the ordinary way, which reports errors)."""
    try:
        return os.preadv(fd, [into], offset, NOWAIT) == len(into)
    except OSError:
        return False


def _pwrite_full(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


class Disk:
    """What a block protocol needs of a disk (one host's view of it)."""

    size: int  # bytes (a whole number of sectors)
    readonly: bool

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def read_cached(self, offset: int, into: memoryview) -> bool:
        """Fill ``into`` with what :meth:`read` returns for ``len(into)`` bytes at ``offset``,
        if it can be had from the page cache without waiting for the device or a lock (an
        event loop may call it): True; else False (then :meth:`read`, in a thread)."""
        return False

    def write(self, writes: Sequence[Write], sync: bool = True) -> None:
        """Apply the writes in order; durable when it returns (raises OSError otherwise).
        With ``sync`` False (a write-back cache, iSCSI WCE=1) they are in the kernel when it
        returns (they survive a kill -9 of the process) and durable after :meth:`flush`."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make everything written durable (already so after every ``write(sync=True)``)."""

    # What an unmapped (discarded) range reads back as: UNMAPPED_ZEROS, UNMAPPED_GOLDEN, or
    # None when the disk cannot discard.
    unmapped: str | None = None

    def discard(self, extents: Sequence[Extent]) -> None:
        """Unmap the (offset, length) ranges: durable when it returns, then they read back as
        :attr:`unmapped` says. A disk may keep parts it cannot free (an overlay keeps the
        blocks an extent covers only partly)."""
        raise OSError(errno.EOPNOTSUPP, "this disk cannot discard")

    def allocation(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(offset, length, mapped) runs covering the range, in order."""
        return [(offset, length, True)]

    @property
    def sectors(self) -> int:
        return self.size // SECTOR


class PlainDisk(Disk):
    """A file or block device used as it is."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.fd = _open(path, os.O_RDONLY if readonly else os.O_RDWR, "cannot open backing")
        self.size = _size_of(self.fd) // SECTOR * SECTOR
        self._lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        return _pread_full(self.fd, length, offset)

    def read_cached(self, offset: int, into: memoryview) -> bool:
        if not NOWAIT or offset + len(into) > self.size:
            return False
        return _pread_cached(self.fd, into, offset)

    def write(self, writes: Sequence[Write], sync: bool = True) -> None:
        if self.readonly:
            raise OSError(errno.EROFS, "read-only export")
        with self._lock:
            for offset, data in writes:
                _pwrite_full(self.fd, data, offset)
            if sync:
                os.fdatasync(self.fd)

    def flush(self) -> None:
        if not self.readonly:
            os.fdatasync(self.fd)

    @property
    def unmapped(self) -> str | None:  # type: ignore[override]
        return None if self.readonly else UNMAPPED_ZEROS

    def discard(self, extents: Sequence[Extent]) -> None:
        """Punch holes (a block device discards and reads zeros); where the file system
        cannot, write zeros. Durable when it returns."""
        if self.readonly:
            raise OSError(errno.EROFS, "read-only export")
        with self._lock:
            for offset, length in extents:
                try:
                    punch_hole(self.fd, offset, length)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL,
                                         errno.ENODEV):
                        raise
                    write_zeros(self.fd, offset, length)
            os.fdatasync(self.fd)

    def allocation(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        return file_allocation(self.fd, offset, length)

    def close(self) -> None:
        os.close(self.fd)


def check_writes(disk: Disk, writes: Iterable[Write]) -> None:
    """Refuse writes that are not whole sectors inside the disk (a caller's bug)."""
    for offset, data in writes:
        if offset % SECTOR or len(data) % SECTOR or offset + len(data) > disk.size:
            raise ValueError(f"write of {len(data)} bytes at {offset} is not whole sectors "
                             f"inside a {disk.size}-byte disk")
