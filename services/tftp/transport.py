"""UDP plumbing: the listener socket and the sockets of each transfer.

Thin on purpose: it moves datagrams between sockets and the sans-I/O :class:`ReadSession`,
and keeps one timer per transfer (re-armed lazily: the handle fires, looks at the session's
deadline, and sleeps again if the deadline has moved on). Nothing here decides anything: a
request the peer sends again while its transfer runs is handed to the session
(:meth:`ReadSession.new_request`) with what the transfer's socket showed.

Each transfer has two sockets on one ephemeral port (docs/tftp.md, "Transfers"):

- one ``connect()``ed to the client: the kernel routes once and delivers only the client's
  datagrams to it, and we ``recv``/``send`` on it directly from the event loop's reader callback
  (no per-datagram address parsing; one syscall each way; docs/benchmarks.md has the figures);
- an unconnected sibling bound to the same port (``SO_REUSEPORT``, same user only): Linux
  delivers to it only what the connected socket does not match, i.e. datagrams from any other
  address or port, which the session answers with ERROR 5 (RFC 1350 "unknown transfer ID").
  tftpd-hpa connects its socket too and so drops those silently; we keep answering them.

Windowed transfers hand each run of full-size blocks to the kernel in one ``sendmsg`` with
``UDP_SEGMENT`` (UDP GSO, Linux 4.18+): the kernel cuts it into one datagram per block. When the
kernel refuses (a path MTU smaller than a block, no GSO support) the transfer falls back to one
``send`` per block.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable

from services.tftp import codec
from services.tftp.session import Address, ReadSession

try:  # the compiled lock-step pump (Cython; only with the package's compiled build)
    from services.tftp import pump as _pump
except ImportError:
    _pump = None

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h
RECV_SIZE = 4096              # what a client sends during a read transfer: ACK, ERROR
GSO_MAX_SEGMENTS = 64         # UDP_MAX_SEGMENTS on Linux < 6.2 (128 later)
GSO_MAX_BYTES = 65507 - 8     # one IPv4 UDP datagram's payload, kept under
RECHECK_BLOCKS = 128          # a lock-step transfer asks where its client is every this many
#                               blocks (Transfer._recheck: one getsockopt)
# errors a send may meet that end nothing: the client's ICMP (it went away: the timer ends the
# transfer), a full socket buffer (the datagram is lost: retransmission recovers it)
_TRANSIENT = (BlockingIOError, ConnectionRefusedError, InterruptedError)


class ListenerProtocol(asyncio.DatagramProtocol):
    """The well-known port: every datagram goes to ``on_datagram(data, addr)``."""

    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self._on_datagram(data, addr[:2])

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do here
        pass

    def send(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class _Sockets:
    """The two sockets of a transfer, the sibling's ERROR 5 answers and the sends (with GSO)."""

    def __init__(self, bind: str, session: ReadSession, blocking: bool,
                 sock: socket.socket | None = None) -> None:
        """``sock``: the connected socket of a transfer moved here from another worker (the
        sibling is then bound anew to its port)."""
        self.session = session
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future = self._loop.create_future()
        self._gso = session.windowsize > 1
        sibling = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sibling.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sibling.setblocking(False)
            if sock is not None:
                sock.setblocking(blocking)
                sibling.bind((bind, sock.getsockname()[1]))
            else:
                sibling.bind((bind, 0))
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.setblocking(blocking)
                sock.bind(sibling.getsockname())
                sock.connect(session.peer)
        except OSError:
            sibling.close()
            if sock is not None:
                sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._sibling: socket.socket | None = sibling
        self._send = sock.send
        self._loop.add_reader(sibling.fileno(), self._on_foreign)

    @property
    def port(self) -> int:
        return self._sibling.getsockname()[1]

    def _on_foreign(self) -> None:
        """A datagram from another address or port: ERROR 5 there (the session counts it)."""
        try:
            _data, addr = self._sibling.recvfrom(65536)
            self._sibling.sendto(self.session.foreign_datagram(), addr)
        except OSError:
            pass

    def _close_sibling(self) -> None:
        if self._sibling is not None:
            self._loop.remove_reader(self._sibling.fileno())
            self._sibling.close()
            self._sibling = None
        if not self.done.done():
            self.done.set_result(None)

    def _send_out(self, out: list[tuple[bytes, Address]]) -> None:
        """Send the session's datagrams (all to the peer: foreign ones never reach here)."""
        if len(out) == 1:
            try:
                self._send(out[0][0])
            except OSError:
                pass  # the client went away (ICMP), a full buffer: the timer recovers or ends
            return
        self._send_datagrams([datagram for datagram, _addr in out])

    def _send_datagrams(self, run: list[bytes]) -> None:
        if self._gso and len(run) > 1:
            run = self._send_segmented(run)
        for datagram in run:
            try:
                self._send(datagram)
            except OSError:
                pass

    def _send_segmented(self, run: list[bytes]) -> list[bytes]:
        """Send the leading runs of equal-size datagrams with UDP GSO; return what is left
        (everything, if the kernel refused GSO: then this transfer stops trying)."""
        size = len(run[0])
        per_send = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size)
        ancillary = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        start = 0
        while len(run) - start > 1 and per_send > 1:
            end = start
            limit = min(len(run), start + per_send)
            # every segment but the last must be exactly `size` octets
            while end < limit and len(run[end]) == size:
                end += 1
            if end < limit:
                end += 1  # the shorter last block ends a GSO send
            if end - start < 2:
                break
            try:
                self._sock.sendmsg([b"".join(run[start:end])], ancillary)
            except _TRANSIENT:
                pass
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP,
                                 errno.EMSGSIZE):
                    self._gso = False  # path MTU below a block, or no GSO: plain sends
                    return run[start:]
            start = end
        return run[start:]


class Transfer(_Sockets):
    """Drives one ReadSession from the event loop; ``done`` resolves when the session ends.

    ``on_finish`` runs synchronously as the session ends (before the sockets close), so the
    server forgets the peer before its next request can arrive.

    ``relocate(sock, ack, resume)``: called with the client's first ACK (of the OACK, or of
    block 1) before anything else is done with it (``resume`` 0), and every
    ``RECHECK_BLOCKS`` lock-step blocks with ``ack`` b"" and the block to resume at
    (:meth:`ReadSession.resume_point`); True: the transfer went to another worker with its
    socket (services/tftp/balance.py) and ends here as ``moved``. ``moved``: such a
    transfer's socket and first ACK (b"": moved between blocks), taken here (the session's
    first answer, already sent by the worker it comes from, is dropped and the ACK handed to
    the session).
    """

    def __init__(self, bind: str, session: ReadSession,
                 on_finish: Callable[[], None] | None = None,
                 relocate: Callable[[socket.socket, bytes, int], bool] | None = None,
                 moved: tuple[socket.socket, bytes] | None = None) -> None:
        super().__init__(bind, session, blocking=False,
                         sock=None if moved is None else moved[0])
        self._on_finish = on_finish
        # until the first datagram from the client; and between lock-step blocks
        self._relocate = relocate if moved is None else None
        self._midway = relocate if session.windowsize == 1 else None
        self._count = 0  # lock-step blocks since the last _recheck (event-loop path)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._recv = self._sock.recv
        self._prepared: tuple[bytes, list[bytes]] | None = None
        # lock-step: the prepared reply as (ACK expected, DATA to send), the per-block path
        self._lockstep = session.windowsize == 1
        self._ack: bytes | None = None
        self._datagram = b""
        self._pump = self._slot = None
        if self._lockstep and _pump is not None:
            # the compiled pump serves the socket (services/tftp/pump.py), not the loop
            self._slot = _pump.Slot(self._sock.fileno(), self, session)
            self._slot.recheck = RECHECK_BLOCKS if self._midway is not None else 0
            self._pump = _pump_of(self._loop)
            self._pump.add(self._slot)
        else:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
        if moved is not None:
            session.datagrams_to_send(0.0)  # sent by the worker the transfer comes from
        if moved is not None and moved[1]:
            self._handle(moved[1])
        else:
            self._flush()

    def abort(self) -> None:
        self._reclaim()
        if not self.session.finished:
            self.session.finish("aborted", "service stopping")
        self._close()

    def join(self, timeout: float) -> None:
        """Nothing to wait for: everything ran on the event loop."""

    def request_seen(self, request: codec.Request) -> bool:
        """The peer sent ``request`` to the well-known port while this transfer runs. Reads
        what already waits on the transfer's socket (the final ACK may be there), then hands
        the request to the session, settled: it has seen exactly what came before. Returns
        False when the transfer is already over (the request is then a new one)."""
        if self._sock is None:
            return False
        self._reclaim()
        while self._sock is not None and not self.session.finished:
            try:
                data = self._recv(RECV_SIZE)
            except ConnectionRefusedError:
                continue  # an ICMP error queued before what we look for
            except OSError:
                break  # nothing more waiting
            self._handle(data)
        self.session.new_request(request, settled=True)
        self._flush()
        return True

    def _on_readable(self) -> None:
        try:
            data = self._recv(RECV_SIZE)
        except OSError:
            return  # ICMP from the client (it went away) or nothing there: the timer decides
        if data == self._ack:  # lock-step's expected ACK: send the block read ahead, then
            try:               # the bookkeeping, in one session call (docs/benchmarks.md)
                self._send(self._datagram)
            except OSError:
                pass  # the client went away (ICMP), a full buffer: the timer recovers or ends
            following = self.session.lockstep_sent(self._loop.time())
            if following is not None:
                number, payload, deadline = following
                self._ack = _frame(4, number & 0xFFFF)
                self._datagram = _frame(3, (number + 1) & 0xFFFF) + payload
                if self._timer is None or deadline < self._timer_at:
                    self._arm(deadline)
                if self._midway is not None:
                    self._count += 1
                    if self._count >= RECHECK_BLOCKS:
                        self._count = 0
                        self._recheck()
                return
            self._ack = None
            self._flush()
            return
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        self._reclaim()
        session = self.session
        if self._relocate is not None:
            relocate, self._relocate = self._relocate, None
            if data == _frame(4, 0 if session.options.oack else 1) and \
                    session.retransmits == 0 and relocate(self._sock, data, 0):
                session.finish("moved", "moved to the worker on the client's CPU")
                self._flush()
                return
        prepared = self._prepared
        if prepared is not None and data == prepared[0]:
            self._send_datagrams(prepared[1])  # first, then the bookkeeping
            session.prepared_reply_sent(self._loop.time())
        else:
            session.receive(data, session.peer, self._loop.time())
        self._flush()

    def _recheck(self) -> None:
        """Between lock-step blocks, now and then: a client whose datagrams arrive on another
        worker's CPU now (the scheduler moved it) takes its transfer there."""
        session = self.session
        if self._midway is None or self._sock is None:
            return
        self._reclaim()
        block = session.resume_point()
        if block and self._midway(self._sock, b"", block):
            session.finish("moved", "moved to the worker on the client's CPU")
            self._flush()
        elif self._slot is not None:
            self._slot.lend(session.lockstep_lend())  # not moved: the pump goes on

    def _reclaim(self) -> None:
        """Before the session is read or fed: the blocks the pump served since the transfer
        lent it the session's per-block state, written back (pump.Slot.reclaim)."""
        if self._slot is not None:
            self._slot.reclaim()

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        slot = self._slot
        if slot is not None:
            slot.timer_at = _NO_TIMER
            if slot.dirty and now < slot.deadline:
                self._arm(slot.deadline)  # the pump has moved the deadline on: sleep again
                return                    # (the session's state stays with the pump)
            slot.reclaim()
        deadline = self.session.next_timer()
        if deadline is None:
            return
        if now < deadline:  # the deadline moved on since we armed: sleep again (and lend
            self._flush()   # the pump the session's state again)
            return
        self.session.on_timer(now)
        self._flush()
        if self._sock is not None and not self.session.finished and self._timer is None:
            nxt = self.session.next_timer()
            if nxt is not None:
                self._arm(nxt)

    def _flush(self) -> None:
        session = self.session
        if self._sock is None:
            return
        self._reclaim()
        out = session.datagrams_to_send(0.0)
        if out:
            self._send_out(out)
        if session.finished:
            if self._on_finish is not None:
                self._on_finish()  # synchronously: the peer may send its next request at once
                self._on_finish = None
            self._close()
            return
        deadline = session.next_timer()
        if deadline is not None and (self._timer is None or deadline < self._timer_at):
            self._arm(deadline)
        prepared = session.prepared_reply() if self._relocate is None else None
        if self._lockstep and prepared is not None:
            self._ack, self._datagram = prepared[0], prepared[1][0]
            self._prepared = None
        else:
            self._ack, self._prepared = None, prepared
        if self._slot is not None and self._ack is not None:
            # the pump sends the prepared DATA when its ACK comes and does the session's
            # per-block bookkeeping itself, in C, until the transfer reclaims it (_reclaim)
            self._slot.lend(session.lockstep_lend())

    def _arm(self, when: float) -> None:
        self._cancel_timer()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)
        if self._slot is not None:
            self._slot.timer_at = when

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            if self._slot is not None:
                self._slot.timer_at = _NO_TIMER

    def _close(self) -> None:
        self._cancel_timer()
        if self._sock is not None:
            if self._pump is not None:
                self._slot.reclaim()
                self._pump.remove(self._slot)
                if not self._pump.open:
                    _pumps.pop(self._loop, None)
                self._slot = None
            else:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._close_sibling()


_NO_TIMER = float("inf")
_frame = codec.HEADER.pack  # (opcode, block): an ACK, or a DATA header
_pumps: dict = {}  # event loop -> its open pump (a pump closes with its last transfer)


def _pump_of(loop):
    pump = _pumps.get(loop)
    if pump is None or not pump.open:
        pump = _pumps[loop] = _pump.Pump(loop)
    return pump
