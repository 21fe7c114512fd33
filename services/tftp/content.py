"""What a transfer reads from: small files cached in memory, big ones streamed from disk,
rendered text, and the netascii conversion (RFC 764 line endings) for clients that ask for it.

Every source has ``read(n) -> bytes`` (in order; shorter than ``n`` only at the end) and
``close()``. The session keeps the unacknowledged window itself, so no source needs to seek.
"""

from __future__ import annotations

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

    def close(self) -> None:
        self._view = memoryview(b"")


class FileSource:
    """Streams a file from disk, one block per ``read`` (never the whole file in memory)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, n: int) -> bytes:
        return os.read(self._fd, n)

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

    def close(self) -> None:
        self._inner.close()


class NotAFile(Exception):
    """The name exists but is not a regular file (a directory, a device...)."""


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

    def open(self, path: Path) -> tuple[object, int, str]:
        """(source, size, outcome) with outcome ``hit``/``miss``/``streamed``.

        Raises FileNotFoundError, PermissionError (other OSError) or NotAFile.
        """
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotAFile(str(path))
            size = st.st_size
            if size > self.file_max or size > self.total_max:
                source, fd = FileSource(fd), -1
                return source, size, "streamed"
            key = (st.st_dev, st.st_ino, size, st.st_mtime_ns)
            entry = self._entries.get(path)
            if entry is not None and entry[0] == key:
                self._entries.move_to_end(path)
                return BytesSource(entry[1]), size, "hit"
            data = _read_all(fd, size)
            self._store(path, key, data)
            return BytesSource(data), len(data), "miss"
        finally:
            if fd >= 0:
                os.close(fd)

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
