"""Lock-step transfers driven from a thread of their own (``tftp.transfer_threads``).

The other way to drive a :class:`ReadSession` beside :class:`services.tftp.transport.Transfer`
(the event loop, or the compiled pump): the same two sockets (:class:`transport._Sockets`), with
blocking ``recv``/``send`` and the retransmission deadline as ``SO_RCVTIMEO``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

from services.tftp import codec
from services.tftp.session import Address, ReadSession
from services.tftp.transport import RECV_SIZE, _frame, _Sockets

WAITING_REQUESTS_MAX = 8  # requests the thread has not taken yet (more: copies, dropped)


class ThreadTransfer(_Sockets):
    """Drives one ReadSession from its own thread with blocking ``recv``/``send``.

    Lock-step TFTP is one round trip per block: without the event loop between the kernel and
    the session a block costs two syscalls and no loop wake-up (docs/benchmarks.md). The
    retransmission deadline is the socket's ``SO_RCVTIMEO``. Only the session's own thread
    touches the session, except :meth:`ReadSession.foreign_datagram` (the sibling socket stays
    on the event loop). ``on_finish`` runs in the transfer's thread: it must be thread-safe.
    Requests the peer sends again wait for the thread (:meth:`request_seen`).
    """

    def __init__(self, bind: str, session: ReadSession,
                 on_finish: Callable[[], None] | None = None) -> None:
        super().__init__(bind, session, blocking=True)
        self._on_finish = on_finish
        self._aborted = False
        self._lock = threading.Lock()  # guards the two below (the listener adds, we take)
        # (request, came before the last block was first sent)
        self._requests: list[tuple[codec.Request, bool]] = []
        self._closed = False  # the thread has taken its last requests
        self._end_out = False  # the last block has been sent (set before it is)
        self._wait_set = 0.0   # the socket's SO_RCVTIMEO in force
        self._thread = threading.Thread(target=self._run, name="tftp-transfer", daemon=True)
        self._thread.start()

    def abort(self) -> None:
        """Stop from the event loop: wakes the thread's ``recv`` (Linux: shutdown of a UDP
        socket does), the thread then closes everything."""
        self._aborted = True
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def request_seen(self, request: codec.Request) -> bool:
        """The peer sent ``request`` to the well-known port while this transfer runs (see
        :meth:`Transfer.request_seen`). Only this transfer's thread touches the session and
        its socket, so the request waits for the thread's next wake-up (a datagram, or its
        retransmission timeout): the thread reads its socket, then hands the request to the
        session, not settled (what it read may have come after the request, and it may have
        held the final ACK when the request came). Returns False when the thread has taken
        its last requests: the transfer is over and the request is a new one.

        What the thread has sent is known here, though: a request that comes before the last
        block went out cannot be the client's re-fetch, and is a copy whenever the thread
        takes it (without that, a copy the thread took after reading the final ACK was served
        again)."""
        with self._lock:
            if self._closed:
                return False
            if len(self._requests) < WAITING_REQUESTS_MAX:
                self._requests.append((request, not self._end_out))
            return True

    def _send_out(self, out: list[tuple[bytes, Address]]) -> None:
        if not self._end_out and self.session.last_block_out():
            self._end_out = True  # before the send: the listener reads it (request_seen)
        super()._send_out(out)

    def _take_requests(self, now: float, last: bool = False) -> None:
        """Hand the waiting requests to the session, after reading what waits on the socket
        (``last``: the transfer is over; nothing is read, and no more requests are taken)."""
        session, sock = self.session, self._sock
        with self._lock:
            requests, self._requests = self._requests, []
            self._closed = last
        while not last and not session.finished:
            try:
                data = sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except ConnectionRefusedError:
                continue  # an ICMP error queued before what we look for
            except OSError:
                break  # nothing more waiting
            session.receive(data, session.peer, now)
            self._send_out(session.datagrams_to_send(now))
        for request, end_unsent in requests:
            session.new_request(request, settled=False, end_unsent=end_unsent)
        if not last:
            self._send_out(session.datagrams_to_send(now))

    def _wait(self, wait: float) -> None:
        """Set the socket's receive timeout to ``wait`` seconds, only when the one in force
        would wake the thread more than a quarter late, or much too early (an early wake-up
        just loops)."""
        if wait < 0.8 * self._wait_set or wait > 2 * self._wait_set:
            self._wait_set = wait
            seconds = int(wait)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack(
                "ll", seconds, int((wait - seconds) * 1e6) + 1))

    def _lockstep(self, ack: bytes, datagram: bytes, now: float) -> float:
        """Lock-step's per-block loop (as the event loop's ``Transfer._on_readable``): send the
        block read ahead the moment the peer sends exactly ``ack``, then one session call
        (``lockstep_sent``) for the bookkeeping and the next block. Returns (with the time)
        on anything else, which the caller's general path handles: another datagram (given
        to the session), the timer, the last block sent, a request waiting, an abort."""
        session, sock, clock = self.session, self._sock, time.monotonic
        recv, send, frame, blksize = sock.recv, sock.send, _frame, session.blksize
        deadline = session.next_timer()
        while not self._requests:
            wait = deadline - now
            if wait <= 0.0:
                return now
            self._wait(wait)
            try:
                data = recv(RECV_SIZE)
            except OSError:
                return clock()  # timed out (EAGAIN) or ICMP from the client: the timer decides
            if self._aborted:
                return now
            if data != ack:
                now = clock()
                session.receive(data, session.peer, now)
                self._send_out(session.datagrams_to_send(now))
                return now
            if len(datagram) - 4 < blksize:
                self._end_out = True  # the last block: before the send (request_seen)
            try:
                send(datagram)
            except OSError:
                pass  # the client went away (ICMP), a full buffer: the timer recovers or ends
            now = clock()
            following = session.lockstep_sent(now)
            if following is None:
                return now
            number, payload, deadline = following
            ack = frame(4, number & 0xFFFF)
            datagram = frame(3, (number + 1) & 0xFFFF) + payload
        return now

    def _run(self) -> None:
        session, sock = self.session, self._sock
        recv, clock, peer = sock.recv, time.monotonic, session.peer
        send_out, send_datagrams = self._send_out, self._send_datagrams
        lockstep = session.windowsize == 1
        now = clock()
        try:
            send_out(session.datagrams_to_send(now))
            while not session.finished and not self._aborted:
                if self._requests:
                    self._take_requests(now)
                    if session.finished:
                        break
                wait = session.next_timer() - now
                if wait <= 0.0:
                    session.on_timer(now)
                else:
                    prepared = session.prepared_reply()
                    if lockstep and prepared is not None:
                        now = self._lockstep(prepared[0], prepared[1][0], now)
                        continue
                    ends = not self._end_out and session.last_block_out(prepared=True)
                    self._wait(wait)
                    try:
                        data = recv(RECV_SIZE)
                    except OSError:
                        now = clock()
                        continue  # timed out (EAGAIN) or ICMP from the client: the timer decides
                    if self._aborted:
                        break
                    if prepared is not None and data == prepared[0]:
                        if ends:
                            self._end_out = True  # before the send (request_seen)
                        send_datagrams(prepared[1])  # first, then the bookkeeping
                        now = clock()
                        session.prepared_reply_sent(now)
                        continue
                    now = clock()
                    session.receive(data, peer, now)
                out = session.datagrams_to_send(now)
                if out:
                    send_out(out)
            if self._aborted and not session.finished:
                session.finish("aborted", "service stopping")
        except Exception as exc:  # noqa: BLE001 - a bug must end this transfer, not hang it
            if not session.finished:
                session.finish("io_error", f"transfer thread failed: {exc!r}")
        finally:
            self._take_requests(now, last=True)
            if session.finished and self._on_finish is not None:
                self._on_finish()  # before the socket closes: the peer may ask again at once
            self._sock = None
            sock.close()
            try:
                self._loop.call_soon_threadsafe(self._close_sibling)
            except RuntimeError:
                pass  # the event loop is gone (the service stopped)
