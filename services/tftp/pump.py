"""Lock-step transfers without the event loop per block (compiled only: Cython).

A 50-client server spends most of its user time per block around two syscalls: the event
loop's callback for the ready socket, the socket module's ``recv`` (a new bytes object) and
``send``, the transport's few lines (docs/benchmarks.md). The :class:`Pump` serves every
lock-step transfer's socket of one event loop from one epoll set: the loop watches the set's
descriptor, and one :meth:`Pump.service` call reads each ready socket with ``recv(2)`` into a
buffer of its own; a datagram equal to the transfer's expected ACK (compared by block number)
is answered at once with the prepared DATA (``sendmsg(2)`` of a header framed here, as
``codec.HEADER`` frames it, and the payload where it lies: no copy) and the session does its
bookkeeping (``lockstep_sent``) and prepares the next block; everything else (another
datagram, the last block's ACK) goes to the transfer's Python path (``Transfer._handle``,
``Transfer._flush``), and so do the timers. So the RFC rules stay in one place, the session,
and this module only moves datagrams.

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


@cython.cclass
class Slot:
    """One lock-step transfer in the pump: its socket, the block whose ACK it waits for and
    the payload of the DATA that ACK releases (block ``block + 1``; ``block`` -1: nothing
    prepared, every datagram goes to the transfer), and when its timer is armed
    (``NO_TIMER``: not armed). The transfer keeps these up to date."""

    def __init__(self, fd: int, transfer: object, session: object) -> None:
        self.fd = fd
        self.transfer = transfer
        self.session = session
        self.step = session.lockstep_sent  # bound once: called per block
        self.block = -1
        self.payload = None
        self.timer_at = NO_TIMER
        self.recheck = 0  # every this many blocks, ask the transfer where its client is
        self.count = 0

    @cython.cfunc
    def serve(self, buf: cython.p_char, now: object) -> cython.bint:
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
            view: Py_buffer
            PyObject_GetBuffer(self.payload, cython.address(view), PyBUF_SIMPLE)
            parts: iovec[2]
            parts[0].iov_base = header
            parts[0].iov_len = 4
            parts[1].iov_base = view.buf
            parts[1].iov_len = view.len
            message: msghdr
            memset(cython.address(message), 0, cython.sizeof(msghdr))
            message.msg_iov = parts
            message.msg_iovlen = 2
            c_sendmsg(self.fd, cython.address(message), 0)
            PyBuffer_Release(cython.address(view))
            # a failed send (ICMP, a full buffer) is lost: the timer recovers or ends it
            following = self.step(now)
            if following is None:
                self.block, self.payload = -1, None
                self.transfer._flush()
                return True
            number, self.payload, deadline = following
            self.block = number & 0xFFFF
            if deadline < self.timer_at:
                self.transfer._arm(deadline)
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
        event.data.fd = slot.fd
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, slot.fd, cython.address(event)) < 0:
            raise OSError(errno, os.strerror(errno))
        self.slots[slot.fd] = slot

    def remove(self, slot: Slot) -> None:
        """Before the slot's socket closes. The last slot out closes the set."""
        if self.slots.get(slot.fd) is not slot:
            return
        del self.slots[slot.fd]
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, slot.fd, cython.NULL)
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
        now: object = self.clock()
        i: cython.int
        slot: Slot
        for i in range(ready):
            found = self.slots.get(events[i].data.fd)
            if found is None:
                continue  # removed by an earlier slot of this batch
            slot = found
            if slot.serve(buf, now):
                self.blocks += 1
