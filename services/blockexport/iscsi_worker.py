"""Where an iSCSI command runs: on the export's I/O thread (:class:`Worker`), or, for a plain
READ whose data is in the page cache, on the event loop at once (:func:`read_now`; most small
reads never get here: iscsi_direct.py answers them as they are framed).

- The I/O thread takes what is queued (up to :data:`BATCH` commands), runs each logical unit's
  commands through ``LogicalUnit.execute_many`` (consecutive writes in one storage call, one
  sync when one is due; consecutive SYNCHRONIZE CACHEs synced once) and hands the results to
  the loop in one call (:func:`_deliver`), which sends each connection's answers in one write.
- A read of at least :data:`SENDFILE_MIN` bytes on the loop costs no thread hop and no copy:
  its Data-In is sent with ``sendfile`` (iscsi_send.py) when ``preadv(RWF_NOWAIT)`` finds its
  first and last bytes cached (it fails at once instead of waiting for the disk; a page
  evicted in between would make the loop wait for one disk read). A smaller one is read with
  ``Disk.read_cached`` (all of it cached, or not at all). Otherwise, or when anything
  is unusual (a unit attention, a reservation, a bad field: ``LogicalUnit._plain`` decides, as
  for the engine's own short path), the command goes to the I/O thread. Only while the
  export's I/O thread has no command but READs queued or executing (``Served.busy``,
  :func:`holds_reads`), so a read never overtakes a write or any other command that came
  first. (Were queued READs to hold reads back too, several sessions reading at once would
  keep the thread's queue from ever running dry, and every read on the thread.)
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time

from services.blockexport import scsi
from services.blockexport.ioqueue import batches
from shared import logs

log = logs.get_logger("blockexport")

BATCH = 32  # commands an I/O thread takes from its queue at once
READS = frozenset((0x08, 0x28, 0xA8, 0x88))  # READ (6)/(10)/(12)/(16)
FAILED = scsi.Response(0x02, sense=bytes([0x70, 0, 0x04, 0, 0, 0, 0, 10]) + bytes(4)
                       + bytes([0x44, 0]) + bytes(4))  # HARDWARE ERROR / INTERNAL TARGET FAILURE
NOWAIT = getattr(os, "RWF_NOWAIT", 0)
GOOD = 0x00


class Worker:
    """One export's I/O thread: SCSI commands in arrival order, results to the loop in batches."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.loop = loop
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"iscsi-io-{name}")
        self.thread.start()

    def submit(self, jobs: list) -> None:
        """Queue a list of jobs (one wake-up of the thread for all of them)."""
        self.inbox.put(jobs)

    def stop(self) -> None:
        self.inbox.put(None)

    def _run(self) -> None:
        for jobs in batches(self.inbox, BATCH, lists=True):
            done = []
            start = 0
            while start < len(jobs):  # runs of one logical unit go to execute_many
                lu = jobs[start][2]
                end = start + 1
                while end < len(jobs) and jobs[end][2] is lu:
                    end += 1
                run = jobs[start:end]
                try:
                    responses = lu.execute_many([(j[3], j[4]) for j in run])
                except Exception as exc:  # noqa: BLE001 - the engine should not raise; never stop
                    log.exception("iscsi_execute_failed", reason=str(exc))
                    responses = [FAILED] * len(run)
                done += [(j[0], j[1], j[3], r, j[5]) for j, r in zip(run, responses, strict=True)]
                start = end
            self.loop.call_soon_threadsafe(_deliver, done)


def holds_reads(cdb: bytes) -> bool:
    """Whether a command on the I/O thread keeps reads off the event loop until it is done
    (``Served.busy``): anything but a READ. A read on the loop may overtake a READ still
    queued (neither changes what the other sees), never any other command."""
    return not cdb or cdb[0] not in READS


def _deliver(done) -> None:
    now = time.perf_counter()
    corked = set()
    for conn, task, request, response, started in done:
        served = conn.export
        if served is not None and holds_reads(request.cdb):
            served.busy -= 1
        conn.server.account(conn, request, response, now - started)
        if conn not in corked:
            conn.cork()
            corked.add(conn)
        conn.completed(task, response.status, response.data_in, response.sense,
                       response.overflow, response.underflow, flush=False)
    for conn in corked:
        conn.flush()
        conn.uncork()


def direct_fd(disk) -> int | None:
    """The file descriptor that holds ``disk``'s bytes as they are (a plain disk, the golden
    image of a session that belongs to no host), else None (an overlay maps blocks)."""
    fd = getattr(disk, "fd", None)
    if fd is None:
        cow = getattr(disk, "cow", None)
        if cow is not None and getattr(disk, "readonly", False) and not hasattr(disk, "mac"):
            fd = cow.golden
    return fd if NOWAIT else None


class FileData:
    """Data-In to send straight from a file (``sendfile``: no copy through Python)."""

    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd, self.offset, self.length = fd, offset, length

    def __len__(self) -> int:
        return self.length

    def part(self, start: int, end: int) -> FileData:
        return FileData(self.fd, self.offset + start, end - start)


SENDFILE_MIN = 32 << 10  # reads at least this large are sent with sendfile (measured: a
# 128 KiB sendfile costs the loop ~6 us, a pread and a send of it ~25 us)


def read_now(lu: scsi.LogicalUnit, request: scsi.Request, disk, fd: int | None,
             files: bool) -> scsi.Response | None:
    """The response of a plain READ the page cache can answer now, else None (it goes to the
    I/O thread): one of at least :data:`SENDFILE_MIN` bytes as a :class:`FileData` to
    ``sendfile`` from ``fd`` (a disk whose bytes are the file's, :func:`direct_fd`) when its
    first and last pages are cached and there is no data digest to compute (``files``); a
    smaller one read with :meth:`Disk.read_cached` (never waits)."""
    plain = lu._plain(request)
    if plain is None or plain[0]:
        return None
    _, offset, size = plain
    expected = request.expected_length
    if size > expected:
        return None
    if size < SENDFILE_MIN:
        data = bytearray(size)
        if not disk.read_cached(offset, memoryview(data)):
            return None
        return scsi.Response(GOOD, data, b"", 0, expected - size)
    if fd is None or not files:
        return None
    probe = bytearray(1)
    try:
        if os.preadv(fd, (probe,), offset, NOWAIT) != 1 or \
                os.preadv(fd, (probe,), offset + size - 1, NOWAIT) != 1:
            return None
    except OSError:  # EAGAIN: not cached; anything else: the I/O thread says what
        return None
    return scsi.Response(GOOD, FileData(fd, offset, size), b"", 0, expected - size)
