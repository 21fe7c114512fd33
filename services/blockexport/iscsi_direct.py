"""iSCSI reads answered as their commands are framed, from the page cache, on the event loop.

Most of what an initiator asks is READ of blocks the page cache holds. Handing each to the
export's I/O thread and back costs more than the read: a thread wake-up and GIL hand-overs per
batch, a Task, a Request and a Response per command, and the round trip sets the throughput of
an initiator with a queue of commands in flight (4 KiB random reads at QD 32, one session:
docs/benchmarks.md). So a SCSI Command is answered on the spot when

- it is a READ-like command without data or AHS that :meth:`Session.next_plain` lets through
  (in order, not immediate, a new ITT) and the connection has no data digest to compute;
- its export's I/O thread has no command but READs queued or running (``Served.busy``) and
  this socket read brought no command still to hand over to it (``Session.out.execute``): a
  read never overtakes a write or any other command that came first;
- the session has had its first read answered the full way (the ``first_read`` event stays
  with it), for the export's LUN;
- its EDTL fits in one Data-In PDU (:data:`ONE_PDU_MAX`, the initiator's
  MaxRecvDataSegmentLength and MaxBurstLength) and :meth:`LogicalUnit.plain_io` finds a plain
  READ (10)/(16) (no unit attention, no reservation, valid fields, in range) no longer than it;
- the storage layer reads it without waiting (:meth:`Disk.read_cached`: ``RWF_NOWAIT``, all
  of it in the page cache; no lock wait), as the AoE target's direct reads do (aoe_direct.py).

The answer is one buffer: the Data-In header with the GOOD status (phase collapse,
:meth:`Session.read_done`) followed by the data, read straight into it. Anything else takes
the full way (a Task, :mod:`iscsi_worker`), which answers the same bytes. The operation, byte,
status and latency counts of direct reads are added once per socket read (:meth:`account`);
their latency is from the start of that read's framing to the write of its answers.
"""

from __future__ import annotations

import time

from services.blockexport.iscsi_pdu import BHS
from services.blockexport.iscsi_session import lun_field

ONE_PDU_MAX = 32 << 10  # larger reads take the full way (iscsi_worker.read_now: sendfile)


class DirectReads:
    """One session's direct reads (made when a normal session starts without data digests)."""

    __slots__ = ("conn", "served", "lu", "disk", "lun", "lun_field", "nexus", "params",
                 "limit", "reads", "bytes")

    def __init__(self, conn) -> None:
        self.conn = conn
        self.served = conn.export
        self.lu = conn.lu
        self.disk = conn.disk
        self.lun = self.served.record.lun
        self.lun_field = lun_field(self.lun)
        self.nexus = conn.nexus
        self.params = self.limit = None
        self.reads = self.bytes = 0

    def serve(self, immediate: int, lun: int, itt: int, edtl: int, cmdsn: int,
              cdb: bytes) -> bool:
        """Answer this READ-like SCSI Command (its BHS fields) now if the page cache can; False:
        not done (the caller takes the full way)."""
        conn = self.conn
        session = conn.session
        if session.p is not self.params:  # at first, and after a Text negotiation changed it
            p = self.params = session.p
            self.limit = min(ONE_PDU_MAX, p.max_send_dsl, p.max_burst)
        if edtl > self.limit or self.served.busy or session.out.execute or not conn.read_once \
                or (lun >> 48) & 0x3FFF != self.lun \
                or not session.next_plain(immediate, itt, cmdsn):
            return False
        plain = self.lu.plain_io(cdb, self.nexus)
        if plain is None or plain[0] or plain[2] > edtl:
            return False
        _, offset, size = plain
        buf = bytearray(BHS + size)
        if not self.disk.read_cached(offset, memoryview(buf)[BHS:]):
            return False
        session.read_done(buf, itt, self.lun_field, edtl - size)
        self.reads += 1
        self.bytes += size
        return True

    def account(self, started: float) -> None:
        """Add the direct reads of one socket read (its framing began at ``started``) to the
        export's counts."""
        reads = self.reads
        if not reads:
            return
        served = self.served
        tally = served.tally
        tally["op", "read"] += reads
        tally["bytes", "read"] += self.bytes
        tally["status", "good"] += reads
        served.latency.add("read", time.perf_counter() - started, reads)
        self.reads = self.bytes = 0
