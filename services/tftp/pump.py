"""Lock-step transfers without the event loop per block (compiled only: Cython).

A 50-client server spends most of its user time per block around two syscalls: the event
loop's callback for the ready socket, the socket module's ``recv`` (a new bytes object) and
``send``, the transport's few lines (docs/benchmarks.md). The :class:`Pump` serves every
lock-step transfer's socket of one event loop from one epoll set: the loop watches the set's
descriptor, and one :meth:`Pump.service` call reads each ready socket with ``recv(2)`` into a
buffer of its own; a datagram equal to the transfer's expected ACK (compared by block number)
is answered at once with the prepared DATA (``sendmsg(2)`` of a header framed here, as
``codec.HEADER`` frames it, and the payload where it lies: no copy). The session's per-block
bookkeeping (what ``ReadSession.lockstep_sent`` does: the block counter, the RTT estimate, the
octets sent, the next block taken from the source) is done here too, on the state the
transfer lends each :class:`Slot` (``ReadSession.lockstep_lend``) and takes back
(``Slot.reclaim`` -> ``ReadSession.lockstep_restore``) before it reads or feeds its session;
everything else (another datagram, the last block's ACK) goes to the transfer's Python path
(``Transfer._handle``, ``Transfer._flush``), and so do the timers. So the RFC rules stay in
the session, and this module moves datagrams and keeps its books the session's way.

Built by scripts/build_native.py with Cython from this source and ``pump.pxd`` (the C
declarations); run as plain Python it refuses to import, and the transport then drives each
socket from the event loop itself (services/tftp/transport.py).
"""

# ruff: noqa: F821 - the C names (epoll_wait, c_recv, ...) are declared in pump.pxd, and C
# locals by annotation only (``events: epoll_event[64]``)
from __future__ import annotations

import os

import cython

if not cython.compiled:
    raise ImportError("services.tftp.pump runs only compiled (make native)")

RECV_SIZE = 4096    # what a client sends during a read transfer (as transport.RECV_SIZE)
EVENTS_MAX = 64     # ready sockets taken per epoll_wait (more: the next call, at once)
NO_TIMER = float("inf")


@cython.no_gc_clear  # the window's buffer is released in __dealloc__, while ``win`` lives
@cython.cclass
class Slot:
    """One lock-step transfer in the pump: its socket, and while the transfer has lent it the
    session's per-block state (``lend``; ``block`` -1: nothing lent, every datagram goes to
    the transfer), that state: the block sent and not ACKed and its payload, the payload read
    ahead, the RTT estimate, the octets sent, the deadline. An ACK of ``block`` releases the
    next DATA and the session's bookkeeping for it is done here, as
    ``ReadSession.lockstep_sent`` does it; ``reclaim`` writes the result back
    (``ReadSession.lockstep_restore``) before the transfer reads or feeds its session. Also
    when the transfer's timer is armed (``NO_TIMER``: not armed).

    Payloads are taken in place from what the source holds in memory (its ``window()``: a
    cached file, or the 32 KiB last read of a streamed one), one block after another, with no
    Python object per block; the source is moved on (``skip``) and the blocks become objects
    (slices) only when the window runs out or the state goes back to the session. A source
    without ``window`` (netascii) is read a block at a time (``read``)."""

    def __init__(self, fd: int, transfer: object, session: object) -> None:
        self.fd = fd
        self.transfer = transfer
        self.session = session
        self.block = -1
        self.payload = self.ahead = self.source = self.read = self.win = None
        self.blksize_obj = None
        self.timer_at = NO_TIMER
        self.recheck = 0  # every this many blocks, ask the transfer where its client is
        self.count = 0
        self.dirty = False
        self.gone = False
        self.win_held = False

    def __dealloc__(self) -> None:
        if self.win_held:
            PyBuffer_Release(cython.address(self.win_view))

    def lend(self, state: tuple) -> None:
        """Take the session's per-block state (``ReadSession.lockstep_lend``)."""
        sent_at: object
        srtt: object
        if self.block >= 0 or self.dirty:
            self.reclaim()
        (sent, self.payload, sent_at, self.ahead, self.bytes_sent, srtt, self.rttvar,
         self.rto, self.rto_min, self.rto_max, blksize, self.source) = state
        self.read = self.source.read
        self.sent = sent
        self.blksize = blksize
        self.blksize_obj = blksize
        self.timed = sent_at is not None
        self.sent_at = sent_at if self.timed else 0.0
        self.has_srtt = srtt is not None
        self.srtt = srtt if self.has_srtt else 0.0
        self.payload_in_win = self.ahead_in_win = self.last = False
        self.take_window()
        self.dirty = False
        self.block = sent & 0xFFFF

    def reclaim(self) -> None:
        """Nothing lent from here on; the blocks served since ``lend`` written back into the
        session (``ReadSession.lockstep_restore``)."""
        if self.block < 0 and not self.dirty:
            return
        self.block = -1
        if self.dirty:
            self.dirty = False
            payload = self.win_slice(self.payload_off, self.payload_len) \
                if self.payload_in_win else self.payload
            ahead = self.win_slice(self.ahead_off, self.ahead_len) \
                if self.ahead_in_win else self.ahead
            self.drop_window()
            self.session.lockstep_restore(
                self.sent, payload, ahead, self.last, self.bytes_sent, self.sent_at,
                self.srtt if self.has_srtt else None, self.rttvar, self.rto, self.deadline)
        self.drop_window()
        self.payload = self.ahead = self.source = self.read = None

    @cython.cfunc
    def win_slice(self, offset: cython.Py_ssize_t, size: cython.Py_ssize_t) -> object:
        return self.win[offset:offset + size]

    @cython.cfunc
    def take_window(self) -> cython.int:
        """What the source holds in memory from its position on (``window()``), held here."""
        window = getattr(self.source, "window", None)
        if window is None:
            return 0
        owner, start, end = window()
        if PyObject_GetBuffer(owner, cython.address(self.win_view), PyBUF_SIMPLE) < 0:
            return -1
        self.win = owner
        self.win_held = True
        self.win_pos = start
        self.win_end = end
        self.taken = 0
        return 0

    @cython.cfunc
    def drop_window(self) -> cython.int:
        """The source moved on past the blocks taken in place; the window let go (the blocks
        still needed from it are slices by now)."""
        if self.taken:
            taken: cython.Py_ssize_t = self.taken
            self.taken = 0
            self.source.skip(taken)
        if self.win_held:
            self.win_held = False
            PyBuffer_Release(cython.address(self.win_view))
        self.win = None
        return 0

    @cython.cfunc
    def read_ahead(self) -> cython.int:
        """The block after the one just sent: in place from the window, or read (the window
        ran out: the next one is taken after the read)."""
        if self.win_held and self.win_end - self.win_pos >= self.blksize:
            self.ahead = None
            self.ahead_in_win = True
            self.ahead_off = self.win_pos
            self.ahead_len = self.blksize
            self.win_pos += self.blksize
            self.taken += self.blksize
            return 0
        if self.payload_in_win:  # still needed (a resend), and the window goes
            self.payload = self.win_slice(self.payload_off, self.payload_len)
            self.payload_in_win = False
        self.drop_window()
        self.ahead = self.read(self.blksize_obj)
        self.ahead_in_win = False
        self.take_window()
        return 0

    @cython.cfunc
    def serve(self, buf: cython.p_char, now: cython.double) -> cython.bint:
        """Read one datagram (``buf``: the pump's buffer); True when it released a block."""
        n: cython.Py_ssize_t = c_recv(self.fd, buf, RECV_SIZE, 0)
        if n < 0:
            return False  # nothing there, or the client's ICMP: the timer decides
        block: cython.int = self.block
        data: cython.p_uchar = cython.cast(cython.p_uchar, buf)
        if block >= 0 and n == 4 and data[0] == 0 and data[1] == 4 and \
                data[2] == (block >> 8) and data[3] == (block & 0xFF):
            following_block: cython.int = (block + 1) & 0xFFFF
            header: cython.uchar[4]
            header[0] = 0
            header[1] = 3  # DATA
            header[2] = following_block >> 8
            header[3] = following_block & 0xFF
            parts: iovec[2]
            parts[0].iov_base = header
            parts[0].iov_len = 4
            message: msghdr
            memset(cython.address(message), 0, cython.sizeof(msghdr))
            message.msg_iov = parts
            message.msg_iovlen = 2
            size: cython.Py_ssize_t
            if self.ahead_in_win:
                size = self.ahead_len
                parts[1].iov_base = cython.cast(cython.p_char, self.win_view.buf) + \
                    self.ahead_off
                parts[1].iov_len = size
                c_sendmsg(self.fd, cython.address(message), 0)
            else:
                view: Py_buffer
                PyObject_GetBuffer(self.ahead, cython.address(view), PyBUF_SIMPLE)
                size = view.len
                parts[1].iov_base = view.buf
                parts[1].iov_len = size
                c_sendmsg(self.fd, cython.address(message), 0)
                PyBuffer_Release(cython.address(view))
            # a failed send (ICMP, a full buffer) is lost: the timer recovers or ends it
            # the session's bookkeeping (ReadSession.lockstep_sent, _sample), in C
            rtt: cython.double
            if self.timed:
                rtt = now - self.sent_at
                if not self.has_srtt:
                    self.srtt, self.rttvar, self.has_srtt = rtt, rtt / 2, True
                else:
                    self.rttvar = 0.75 * self.rttvar + 0.25 * fabs(self.srtt - rtt)
                    self.srtt = 0.875 * self.srtt + 0.125 * rtt
                self.rto = min(max(self.srtt + 4 * self.rttvar, self.rto_min), self.rto_max)
            self.sent += 1
            self.payload, self.payload_in_win = self.ahead, self.ahead_in_win
            self.payload_off, self.payload_len = self.ahead_off, self.ahead_len
            self.sent_at, self.timed = now, True
            self.bytes_sent += size
            self.deadline = now + self.rto
            self.dirty = True
            self.block = -1  # nothing prepared until the next block is read
            self.ahead = None
            self.ahead_in_win = False
            if size < self.blksize:  # the last block: its ACK goes through the session
                self.last = True
                self.reclaim()
                self.transfer._flush()
                return True
            self.read_ahead()  # if the read fails (EIO), the session gets the state without
            self.block = self.sent & 0xFFFF  # a block ahead and reads it again itself
            if self.deadline < self.timer_at:
                self.transfer._arm(self.deadline)
            if self.recheck > 0:
                self.count += 1
                if self.count >= self.recheck:
                    self.count = 0
                    self.transfer._recheck()  # may move the transfer: this slot then goes
            return True
        self.transfer._handle(buf[:n])
        return False


@cython.cclass
class Pump:
    """The epoll set of one event loop's lock-step transfers (see the module's doc). It opens
    with its first slot and closes with its last: an idle service holds no descriptor."""

    def __init__(self, loop: object) -> None:
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, os.strerror(errno))
        self.slots = {}
        self.dead = []  # slots removed during a service() call: kept alive until it returns
        self.serving = False
        self.loop = loop
        self.clock = loop.time
        self.blocks = 0
        self.wakeups = 0
        loop.add_reader(self.epfd, self.service)

    @property
    def open(self) -> bool:
        return self.epfd >= 0

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, slot: Slot) -> None:
        event: epoll_event
        event.events = EPOLLIN
        event.data.ptr = cython.cast(cython.p_void, slot)  # self.slots holds it
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, slot.fd, cython.address(event)) < 0:
            raise OSError(errno, os.strerror(errno))
        self.slots[slot.fd] = slot

    def remove(self, slot: Slot) -> None:
        """Before the slot's socket closes. The last slot out closes the set."""
        if self.slots.get(slot.fd) is not slot:
            return
        del self.slots[slot.fd]
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, slot.fd, cython.NULL)
        slot.gone = True
        if self.serving:
            self.dead.append(slot)  # an event of this batch may still point at it
        if not self.slots:
            self.close()

    def close(self) -> None:
        if self.epfd >= 0:
            self.loop.remove_reader(self.epfd)
            c_close(self.epfd)
            self.epfd = -1

    def service(self) -> None:
        """The event loop's reader callback for the set: serve every ready socket once."""
        events: epoll_event[64]
        buf: cython.char[4096]
        if self.epfd < 0:
            return
        ready: cython.int = epoll_wait(self.epfd, events, EVENTS_MAX, 0)
        if ready <= 0:
            return
        self.wakeups += 1
        now: cython.double = self.clock()
        i: cython.int
        slot: Slot
        self.serving = True
        try:
            for i in range(ready):
                slot = cython.cast(Slot, events[i].data.ptr)
                if slot.gone:
                    continue  # removed by an earlier slot of this batch
                if slot.serve(buf, now):
                    self.blocks += 1
        finally:
            self.serving = False
            if self.dead:
                self.dead.clear()
