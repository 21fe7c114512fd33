"""AoE reads answered as their frames are read, from the page cache, with no hop to a thread.

Most of what a booting host asks is ATA READ of blocks the page cache already holds (every host
of a profile reads the same golden image). Handing each such read to the export's I/O thread
and back costs more than the read itself: two thread wake-ups and a GIL hand-over per request,
which set the round trip and so the throughput of an initiator with a window of frames in
flight. So a read is answered on the spot when

- the frame is an ATA READ SECTORS (EXT) request (:func:`codec.peek_read`, one struct call)
  and :func:`policy.direct_read` says the full decision would be a :class:`policy.Read`;
- its export's I/O thread has nothing queued or running (a read never overtakes a write or
  flush it could see half done: those, and every read behind them, keep the ordered path);
- the host has had its first read answered and its I/O is not failing (the ``first_read``,
  ``io_error`` and ``io_recovered`` events stay with the I/O thread);
- the storage layer can read it without waiting (:meth:`Disk.read_cached`: ``RWF_NOWAIT``, all
  of it in the page cache; no lock wait).

Anything else goes the full way (decode, :func:`policy.decide`, the I/O thread). The reply is
the same bytes (tests/blockexport check it), sent as header and data in one ``sendmsg``. The
operation, byte and latency metrics of direct reads are added in bulk, within
:data:`FLUSH_DELAY` of a wake-up that answered some (not once per wake-up: a host reading one
block at a time, as iPXE does, would pay for it in every round trip).
"""

from __future__ import annotations

import asyncio
import time

from services.blockexport import codec, policy
from services.blockexport.metrics import LATENCY_BY
from shared.metrics import observe_all

FLUSH_DELAY = 0.05  # seconds from a wake-up with direct reads to their metrics


class DirectReads:
    def __init__(self, server) -> None:
        self.server = server
        self.pending: dict[int, list] = {}  # id(Served) -> [Served, reads, bytes]
        self.latencies: list[float] = []
        self.timer: asyncio.TimerHandle | None = None
        # One buffer for every direct read: sendmsg has copied the data when it returns.
        self.buffer = memoryview(bytearray(255 * codec.SECTOR))

    def serve(self, data: bytes, received: float) -> bool:
        """Answer ``data`` here if it is a read the page cache can answer now; False: not
        done (the caller takes the full path)."""
        peek = codec.peek_read(data)
        if peek is None:
            return False
        src, major, minor, tag, aflags, count, lba = peek
        server = self.server
        served = server.by_address.get((major, minor))
        if served is None or served.queued != served.completed:
            return False
        target = served.target
        step = policy.direct_read(target, served.state, src, major, minor, aflags, count,
                                  int.from_bytes(lba, "little"))
        if step is None:
            return False
        server._touch(served, src)  # first, as the full path does: it may start a new attach
        if src not in served.read_by or src in served.failing:
            return False
        offset, length = step
        out = self.buffer[:length]
        if not served.view(src).read_cached(offset, out):
            return False
        if not server.transport.send_parts(
                policy.read_done_head(target, src, tag, aflags, count, lba), out):
            return True  # counted as send_failed; the initiator retransmits
        counts = self.pending.get(id(served))
        if counts is None:
            counts = self.pending[id(served)] = [served, 0, 0]
        counts[1] += 1
        counts[2] += length
        self.latencies.append(time.perf_counter() - received)
        return True

    def drained(self) -> None:
        """After a socket wake-up (on the event loop): the metrics of its direct reads are
        added within :data:`FLUSH_DELAY`."""
        if self.latencies and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Add the direct reads since the last call to the metrics."""
        self.timer = None
        if self.latencies:
            observe_all(LATENCY_BY["read"], self.latencies)
            self.latencies = []
        if self.pending:
            for served, reads, nbytes in self.pending.values():
                served.counters["read"].inc(reads)
                served.counters["bytes_read"].inc(nbytes)
            self.pending = {}
