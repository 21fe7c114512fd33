"""AoE writes taken as their frames are read, without the full decode.

A host writing (an installer, a root file system on a copy-on-write overlay) sends bursts of
small ATA WRITE frames: 2 sectors each at MTU 1500, up to 64 in flight from Linux's ``aoe``
driver. The full path costs each of them a :class:`codec.Frame` (Header, Ata, a copy of the
data), :func:`policy.decide`, and in the I/O thread a :class:`policy.Reply` frame to encode:
measured ~25 us of CPU per frame beside a write of 1 KiB that costs the storage layer ~5 us
(and its share of one ``fdatasync`` per batch). Here a WRITE SECTORS (EXT) request is read with
one struct call (:func:`codec.peek_write`); when :func:`policy.direct_write` says the full
decision would be a :class:`policy.Write`, it joins its export's queue at once, with the wire
fields its reply needs. The I/O thread writes it in its batch exactly as before (each host's
writes of a batch, one sync, then the replies: durable when answered) and answers with
:func:`policy.io_head`, the same bytes as the full path (tests/blockexport/test_aoe_writes.py).
Anything else (a masked or reserved host, a broadcast, a count past the frame or the disk, a
read-only export, missing data) takes the full path, which answers it as the spec says.
"""

from __future__ import annotations

from services.blockexport import codec, policy
from services.blockexport.policy import Write

DATA_AT = codec.ATA_HEADER_LEN


class DirectWrites:
    def __init__(self, server) -> None:
        self.server = server

    def take(self, data: bytes, received: float) -> bool:
        """Queue ``data`` for its export's I/O thread if it is a write the fast path may
        take; False: not taken (the caller takes the full path)."""
        peek = codec.peek_write(data)
        if peek is None:
            return False
        src, major, minor, tag, aflags, count, lba = peek
        server = self.server
        served = server.by_address.get((major, minor))
        if served is None:
            return False
        step = policy.direct_write(served.target, served.state, src, major, minor, aflags,
                                   count, int.from_bytes(lba, "little"), len(data) - DATA_AT)
        if step is None:
            return False
        offset, length = step
        server._touch(served, src)
        server.queue_io(served, Write(None, offset, data[DATA_AT:DATA_AT + length]), received,
                        src, (tag, aflags, count, lba))
        return True
