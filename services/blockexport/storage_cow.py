"""Copy-on-write disks: a golden image and one overlay per host.

Holds :class:`CowDisk` (the golden image and its per-host overlays), :class:`HostView` (the
:class:`~services.blockexport.storage.Disk` one host sees), :class:`Overlay` (one host's
files) and the overlay directory naming. The durability contract and the plain disks are in
storage.py. All calls block (file I/O): the server runs them in worker threads.

An overlay is a directory ``<overlay_root>/<export>/<mac with dashes>/`` holding

- ``data``: a sparse file as large as the disk; only blocks the host wrote take space;
- ``map``: a 4,096-byte header (magic, block size, disk size) and one bit per block, set when
  the block's data in ``data`` is whole (the golden block merged with what the host wrote).

An overlay is removed (reset) by renaming its directory aside and deleting it; a process that
has it open notices within :data:`RECHECK` seconds (the directory's inode changed) and lets go,
so the CLI can reset an overlay the service has open.

Crash safety, in this order for every batch: the data of every write goes to ``data`` (a block
written for the first time gets its whole golden content merged in, so the file never holds a
half-copied block), ``fdatasync(data)``; only then are the new blocks' bits written to ``map``
and ``fdatasync(map)``. A crash before the map is synced loses only unanswered writes (their
blocks read from golden again); a write only sets bits, so a torn map write is harmless. Without
``sync`` the order is the same, but only the data sync of a batch that makes new blocks is
done: ``map`` never names a block whose data is not on stable storage, and a crash loses (reads
as golden, or as the block's older content) only writes no flush covered.
A new overlay is built in a ``.new`` directory, synced, and renamed into place.

Discard (SCSI UNMAP, :meth:`Disk.discard`): a plain disk punches holes (the range reads back as
zeros); an overlay drops the host's copy of the blocks an extent covers whole: their bits are
cleared and ``fdatasync(map)`` first, then their data is punched out. Those blocks read from
golden again. A crash between the two leaves unused bytes in ``data``, never a wrong block (a
block whose bit is clear is never read from ``data``, and its next write merges golden in
whole); a torn map write leaves each byte of bits as before or after the unanswered discard.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import struct
import threading
import time
from collections.abc import Sequence

from services.blockexport.storage import (
    NOWAIT,
    SECTOR,
    UNMAPPED_GOLDEN,
    Disk,
    Extent,
    StorageError,
    Write,
    _open,
    _pread_cached,
    _pread_full,
    _pwrite_full,
    _size_of,
)
from services.blockexport.storage_holes import punch_hole

MAP_HEADER = 4096
MAGIC = b"BYCOWMAP"
MAP_FORMAT = struct.Struct("<8sIIQ")  # magic, format version, block size, disk size in bytes
MAP_VERSION = 1
DEFAULT_BLOCK = 4096  # docs/blockexport.md: why 4 KiB
RECHECK = 1.0  # seconds between checks that an open overlay is still the one on disk


def mac_dir(mac: str) -> str:
    """The overlay directory name of a canonical MAC (``52:54:00:..`` -> ``52-54-00-..``)."""
    return mac.replace(":", "-")


def dir_mac(name: str) -> str:
    return name.replace("-", ":")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class OverlayInfo:
    mac: str
    path: str
    allocated: int  # bytes the overlay takes on disk (data and map)
    blocks: int  # blocks the host has written


class Overlay:
    """One host's writes over a golden image (see the module docstring for the layout)."""

    def __init__(self, path: str, golden_fd: int, size: int, block: int) -> None:
        self.path = path
        self.golden = golden_fd
        self.size = size
        self.block = block
        self.nblocks = (size + block - 1) // block
        self.data = _open(os.path.join(path, "data"), os.O_RDWR, "cannot open overlay data")
        self.mapfd = _open(os.path.join(path, "map"), os.O_RDWR, "cannot open overlay map")
        header = os.pread(self.mapfd, MAP_FORMAT.size, 0)
        magic, version, mblock, msize = MAP_FORMAT.unpack(header.ljust(MAP_FORMAT.size, b"\0"))
        if magic != MAGIC or version != MAP_VERSION:
            raise StorageError(f"overlay {path}: map is not a bootyard overlay map (version "
                               f"{MAP_VERSION}); reset the overlay")
        if mblock != block or msize != size:
            raise StorageError(f"overlay {path}: made for a {msize}-byte disk in {mblock}-byte "
                               f"blocks, the golden image is {size} bytes in {block}-byte "
                               "blocks (the golden image changed?); reset the overlay")
        self.bits = bytearray(_pread_full(self.mapfd, (self.nblocks + 7) // 8, MAP_HEADER))
        self.identity = _identity(path)
        self.checked = time.monotonic()

    @classmethod
    def create(cls, path: str, golden_fd: int, size: int, block: int) -> Overlay:
        """Make an empty overlay at ``path`` atomically (build aside, sync, rename)."""
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        scratch = path + ".new"
        shutil.rmtree(scratch, ignore_errors=True)
        os.mkdir(scratch)
        for name, length, head in (("data", size, b""),
                                   ("map", MAP_HEADER + (size // block + 8) // 8,
                                    MAP_FORMAT.pack(MAGIC, MAP_VERSION, block, size))):
            fd = os.open(os.path.join(scratch, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if head:
                    _pwrite_full(fd, head, 0)
                os.ftruncate(fd, length)
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(scratch)
        os.rename(scratch, path)
        _fsync_dir(parent)
        return cls(path, golden_fd, size, block)

    def allocated(self, index: int) -> bool:
        return bool(self.bits[index >> 3] & (1 << (index & 7)))

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        end = offset + length
        block = self.block
        while offset < end:
            index = offset // block
            mine = self.allocated(index)
            run_end = (index + 1) * block
            while run_end < end and self.allocated(run_end // block) == mine:
                run_end += block
            run_end = min(run_end, end)
            out += _pread_full(self.data if mine else self.golden, run_end - offset, offset)
            offset = run_end
        return bytes(out)

    def read_cached(self, offset: int, into: memoryview) -> bool:
        end, at = offset + len(into), offset
        block = self.block
        while at < end:
            index = at // block
            mine = self.allocated(index)
            run_end = (index + 1) * block
            while run_end < end and self.allocated(run_end // block) == mine:
                run_end += block
            run_end = min(run_end, end)
            if not _pread_cached(self.data if mine else self.golden,
                                 into[at - offset:run_end - offset], at):
                return False
            at = run_end
        return True

    def write(self, writes: Sequence[Write], sync: bool = True) -> None:
        """Data first; a batch that makes new blocks whole syncs the data before their bits
        go to ``map`` (so ``map`` never names a block whose data could be lost), synced too
        with ``sync``. Without ``sync`` (write-back) a batch of rewrites of the host's own
        blocks is only written; :meth:`flush` makes it durable."""
        block = self.block
        fresh: set[int] = set()  # blocks made whole in this batch (bits not yet in the map)
        for offset, data in writes:
            end = offset + len(data)
            first, last = offset // block, (end - 1) // block
            missing = [i for i in range(first, last + 1)
                       if not self.allocated(i) and i not in fresh]
            if not missing:
                _pwrite_full(self.data, data, offset)
                continue
            # Make every block of the range whole: the golden content of a new block's bytes
            # around the written ones, so the data file never holds half a block.
            start, stop = first * block, min((last + 1) * block, self.size)
            buffer = bytearray(stop - start)
            for edge in {first, last}:
                lo, hi = edge * block, min((edge + 1) * block, self.size)
                if lo < offset or hi > end:  # a partly written edge block: keep what is there
                    source = self.golden if edge in missing else self.data
                    buffer[lo - start:hi - start] = _pread_full(source, hi - lo, lo)
            buffer[offset - start:end - start] = data
            _pwrite_full(self.data, buffer, start)
            fresh.update(missing)
        if sync or fresh:
            os.fdatasync(self.data)
        if fresh:
            for index in fresh:
                self.bits[index >> 3] |= 1 << (index & 7)
            lo, hi = min(fresh) >> 3, (max(fresh) >> 3) + 1
            _pwrite_full(self.mapfd, self.bits[lo:hi], MAP_HEADER + lo)
            if sync:
                os.fdatasync(self.mapfd)

    def flush(self) -> None:
        """Data, then map, on stable storage (what write-back writes left in the kernel)."""
        os.fdatasync(self.data)
        os.fdatasync(self.mapfd)

    def discard(self, extents: Sequence[Extent]) -> None:
        """Drop the host's copy of every block an extent covers whole: the map bits are
        cleared and synced first (those blocks read from golden again), then the data file's
        ranges are punched out (their space freed; a crash in between only leaves unused
        bytes). Blocks an extent covers only partly keep the host's data. Whole bytes of the
        map are cleared by slices, so discarding a terabyte costs milliseconds, not a loop
        over its blocks."""
        block, bits = self.block, self.bits
        lo_changed, hi_changed = len(bits), -1
        punches: list[Extent] = []
        for offset, length in extents:
            end = min(offset + length, self.size)
            first = -(-offset // block)
            last = self.nblocks if end == self.size else end // block  # exclusive
            if first >= last:
                continue
            punches.append((first * block, min(last * block, self.size) - first * block))
            head, tail = (first + 7) >> 3, last >> 3  # the whole map bytes inside
            singles = (range(first, last) if head >= tail else
                       [*range(first, head << 3), *range(tail << 3, last)])
            for index in singles:
                if bits[index >> 3] & (1 << (index & 7)):
                    bits[index >> 3] &= ~(1 << (index & 7)) & 0xFF
                    lo_changed, hi_changed = (min(lo_changed, index >> 3),
                                              max(hi_changed, (index >> 3) + 1))
            if head < tail:
                middle = bytes(bits[head:tail])
                used = middle.lstrip(b"\0")
                if used:
                    lo_changed = min(lo_changed, tail - len(used))
                    hi_changed = max(hi_changed, head + len(middle.rstrip(b"\0")))
                    bits[head:tail] = bytes(tail - head)
        if hi_changed < 0:
            return
        _pwrite_full(self.mapfd, bits[lo_changed:hi_changed], MAP_HEADER + lo_changed)
        os.fdatasync(self.mapfd)
        for start, length in punches:
            try:
                punch_hole(self.data, start, length)
            except OSError:
                pass  # space not freed; the map already says golden

    def allocation(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        out: list[tuple[int, int, bool]] = []
        end = offset + length
        while offset < end:
            mine = self.allocated(offset // self.block)
            stop = min(((offset // self.block) + 1) * self.block, end)
            if out and out[-1][2] == mine:
                out[-1] = (out[-1][0], out[-1][1] + stop - offset, mine)
            else:
                out.append((offset, stop - offset, mine))
            offset = stop
        return out

    def blocks(self) -> int:
        return sum(bin(b).count("1") for b in self.bits)

    def close(self) -> None:
        os.close(self.data)
        os.close(self.mapfd)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _allocated_bytes(path: str) -> int:
    total = 0
    for name in ("data", "map"):
        try:
            total += os.stat(os.path.join(path, name)).st_blocks * 512
        except FileNotFoundError:
            pass
    return total


class CowDisk:
    """A golden image and its per-host overlays under ``<overlay_root>/<name>/``."""

    def __init__(self, golden: str, overlay_root: str, name: str,
                 block: int = DEFAULT_BLOCK, readonly: bool = False,
                 cleanup: bool = True) -> None:
        if block % SECTOR or block <= 0:
            raise StorageError(f"overlay block size {block} is not a multiple of {SECTOR}")
        self.golden_path = golden
        self.readonly = readonly
        self.golden = _open(golden, os.O_RDONLY, "cannot open golden image")
        self.size = _size_of(self.golden) // SECTOR * SECTOR
        self.block = block
        self.dir = os.path.join(overlay_root, name)
        self._overlays: dict[str, Overlay] = {}
        self._absent: dict[str, float] = {}  # mac -> when it was last seen to have no overlay
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        if cleanup:
            self.cleanup()

    def cleanup(self) -> None:
        """Remove overlays a crash left half built or half reset (``<mac>.new``). Not while
        another CowDisk of the same export may be making one."""
        if os.path.isdir(self.dir):
            for entry in os.listdir(self.dir):
                if entry.endswith(".new"):
                    shutil.rmtree(os.path.join(self.dir, entry), ignore_errors=True)

    def path_of(self, mac: str) -> str:
        return os.path.join(self.dir, mac_dir(mac))

    def view(self, mac: str) -> HostView:
        return HostView(self, mac)

    def lock(self, mac: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(mac, threading.Lock())

    def overlay(self, mac: str, create: bool) -> Overlay | None:
        """The host's overlay, opened once; made when ``create`` and it does not exist yet.
        Call with the host's lock held."""
        found = self._overlays.get(mac)
        path = self.path_of(mac)
        if found is not None:
            now = time.monotonic()
            if now - found.checked < RECHECK:
                return found
            found.checked = now
            if _identity(path) == found.identity:
                return found
            # reset (or removed) by someone else, e.g. `bootyard blockexport reset`: let go
            del self._overlays[mac]
            found.close()
            found = None
        self._absent.pop(mac, None)
        if os.path.isdir(path):
            found = Overlay(path, self.golden, self.size, self.block)
        elif create:
            found = Overlay.create(path, self.golden, self.size, self.block)
        if found is not None:
            self._overlays[mac] = found
        else:
            self._absent[mac] = time.monotonic()
        return found

    def known_overlay(self, mac: str) -> tuple[bool, Overlay | None]:
        """(known, overlay): what :meth:`overlay` found within the last :data:`RECHECK`
        seconds, with no file system call; (False, None) when it must look again. Call with
        the host's lock held."""
        now = time.monotonic()
        found = self._overlays.get(mac)
        if found is not None:
            return now - found.checked < RECHECK, found
        absent = self._absent.get(mac)
        return absent is not None and now - absent < RECHECK, None

    def overlays(self) -> list[OverlayInfo]:
        out = []
        if not os.path.isdir(self.dir):
            return out
        for entry in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, entry)
            if entry.endswith(".new") or not os.path.isdir(path):
                continue
            mac = dir_mac(entry)
            with self.lock(mac):
                try:
                    overlay = self.overlay(mac, create=False)
                    blocks = overlay.blocks() if overlay else 0
                except StorageError:
                    blocks = -1
            out.append(OverlayInfo(mac, path, _allocated_bytes(path), blocks))
        return out

    def reset(self, mac: str) -> bool:
        """Drop the host's overlay (its next read sees golden again); False if it had none."""
        with self.lock(mac):
            overlay = self._overlays.pop(mac, None)
            self._absent.pop(mac, None)
            if overlay is not None:
                overlay.close()
            path = self.path_of(mac)
            if not os.path.isdir(path):
                return False
            trash = path + ".new"  # removed at start-up if a crash interrupts this
            os.rename(path, trash)
            _fsync_dir(self.dir)
            shutil.rmtree(trash)
            return True

    def flush(self) -> None:
        """Make every open overlay durable (a write-back export being closed)."""
        for mac in list(self._overlays):
            with self.lock(mac):
                overlay = self._overlays.get(mac)
                if overlay is not None:
                    overlay.flush()

    def allocated_bytes(self) -> int:
        return sum(_allocated_bytes(os.path.join(self.dir, e))
                   for e in (os.listdir(self.dir) if os.path.isdir(self.dir) else ()))

    def close(self) -> None:
        for overlay in self._overlays.values():
            overlay.close()
        self._overlays.clear()
        os.close(self.golden)


class HostView(Disk):
    """One host's disk in a :class:`CowDisk`."""

    def __init__(self, cow: CowDisk, mac: str) -> None:
        self.cow = cow
        self.mac = mac
        self.size = cow.size
        self.readonly = cow.readonly

    def read(self, offset: int, length: int) -> bytes:
        with self.cow.lock(self.mac):
            overlay = self.cow.overlay(self.mac, create=False)
            if overlay is None:
                return _pread_full(self.cow.golden, length, offset)
            return overlay.read(offset, length)

    def read_cached(self, offset: int, into: memoryview) -> bool:
        cow = self.cow
        if not NOWAIT or offset + len(into) > self.size:
            return False
        lock = cow.lock(self.mac)
        if not lock.acquire(blocking=False):
            return False
        try:
            known, overlay = cow.known_overlay(self.mac)
            if not known:
                return False
            if overlay is not None:
                return overlay.read_cached(offset, into)
            return _pread_cached(cow.golden, into, offset)
        finally:
            lock.release()

    def write(self, writes: Sequence[Write], sync: bool = True) -> None:
        if self.readonly:
            raise OSError(errno.EROFS, "read-only export")
        with self.cow.lock(self.mac):
            self.cow.overlay(self.mac, create=True).write(writes, sync)

    def flush(self) -> None:
        with self.cow.lock(self.mac):
            overlay = self.cow.overlay(self.mac, create=False)
            if overlay is not None:
                overlay.flush()

    @property
    def unmapped(self) -> str | None:  # type: ignore[override]
        return None if self.readonly else UNMAPPED_GOLDEN

    def discard(self, extents: Sequence[Extent]) -> None:
        if self.readonly:
            raise OSError(errno.EROFS, "read-only export")
        with self.cow.lock(self.mac):
            overlay = self.cow.overlay(self.mac, create=False)
            if overlay is not None:  # no overlay: every block is golden already
                overlay.discard(extents)

    def allocation(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """Mapped = the host's own block; unmapped = golden."""
        with self.cow.lock(self.mac):
            overlay = self.cow.overlay(self.mac, create=False)
            if overlay is None:
                return [(offset, length, False)]
            return overlay.allocation(offset, length)
