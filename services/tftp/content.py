"""What a transfer reads from: small files cached in memory, big ones streamed from disk,
rendered text, and the netascii conversion (RFC 764 line endings) for clients that ask for it.

Every source has ``read(n) -> bytes`` (in order; shorter than ``n`` only at the end) and
``close()``. The session keeps the unacknowledged window itself, so no source needs to seek.

Only regular files are served. The type is checked before anything is opened (a FIFO would
block ``open`` until a writer comes, a device may act on being opened), and again on the
descriptor, opened with ``O_NONBLOCK``, so a name swapped for a FIFO in between cannot block
either. Opening and reading a whole file run in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import os
import stat
from pathlib import Path


class BytesSource:
    """Reads from bytes already in memory (cached files, rendered configs)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int):
        chunk = self._view[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk

    def skip(self, n: int) -> None:
        """Move ``n`` octets on without reading them (a transfer resumed midway)."""
        self._pos = min(self._pos + n, len(self._view))

    def window(self) -> tuple[memoryview, int, int]:
        """``(buffer, start, end)``: what is in memory from the position on, for a reader
        that takes it in place and then calls ``skip`` (the compiled pump)."""
        return self._view, self._pos, len(self._view)

    def close(self) -> None:
        self._view = memoryview(b"")


READ_CHUNK = 32 << 10  # a streamed file is read this much at a time (22 blocks of 1468)


class FileSource:
    """Streams a file from disk (never the whole file in memory): ``READ_CHUNK`` octets per
    ``os.read``, handed out as slices, so a block costs no syscall of its own."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._chunk = memoryview(b"")
        self._pos = 0

    def read(self, n: int):
        pos = self._pos
        end = pos + n
        if end <= len(self._chunk):
            self._pos = end
            return self._chunk[pos:end]
        return self._refill(n)

    def _refill(self, n: int):
        rest = bytes(self._chunk[self._pos:])
        # whole blocks per read: a chunk then ends where a block does, so ``rest`` stays empty
        data = os.read(self._fd, max(READ_CHUNK // n * n, n - len(rest)))
        while data and len(rest) + len(data) < n:  # a short read before the end (rare)
            more = os.read(self._fd, n - len(rest) - len(data))
            if not more:
                break
            data += more
        self._chunk = memoryview(rest + data if rest else data)
        self._pos = min(n, len(self._chunk))
        return self._chunk[:self._pos]

    def skip(self, n: int) -> None:
        """Move ``n`` octets on without reading them (a transfer resumed midway)."""
        left = len(self._chunk) - self._pos
        if n <= left:
            self._pos += n
            return
        os.lseek(self._fd, n - left, os.SEEK_CUR)
        self._chunk = memoryview(b"")
        self._pos = 0

    def window(self) -> tuple[memoryview, int, int]:
        """``(buffer, start, end)``: what the last ``os.read`` holds from the position on
        (see ``BytesSource.window``)."""
        return self._chunk, self._pos, len(self._chunk)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class NetasciiSource:
    """Converts another source to netascii: LF -> CR LF, CR -> CR NUL (RFC 764, RFC 1350)."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self._buffer = bytearray()
        self._eof = False

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n and not self._eof:
            raw = bytes(self._inner.read(max(n, 4096)))
            if not raw:
                self._eof = True
                break
            self._buffer += raw.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def skip(self, n: int) -> None:
        """Move ``n`` (converted) octets on (read and dropped: never on the per-block path)."""
        while n > 0:
            got = len(self.read(min(n, 65536)))
            if not got:
                return
            n -= got

    def close(self) -> None:
        self._inner.close()


READ_AHEAD = 32 << 20  # bytes of a streamed file the kernel is asked to read at once
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotAFile(Exception):
    """The name exists but is not a regular file; ``kind`` says what it is ("a FIFO")."""

    def __init__(self, path: Path, mode: int) -> None:
        self.kind = next((kind for test, kind in _KINDS if test(mode)), "not a file")
        super().__init__(f"{path}: not a regular file ({self.kind})")


def _regular(path: Path, st: os.stat_result) -> os.stat_result:
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(path, st.st_mode)
    return st


def _open_regular(path: Path, expected: os.stat_result, read_all: bool):
    """In a worker thread: (fd, None) or, with ``read_all``, (-1, the whole file). Opens with
    O_NONBLOCK (a FIFO put there since the stat cannot block) and checks that the descriptor
    is still that regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = _regular(path, os.fstat(fd))
        if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
            raise FileNotFoundError(f"{path} was replaced while being opened")
        if read_all:
            return -1, _read_all(fd, st.st_size)
        # the blocks are read where the transfer runs (maybe the event loop): have the kernel
        # read ahead, so that those reads find the page cache filled
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        os.posix_fadvise(fd, 0, min(st.st_size, READ_AHEAD), os.POSIX_FADV_WILLNEED)
        fd_out, fd = fd, -1
        return fd_out, None
    finally:
        if fd >= 0:
            os.close(fd)


def _close_opened(future: asyncio.Future) -> None:
    """The open finished after its request was cancelled: do not leak the descriptor."""
    if not future.cancelled() and future.exception() is None and future.result()[0] >= 0:
        os.close(future.result()[0])


class FileCache:
    """Opens files for transfers; files up to ``file_max`` bytes are read once and kept (least
    recently used evicted past ``total_max``), keyed by inode, size and mtime so an edited file
    is read again."""

    def __init__(self, file_max: int, total_max: int) -> None:
        self.file_max = file_max
        self.total_max = total_max
        self.total = 0
        self._entries: collections.OrderedDict[Path, tuple[tuple, bytes]] = \
            collections.OrderedDict()

    async def open(self, path: Path) -> tuple[object, int, str]:
        """(source, size, outcome) with outcome ``hit``/``miss``/``streamed``. A hit is one
        ``stat`` on the event loop; anything that opens or reads the file runs in a thread.

        Raises FileNotFoundError, NotADirectoryError (a file used as a directory),
        PermissionError (other OSError) or NotAFile.
        """
        st = _regular(path, os.stat(path))
        size = st.st_size
        streamed = size > self.file_max or size > self.total_max
        key = (st.st_dev, st.st_ino, size, st.st_mtime_ns)
        entry = None if streamed else self._entries.get(path)
        if entry is not None and entry[0] == key:
            self._entries.move_to_end(path)
            return BytesSource(entry[1]), size, "hit"
        opening = asyncio.ensure_future(asyncio.to_thread(_open_regular, path, st,
                                                          not streamed))
        try:
            fd, data = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        if streamed:
            return FileSource(fd), size, "streamed"
        self._store(path, key, data)
        return BytesSource(data), len(data), "miss"

    def _store(self, path: Path, key: tuple, data: bytes) -> None:
        old = self._entries.pop(path, None)
        if old is not None:
            self.total -= len(old[1])
        while self._entries and self.total + len(data) > self.total_max:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.total -= len(evicted)
        self._entries[path] = (key, data)
        self.total += len(data)


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break  # truncated while we read: serve what is there
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
