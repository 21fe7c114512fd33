"""Sending PDUs on a connection's socket directly (``writev``, ``sendfile``), in order with
what its event loop transport has buffered.

``send_mixed`` writes a connection's frames in order; a :class:`iscsi_worker.FileData` part is
sent with ``sendfile`` (the kernel hands the page cache's pages to the socket: no copy into
Python and out again; measured 6 us of CPU per 128 KiB instead of ~25 for ``pread`` + ``send``).
The socket belongs to the event loop's transport, so this writes on it directly only while the
transport has nothing buffered: the first time the socket takes less than offered, the rest of
the frames (file parts read with ``pread``) go to the transport, which keeps the order and its
flow control (``pause_writing``). A file read here is of pages ``read_now`` found cached.
"""

from __future__ import annotations

import os

IOV_MAX = 512  # buffers per writev (Linux allows 1024)


def send_mixed(transport, sock: int, frames: list) -> None:
    direct = sock >= 0 and transport.get_write_buffer_size() == 0
    parts: list = []
    for frame in frames:
        if not hasattr(frame, "part"):
            parts.append(frame)
            continue
        if direct and parts:
            direct = _writev(transport, sock, parts)
            parts = []
        if direct:
            sent = _sendfile(sock, frame.fd, frame.offset, frame.length)
            if sent == frame.length:
                continue
            direct = False
            parts.append(os.pread(frame.fd, frame.length - sent, frame.offset + sent))
        else:
            parts.append(os.pread(frame.fd, frame.length, frame.offset))
    if parts:
        if direct:
            _writev(transport, sock, parts)
        else:
            transport.writelines(parts)


def send_direct(transport, sock: int, frames: list) -> None:
    """Write ``frames`` on the socket with ``writev``, which lets go of the GIL while the
    kernel sends (the I/O thread runs meanwhile; the transport's own write holds it), when the
    transport has nothing buffered; what the socket does not take, and everything while the
    transport has something buffered, goes to the transport."""
    if sock >= 0 and transport.get_write_buffer_size() == 0:
        _writev(transport, sock, frames)
    else:
        transport.writelines(frames)


def _sendfile(sock: int, fd: int, offset: int, length: int) -> int:
    sent = 0
    while sent < length:
        try:
            n = os.sendfile(sock, fd, offset + sent, length - sent)
        except BlockingIOError:
            break
        if n == 0:  # the file is shorter than the disk says: the rest is read (zeros)
            break
        sent += n
    return sent


def _writev(transport, sock: int, parts: list) -> bool:
    """Write ``parts`` on the socket; what it does not take goes to the transport. True when
    all went directly."""
    for start in range(0, len(parts), IOV_MAX):
        chunk = parts[start:start + IOV_MAX]
        try:
            n = os.writev(sock, chunk)
        except BlockingIOError:
            n = 0
        total = sum(len(p) for p in chunk)
        if n < total:
            rest = []
            for part in chunk:
                size = len(part)
                if n >= size:
                    n -= size
                    continue
                rest.append(memoryview(part)[n:] if n else part)
                n = 0
            transport.writelines(rest + parts[start + IOV_MAX:])
            return False
    return True
