"""asyncio UDP plumbing: the listener socket and one ephemeral socket per transfer.

Thin on purpose: it moves datagrams between sockets and the sans-I/O :class:`ReadSession`,
and keeps one timer per transfer (re-armed lazily: the handle fires, looks at the session's
deadline, and sleeps again if the deadline has moved on). Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.tftp.session import Address, ReadSession


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


class TransferProtocol(asyncio.DatagramProtocol):
    """Drives one ReadSession on its own socket; ``done`` resolves when the session ends."""

    def __init__(self, session: ReadSession,
                 on_finish: Callable[[], None] | None = None) -> None:
        self.session = session
        self._on_finish = on_finish
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._flush()

    def datagram_received(self, data: bytes, addr) -> None:
        session = self.session
        session.receive(data, addr[:2], self._loop.time())
        self._flush()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from the client: it has gone; the timer ends the transfer
        pass

    def connection_lost(self, exc) -> None:
        self._cancel_timer()
        if not self.done.done():
            self.done.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        session = self.session
        transport = self.transport
        for datagram, addr in session.datagrams_to_send(0.0):
            transport.sendto(datagram, addr)
        if session.finished:
            self._cancel_timer()
            transport.close()
            if self._on_finish is not None:
                self._on_finish()  # synchronously: the peer may send its next request at once
                self._on_finish = None
            return
        deadline = session.next_timer()
        if deadline is not None and (self._timer is None or deadline < self._timer_at):
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        self._cancel_timer()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        deadline = self.session.next_timer()
        if deadline is None:
            return
        if now < deadline:
            self._arm(deadline)  # the deadline moved on since we armed: sleep again
            return
        self.session.on_timer(now)
        self._flush()
        if not self.session.finished and self._timer is None:
            nxt = self.session.next_timer()
            if nxt is not None:
                self._arm(nxt)


async def open_transfer(bind: str, session: ReadSession,
                        on_finish: Callable[[], None] | None = None) -> TransferProtocol:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(
        lambda: TransferProtocol(session, on_finish), local_addr=(bind, 0))
    return protocol
