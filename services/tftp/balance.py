"""Sharing new requests between worker processes (``tftp.workers`` > 1; docs/tftp.md).

The kernel hands each datagram on the well-known port to one worker by a hash of its 4-tuple
(``SO_REUSEPORT``): a storm's requests are split by chance, not by load (50 clients over two
workers split 30/20 or worse), and the round ends with the busier worker while the other idles.
But a transfer has its own socket and port, so any worker can serve any request: only where
the request lands is hashed. So each worker publishes how many requests it is handling in a
small shared-memory file, and a worker that takes a new request while busier than the least
loaded worker hands the datagram and the client's address to that worker over a unix datagram
socket (one per worker). Both live in the supervisor's private directory (mode 0700): no other
user can hand a worker a request, which would make it send a file to any address. The
worker that hands a request over remembers the client's address -> the target (a *route*)
until the target says it has nothing more of that client's, so the client's copies of the
request and its next request from the same port (which the kernel keeps bringing to the first
worker) reach the worker that knows the transfer, where the session's rules
(``ReadSession.new_request``) tell them apart exactly as they would in one process. Errors and
refusals go out from the target's own listener, which shares the port.

Each worker sends to another through a unix datagram socket connected to that worker's (one
per target). The kernel holds at most ``net.unix.max_dgram_qlen`` (10 by default, per network
namespace; a container cannot count on raising it) datagrams queued at a receiver whatever its
buffer, so a boot storm's burst of hand-overs outruns it: a message the target's queue has no room
for (EAGAIN) waits, in order, in this worker's queue for that target (at most ``PENDING_MAX``) and
goes when the kernel says the target's queue has room again (``loop.add_writer`` on the connected
socket: the kernel wakes it when the target reads). Every message to a target goes behind those
waiting, so a client's copies and next request keep their order. A moved transfer's socket waits
as a duplicate descriptor. That is not a failure: nothing is logged and sharing goes on.

A worker that is gone (its socket refuses: ECONNREFUSED, ENOENT) or stuck (``PENDING_MAX``
messages waiting) is left alone for a second (``DOWN_S``), and the datagram is handled here
(``event=handover_failed``): a client's retransmission then starts its transfer here, so a dead
worker never loses a request for good. What was waiting for it is dropped (its clients retransmit).

Shared memory (int64, each slot written by one worker only): ``load[j]`` (requests worker j
is handling), ``sent[i][j]`` (new requests i handed to j) and ``taken[i][j]`` (those j has
taken): i counts j as ``load[j] + sent[i][j] - taken[i][j]``, so a burst handed over before j
has taken any is counted at once; ``cpu[j]`` (1 + the CPU worker j is pinned to, 0: not
pinned).

CPU-local transfers (:meth:`Balancer.move`): a lock-step block costs least when the worker and
the client's datagrams are on one CPU (no cross-CPU wake-up each way, the data in that CPU's
caches: how tftpd-hpa's forked children run beside their clients). Where a request lands says
nothing of that (the kernel does not record the CPU of a datagram on an unconnected socket),
but the transfer's connected socket does (``SO_INCOMING_CPU``). So at the client's first ACK a
transfer whose client's datagrams arrive on another worker's CPU is moved there: its connected
socket goes over the unix socket (``SCM_RIGHTS``) with the request and that ACK, and the
worker there rebuilds the session from the request (negotiation and the first answer are a
function of the request and the file, so they are exactly what the client has) and hands it
the ACK. The client sees one transfer ID throughout. A move keeps the load spread: it is made
only while the target would have at most ``move_slack(load)`` more requests than this worker.

A lock-step transfer on the event loop checks again every ``RECHECK_BLOCKS`` blocks
(services/tftp/transport.py) and follows its client (RESUME) each time the check finds it on
another worker's CPU, as often as that happens. Following less was measured and not kept (issue
19, docs/benchmarks.md): at most one RESUME per transfer, or none, cost 9-14% of 50 clients'
throughput; asking two checks in a row before a RESUME moved as many transfers as one, at the
same throughput.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

from services.tftp import metrics
from shared import logs

log = logs.get_logger("tftp")
Address = tuple[str, int]

# a new request handed over; a datagram on a route; route done; a transfer moved (with its
# socket) at its first ACK; a lock-step transfer moved in its middle
NEW, ROUTED, RELEASE, MOVE, RESUME = 1, 2, 3, 4, 5
_BLOCK = struct.Struct("!Q")  # RESUME: the block sent and not yet ACKed
_HEADER = struct.Struct("!BBQ4sH")  # kind, from worker, sequence, client IPv4, client port
ROUTES_MAX = 65536          # routes kept at most (the oldest go first)
DOWN_S = 1.0                # a worker that did not take a message is skipped this long
BUFFER = 4 << 20            # the unix sockets' buffers (a storm's requests)
PENDING_MAX = 4096          # messages waiting for one target's queue to have room
SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)  # asm-generic/socket.h


def move_slack(load: int) -> int:
    """How many more requests than this worker's ``load`` (after the move) a worker may have
    and still be given a transfer moved to its CPU: 4, or half the load (a quarter measured
    5% slower with 50 clients on 2 CPUs: docs/benchmarks.md)."""
    return max(4, load // 2)


def incoming_cpu(sock: socket.socket) -> int:
    """The CPU the last datagram on a connected socket arrived on (-1: none yet)."""
    try:
        return sock.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU)
    except OSError:
        return -1


def socket_path(directory: str, port: int, index: int) -> str:
    """A worker's hand-over socket, in the supervisor's private directory."""
    return os.path.join(directory, f"tftp-{port}-{index}.sock")


class Balancer:
    """One worker's side: hands new requests over (:meth:`forward`), takes those handed to it
    (``deliver(data, addr)`` then ``settle``), and publishes its load (:meth:`publish`).

    ``busy(addr)``: whether this worker still has something of ``addr``'s (a request being
    handled, a transfer): the route to this worker ends when it has not.
    """

    def __init__(self, index: int, count: int, directory: str, port: int,
                 deliver: Callable[[bytes, Address], None],
                 busy: Callable[[Address], bool]) -> None:
        self.index, self.count = index, count
        self._deliver, self._busy = deliver, busy
        size = 8 * (2 * count + 2 * count * count)
        fd = os.open(os.path.join(directory, f"tftp-balance-{port}.bin"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._slots = memoryview(self._map).cast("q")
        self._names = [socket_path(directory, port, j) for j in range(count)]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
            except OSError:
                pass
            self._sock.setblocking(False)
            self._sock.bind(self._names[index])
        except OSError:
            self._sock.close()
            raise
        # per target: the socket connected to it (None: not yet, or gone) and the messages
        # waiting for room in its queue: (kind, message, duplicate of a moved socket or -1)
        self._peers: list[socket.socket | None] = [None] * count
        self._pending: list[deque[tuple[int, bytes, int]]] = [deque() for _ in range(count)]
        self._routes: dict[Address, list[int]] = {}  # client -> [worker, sequence]
        self._origins: dict[Address, tuple[int, int]] = {}  # handed here: client -> (from, seq)
        self._down: list[float] = [0.0] * count
        self._sequence = 0
        self.forwarded = 0   # new requests handed to another worker
        self.taken = 0       # new requests taken from other workers
        self.moved = 0       # started transfers moved to the worker on the client's CPU
        self.adopted = 0     # started transfers moved here
        # (request datagram, first ACK or b"", client, socket, block to resume at or 0): a
        # transfer moved here
        self.adopt: Callable[[bytes, bytes, Address, socket.socket, int], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._on_readable)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            log.info("handovers", worker=self.index, sent=self.forwarded, taken=self.taken,
                     moved=self.moved, adopted=self.adopted)
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            for j in range(self.count):
                self._disconnect(j)
        self.publish(0)
        self.publish_cpu(None)

    # -- shared memory ---------------------------------------------------------------------------
    def publish(self, load: int) -> None:
        """This worker's load (requests being handled): one aligned store, from any thread."""
        self._slots[self.index] = load

    def publish_cpu(self, cpu: int | None) -> None:
        """The CPU this worker is pinned to (None: not pinned; then no transfer moves here)."""
        self._slots[self._cpu_slot(self.index)] = 0 if cpu is None else cpu + 1

    def _cpu_slot(self, j: int) -> int:
        return self.count + 2 * self.count * self.count + j

    def worker_on(self, cpu: int) -> int:
        """The worker pinned to ``cpu`` (-1: none)."""
        if cpu >= 0:
            slots = self._slots
            for j in range(self.count):
                if slots[self._cpu_slot(j)] == cpu + 1:
                    return j
        return -1

    def _sent_slot(self, i: int, j: int) -> int:
        return self.count + i * self.count + j

    def _taken_slot(self, i: int, j: int) -> int:
        return self.count + self.count * self.count + i * self.count + j

    def load_of(self, j: int) -> int:
        """Worker j's load as this worker counts it: what j published, plus what this worker
        has handed to j that j has not taken yet."""
        slots = self._slots
        return slots[j] + slots[self._sent_slot(self.index, j)] - \
            slots[self._taken_slot(self.index, j)]

    # -- handing requests over -------------------------------------------------------------------
    def forward(self, data: bytes, addr: Address, load: int) -> bool:
        """A request from ``addr`` that this worker has nothing of (``load``: its requests
        being handled): True if it went to another worker (on the client's route, or to the
        least loaded worker when this one is busier); False: handle it here."""
        route = self._routes.get(addr)
        if route is not None:
            if self._send(route[0], ROUTED, addr, data):
                route[1] = self._sequence
                return True
            del self._routes[addr]  # the worker is gone or stuck: serve it here
            return False
        now = time.monotonic()
        best, least = -1, load
        for j in range(self.count):
            if j != self.index and self._down[j] <= now:
                other = self.load_of(j)
                if other < least:
                    best, least = j, other
        if best < 0 or not self._send(best, NEW, addr, data):
            return False
        slot = self._sent_slot(self.index, best)
        self._slots[slot] = self._slots[slot] + 1
        if len(self._routes) >= ROUTES_MAX:
            del self._routes[next(iter(self._routes))]
        self._routes[addr] = [best, self._sequence]
        self.forwarded += 1
        metrics.HANDOVERS.labels("sent").inc()
        return True

    def move(self, request: bytes, ack: bytes, addr: Address, sock: socket.socket,
             load: int, resume: int = 0) -> bool:
        """A transfer of ``addr``'s has just read the client's first ACK (``ack``) on
        ``sock``, or (``resume``) is a lock-step transfer between blocks with block ``resume``
        sent and not ACKed: True if it went, with ``request`` and the socket, to the worker
        on the CPU the client's last datagram arrived on (see the module's doc); then this
        worker's copy of the socket is to be closed and the transfer forgotten. ``load``:
        this worker's, the transfer included."""
        j = self.worker_on(incoming_cpu(sock))
        if j < 0 or j == self.index or self._down[j] > time.monotonic():
            return False
        if self.load_of(j) + 1 > load - 1 + move_slack(load):
            return False
        body = ack + request if not resume else _BLOCK.pack(resume) + request
        if not self._send(j, RESUME if resume else MOVE, addr, body, sock.fileno()):
            return False
        slot = self._sent_slot(self.index, j)
        self._slots[slot] = self._slots[slot] + 1
        if len(self._routes) >= ROUTES_MAX:
            del self._routes[next(iter(self._routes))]
        self._routes[addr] = [j, self._sequence]  # the client's copies and next request
        self.moved += 1
        metrics.MOVED.labels("sent", "between_blocks" if resume else "first_ack").inc()
        return True

    def _send(self, j: int, kind: int, addr: Address, data: bytes, fd: int = -1) -> bool:
        """Hand a message to worker j: sent now, or waiting behind that worker's queue (True),
        or not taken (False: j is gone or stuck, and left alone for ``DOWN_S``)."""
        self._sequence += 1
        header = _HEADER.pack(kind, self.index, self._sequence, socket.inet_aton(addr[0]),
                              addr[1])
        return self._post(j, kind, header + data, fd, addr)

    def _post(self, j: int, kind: int, message: bytes, fd: int, addr: Address) -> bool:
        pending = self._pending[j]
        reason = None
        if not pending:
            reason = self._try(j, message, fd)
            if reason is None:
                return True
        if reason is None or reason == "full":
            if len(pending) < PENDING_MAX and self._loop is not None:
                try:
                    kept = os.dup(fd) if fd >= 0 else -1
                except OSError as exc:
                    reason = exc.strerror or repr(exc)
                else:
                    if not pending:
                        self._loop.add_writer(self._peers[j].fileno(), self._flush, j)
                    pending.append((kind, message, kept))
                    return True
            else:
                reason = f"{len(pending)} hand-overs waiting for its queue"
        self._gone(j, kind, addr, reason)
        return False

    def _try(self, j: int, message: bytes, fd: int) -> str | None:
        """Send one message on the socket connected to worker j: None (sent), "full" (its
        queue has no room: EAGAIN) or why it is gone."""
        peer = self._peers[j]
        try:
            if peer is None:
                peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._peers[j] = peer
                peer.setblocking(False)
                try:
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
                except OSError:
                    pass
                peer.connect(self._names[j])
            if fd >= 0:
                peer.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          struct.pack("i", fd))])
            else:
                peer.send(message)
            return None
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                return "full"
            self._disconnect(j)
            return exc.strerror or repr(exc)

    def _flush(self, j: int) -> None:
        """Worker j's queue has room: send what waits for it, in order."""
        pending = self._pending[j]
        while pending:
            kind, message, fd = pending[0]
            reason = self._try(j, message, fd)
            if reason == "full":
                return
            if reason is not None:  # gone: it and what waits behind it are dropped
                self._gone(j, kind, None, reason)
                return
            pending.popleft()
            if fd >= 0:
                os.close(fd)
        peer = self._peers[j]
        if peer is not None and self._loop is not None:
            self._loop.remove_writer(peer.fileno())

    def _gone(self, j: int, kind: int, addr: Address | None, reason: str) -> None:
        """Worker j did not take a message: skipped for ``DOWN_S``; what waits for it is
        dropped (its clients retransmit to this worker)."""
        self._disconnect(j)
        self._down[j] = time.monotonic() + DOWN_S
        # a move not taken: the transfer simply stays here, and a later check may move it
        if kind not in (RELEASE, MOVE, RESUME):
            metrics.HANDOVERS.labels("failed").inc()
            log.warning("handover_failed", worker=self.index, to_worker=j,
                        peer=addr[0] if addr else None, port=addr[1] if addr else None,
                        reason=reason, effect="this worker serves the request itself")

    def _disconnect(self, j: int) -> None:
        """Forget the socket connected to worker j and drop what waits for it."""
        peer, self._peers[j] = self._peers[j], None
        if peer is not None:
            if self._loop is not None:
                self._loop.remove_writer(peer.fileno())
            peer.close()
        pending = self._pending[j]
        while pending:
            kind, _message, fd = pending.popleft()
            if fd >= 0:
                os.close(fd)
            if kind in (NEW, MOVE, RESUME):  # never taken: not j's load any more
                slot = self._sent_slot(self.index, j)
                self._slots[slot] = self._slots[slot] - 1

    # -- requests handed here --------------------------------------------------------------------
    def _on_readable(self) -> None:
        for _ in range(64):  # bounded per wake-up: the loop has other work
            try:
                message, ancillary, _flags, _from = self._sock.recvmsg(
                    70000, socket.CMSG_SPACE(struct.calcsize("i")))
            except OSError:
                return
            passed = _passed_socket(ancillary)
            if len(message) < _HEADER.size:
                if passed is not None:
                    passed.close()
                continue
            kind, origin, sequence, ip, port = _HEADER.unpack_from(message)
            moving = kind in (MOVE, RESUME)
            if origin >= self.count or origin == self.index or (passed is None) == moving or (
                    moving and self.adopt is None):
                if passed is not None:
                    passed.close()
                continue
            addr = (socket.inet_ntoa(ip), port)
            if kind == RELEASE:
                route = self._routes.get(addr)
                if route is not None and route[0] == origin and route[1] == sequence:
                    del self._routes[addr]
                continue
            if kind == NEW or moving:
                slot = self._taken_slot(origin, self.index)
                self._slots[slot] = self._slots[slot] + 1
            if kind == NEW:
                self.taken += 1
                metrics.HANDOVERS.labels("taken").inc()
            self._origins[addr] = (origin, sequence)
            if moving:
                self.adopted += 1
                metrics.MOVED.labels("taken", "first_ack" if kind == MOVE else "between_blocks").inc()
                body = message[_HEADER.size:]
                if kind == MOVE:
                    self.adopt(body[4:], body[:4], addr, passed, 0)
                else:
                    self.adopt(body[_BLOCK.size:], b"", addr, passed,
                               _BLOCK.unpack_from(body)[0])
            else:
                self._deliver(message[_HEADER.size:], addr)
            self.settle(addr)

    def settle(self, addr: Address) -> None:
        """Call when this worker may have nothing more of ``addr``'s (after handling a
        datagram handed here, and when a request's handling ends): then the worker that
        handed it over is told its route can go."""
        origin = self._origins.get(addr)
        if origin is None or self._busy(addr):
            return
        del self._origins[addr]
        header = _HEADER.pack(RELEASE, self.index, origin[1], socket.inet_aton(addr[0]),
                              addr[1])
        self._post(origin[0], RELEASE, header, -1, addr)  # gone: its routes with it


def _passed_socket(ancillary) -> socket.socket | None:
    """The UDP socket passed with a message (SCM_RIGHTS), if any; any other descriptor is
    closed."""
    found = None
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
            continue
        size = struct.calcsize("i")
        for k in range(len(data) // size):
            fd = struct.unpack_from("i", data, k * size)[0]
            if found is None:
                try:
                    found = socket.socket(fileno=fd)
                    if found.type != socket.SOCK_DGRAM:
                        found.close()
                        found = None
                except OSError:
                    os.close(fd)
            else:
                os.close(fd)
    return found
