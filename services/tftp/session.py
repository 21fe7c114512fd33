"""One read transfer as a sans-I/O state machine: no sockets, no clock, no logging.

The transport feeds it datagrams and the time; it answers with datagrams and its next deadline::

    s = ReadSession(peer, source, size, request, limits, now)
    send(s.datagrams_to_send(now))            # OACK, or the first window of DATA
    s.receive(datagram, source_address, now)  # each datagram on the transfer's socket
    s.on_timer(now)                           # when now >= s.next_timer()
    s.finished, s.result                      # "ok", "timeout", "unconfirmed", ...
    s.new_request(request, settled)           # the client asked again from the same port
    s.next_request                            # ... and this is to be served after the end

Rules it keeps:

- Options (RFC 2347/2348/2349/7440) are negotiated once, by :func:`negotiate`; an OACK is sent
  when at least one option was accepted, and DATA starts only after ACK 0.
- Block numbers are 16 bits and wrap to 0 (what tftp-hpa, atftp, curl and iPXE expect); the
  session counts blocks absolutely and maps each ACK to the one block of the window it can mean.
- An ACK for a block already acknowledged (a duplicate, or one delayed in the network) is ignored:
  it never triggers a send, so the Sorcerer's Apprentice bug (RFC 1123 §4.2.3.1) cannot happen.
- Windowed sends (RFC 7440): up to ``windowsize`` blocks in flight; an ACK for a block inside
  the window (the client saw a gap) moves the window there and resends what follows it.
- Retransmission on timeout: an adaptive timeout (RFC 6298 style: smoothed RTT + 4 x variance,
  clamped to ``Limits``; Karn's rule: no RTT sample from a retransmitted block), doubled on each
  consecutive expiry up to the longest timeout. A client that negotiated the ``timeout``
  option (RFC 2349) gets it acknowledged, and it is that longest timeout; we do retransmit
  sooner when the measured RTT says a block is lost (curl always asks for ``timeout 6``:
  waiting 6 s per lost packet made a 5%-loss transfer crawl). Early retransmissions are
  harmless: duplicates are ignored on both sides.
- The transfer is given up after ``Limits.retries`` expiries in a row, and never sooner than
  ``retries`` x ``Limits.timeout_max`` after the last progress: small RTT-based timeouts must
  not shrink the time a client gets to answer below what its own retransmission interval needs
  (curl re-ACKs only every 12 s with ``--max-time 600``). The client's ``timeout`` option does
  not lengthen it: 255 s would hold a transfer slot for 25 minutes.
- The transfer ends cleanly on the ACK of the last block: the first one shorter than blksize,
  which is empty when the size is a multiple of blksize.
- A datagram from any address other than the peer's (a foreign port: RFC 1350 "transfer ID")
  is answered with ERROR 5 and otherwise ignored.
- A request from the peer's address and port while the transfer runs is either a copy of this
  transfer's request (ignored) or the client's next request (this transfer ends, the request
  is served after it): :meth:`ReadSession.new_request` is the one place that tells them apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final, Protocol

from services.tftp import codec
from services.tftp.codec import ErrorCode

Address = tuple[str, int]
UNKNOWN_TID_REPLY = codec.error(ErrorCode.UNKNOWN_TID, "unknown transfer ID: not your transfer")
# (opcode, block): the DATA header, codec's one definition (Final: compiled, a C static, not a
# lookup per block)
_data_header: Final = codec.HEADER.pack


class Source(Protocol):
    def read(self, n: int) -> bytes | memoryview: ...  # memoryview: slices of cached files

    def skip(self, n: int) -> None: ...  # n octets on, unread (a transfer resumed midway)

    # optional: window() -> (buffer, start, end), what is in memory from the position on, taken
    # in place by the compiled pump (content.BytesSource, FileSource; not netascii)


@dataclasses.dataclass(frozen=True)
class Limits:
    blksize_max: int = codec.BLKSIZE_MAX  # cap on the blksize we accept (RFC 2348 allows less)
    windowsize_max: int = 64              # cap on the windowsize we accept (RFC 7440)
    timeout_initial: float = 0.5          # before the first RTT sample
    timeout_min: float = 0.05
    timeout_max: float = 4.0
    retries: int = 6                      # consecutive expiries before giving up, and no
    #                                       sooner than retries x timeout_max


@dataclasses.dataclass(frozen=True)
class Negotiated:
    blksize: int = 512
    windowsize: int = 1
    timeout: int | None = None   # seconds, when the client set the timeout option
    oack: tuple[tuple[str, str], ...] = ()


def negotiate(request: codec.Request, size: int | None, limits: Limits) -> Negotiated:
    """Accept the options we support, within our limits; ignore the rest (RFC 2347)."""
    blksize, windowsize, timeout = 512, 1, None
    accepted: list[tuple[str, str]] = []
    for name, value in request.options:
        if name == codec.BLKSIZE:
            number = int(value)
            if number < codec.BLKSIZE_MIN:
                continue  # out of RFC 2348's range: ignore, the client falls back to 512
            blksize = min(number, limits.blksize_max, codec.BLKSIZE_MAX)
            accepted.append((name, str(blksize)))
        elif name == codec.TSIZE:
            if size is not None:
                accepted.append((name, str(size)))
        elif name == codec.TIMEOUT:
            number = int(value)
            if 1 <= number <= 255:  # RFC 2349's range
                timeout = number
                accepted.append((name, str(number)))
        elif name == codec.WINDOWSIZE:
            number = int(value)
            if number >= 1:
                windowsize = min(number, limits.windowsize_max, 65535)
                accepted.append((name, str(windowsize)))
    return Negotiated(blksize, windowsize, timeout, tuple(accepted))


class ReadSession:
    """Sends one file (``source.read`` in order) to ``peer``.

    ``resume_at``: a lock-step transfer another worker process ran until it had sent block
    ``resume_at`` (absolute) and not had it ACKed (:meth:`resume_point`; the worker moved it
    here with its socket, services/tftp/balance.py): the session starts in that state, the
    source read from that block on, and that block is its first answer (the transport drops
    it: the client has it). The negotiation is the request's, as on the other worker.
    """

    def __init__(self, peer: Address, source: Source, size: int | None,
                 request: codec.Request, limits: Limits, now: float,
                 resume_at: int = 0) -> None:
        self.peer = peer
        self.request = request
        self._source = source
        self._read: Callable[[int], bytes | memoryview] = source.read  # bound once: per block
        self._limits = limits
        self.options = negotiate(request, size, limits)
        self.blksize = self.options.blksize
        self.windowsize = self.options.windowsize
        self.finished = False
        self.result = "running"
        self.detail = ""
        # statistics for the transfer record
        self.bytes_sent = 0      # payload octets of distinct blocks sent
        self.retransmits = 0     # datagrams sent again after a timeout or a gap
        self.duplicate_acks = 0
        self.foreign = 0         # datagrams from other ports (answered with ERROR 5)
        self.malformed = 0
        self.copies = 0          # copies of the request seen during the transfer (ignored)
        self.started = now
        # state
        self._out: list[tuple[bytes, Address]] = []
        # absolute block number -> payload, unacknowledged (framed again if it is resent)
        self._blocks: dict[int, bytes | memoryview] = {}
        self._sent_at: dict[int, float] = {}  # first-send time of blocks eligible for RTT
        self._acked = 0
        self._sent = 0
        self._last: int | None = None
        # read ahead by prepared_reply: the payloads of the blocks after self._sent, and the
        # DATA datagrams of the first of them (framed by prepared_reply, sent by _fill)
        self._ahead: list[bytes | memoryview] = []
        self._framed: list[bytes] = []
        self._expiries = 0
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rto_max = float(self.options.timeout) if self.options.timeout else \
            limits.timeout_max
        self._rto = min(limits.timeout_initial, self._rto_max)
        # least silence before giving up: the operator's bound, whatever timeout the client
        # asked for (up to 255 s, which would hold a slot for 25 minutes)
        self._patience = limits.retries * limits.timeout_max
        self._progress_at = now  # the last new ACK (or the start)
        # the client's next request (see new_request), and whether it waits on an ``ok`` end
        self._next: codec.Request | None = None
        self._next_if_ok = False
        self._oack: bytes | None = None  # the OACK, until the client ACKs it (block 0)
        self._oack_sent_at: float | None = None
        if resume_at > 0:
            source.skip((resume_at - 1) * self.blksize)
            self._acked = self._sent = resume_at - 1
            self.bytes_sent = (resume_at - 1) * self.blksize
            self._fill(now)
        elif self.options.oack:
            self._oack = codec.encode(codec.OAck(self.options.oack))
            self._oack_sent_at = now
            self._out.append((self._oack, peer))
        else:
            self._fill(now)
        self._deadline: float | None = now + self._rto

    # -- the sans-I/O interface ----------------------------------------------------------------
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def prepared_reply(self) -> tuple[bytes, list[bytes]] | None:
        """With a whole window in flight: ``(ack, datagrams)`` such that if the next datagram
        from the peer is exactly ``ack`` (the ACK of the window's last block), the session's
        whole answer is exactly ``datagrams`` (the next window; one block in lock-step).

        A transport may then send ``datagrams`` the moment ``ack`` arrives and call
        :meth:`prepared_reply_sent`, which does the session's bookkeeping (RTT sample, next
        deadline) after the send instead of before it: reading and framing the blocks leaves
        the round trip, which is what limits a transfer on a fast link. Reading ahead changes
        nothing else: whatever arrives instead goes through :meth:`receive` as usual and the
        blocks read ahead are sent in their turn.
        """
        if (self._oack is not None or self.finished or self._last is not None
                or self._sent - self._acked != self.windowsize):
            return None
        # self._ahead always holds the blocks right after self._sent (the source is read once,
        # in order): top it up to a whole window, or to the last block
        ahead, blksize = self._ahead, self.blksize
        if len(ahead) < self.windowsize and (not ahead or len(ahead[-1]) == blksize):
            read = self._read
            while len(ahead) < self.windowsize:
                payload = read(blksize)
                ahead.append(payload)
                if len(payload) < blksize:
                    break
        framed = self._framed
        number = self._sent + len(framed)
        while len(framed) < len(ahead):
            number += 1
            framed.append(_data_header(3, number & 0xFFFF) + ahead[len(framed)])
        return _data_header(4, self._sent & 0xFFFF), list(framed)

    def prepared_reply_sent(self, now: float) -> None:
        """The peer sent exactly the prepared ACK and the transport has sent the prepared
        datagrams (see :meth:`prepared_reply`)."""
        count = len(self._ahead)
        self._on_ack(self._sent & 0xFFFF, now)
        out = self._out
        if len(out) >= count:
            del out[len(out) - count:]  # already sent

    def lockstep_sent(self, now: float) -> tuple[int, bytes | memoryview, float] | None:
        """Lock-step's (windowsize 1) :meth:`prepared_reply_sent`, with the next prepared
        reply computed in the same call: the per-block path of a 50-client server, so it does
        the same bookkeeping as ``prepared_reply_sent`` then ``prepared_reply`` in one step.

        Call it only after a ``prepared_reply()`` (or a previous ``lockstep_sent``) whose ACK
        the peer sent exactly and whose one datagram the transport has sent. Returns ``(block,
        payload, deadline)``: the next prepared reply is the DATA of block ``block + 1`` with
        ``payload``, sent when the peer ACKs ``block`` (the transport frames both, modulo
        2**16: the compiled pump in C, without copying the payload); and the retransmission
        deadline. None when the block just sent was the last one (then nothing is prepared:
        the final ACK goes through :meth:`receive`).
        """
        number = self._sent                 # the block the peer has just acknowledged
        sent_at = self._sent_at
        first_sent = sent_at.pop(number, None)
        if first_sent is not None:
            self._sample(first_sent, now)
        blocks = self._blocks
        del blocks[number]
        self._acked = number
        self._expiries = 0
        self._progress_at = now
        number += 1                         # the block the transport has just sent
        ahead = self._ahead
        payload = ahead.pop()               # lock-step reads exactly one block ahead
        if self._framed:
            self._framed.pop()              # framed by prepared_reply, sent by the transport
        blocks[number] = payload
        sent_at[number] = now
        self._sent = number
        size = len(payload)
        self.bytes_sent += size
        self._deadline = deadline = now + self._rto
        blksize = self.blksize
        if size < blksize:
            self._last = number
            return None
        payload = self._read(blksize)
        ahead.append(payload)
        return number, payload, deadline

    def lockstep_lend(self) -> tuple[int, bytes | memoryview, float | None, bytes | memoryview,
                                     int, float | None, float, float, float, float, int,
                                     Source]:
        """The state :meth:`lockstep_sent` works on, for a transport that does that bookkeeping
        itself, block after block (the compiled pump, in C), and hands the result back with
        :meth:`lockstep_restore` before the session is read or fed anything else.

        Call it only where :meth:`lockstep_sent` could be called (a lock-step reply prepared).
        Returns ``(sent, payload, sent_at, ahead, bytes_sent, srtt, rttvar, rto, rto_min,
        rto_max, blksize, source)``: the block sent and not ACKed (absolute) and its payload,
        when it was first sent (None: resent, no RTT sample from it: Karn), the payload of the
        block after it (read ahead), the octets sent so far, the RTT state (as :meth:`_sample`
        keeps it), and the source, read on from there (``read``, or in place: ``window`` and
        ``skip``). It changes nothing: the session stays as it was until
        :meth:`lockstep_restore`.
        """
        sent = self._sent
        return (sent, self._blocks[sent], self._sent_at.get(sent), self._ahead[0],
                self.bytes_sent, self._srtt, self._rttvar, self._rto, self._limits.timeout_min,
                self._rto_max, self.blksize, self._source)

    def lockstep_restore(self, sent: int, payload: bytes | memoryview,
                         ahead: bytes | memoryview | None, last: bool, bytes_sent: int,
                         now: float, srtt: float | None, rttvar: float, rto: float,
                         deadline: float) -> None:
        """The session after the blocks a transport served from :meth:`lockstep_lend`'s state,
        exactly as the same :meth:`lockstep_sent` calls would have left it: ``sent`` is the
        block sent last (at ``now``, when its predecessor's ACK came) with ``payload``,
        ``ahead`` the block read after it, ``last``: ``sent`` was the last block, shorter than
        blksize (``ahead`` None and not ``last``: the read after it failed; the next
        :meth:`prepared_reply` reads again, as after a failed read in ``lockstep_sent``)."""
        self._blocks.clear()
        self._blocks[sent] = payload
        self._sent_at.clear()
        self._sent_at[sent] = now
        self._acked = sent - 1
        self._sent = sent
        self._expiries = 0
        self._progress_at = now
        self._ahead.clear()
        self._framed.clear()
        if last:
            self._last = sent
        elif ahead is not None:
            self._ahead.append(ahead)
        self.bytes_sent = bytes_sent
        self._srtt = srtt
        self._rttvar = rttvar
        self._rto = rto
        self._deadline = deadline

    def resume_point(self) -> int:
        """The block a lock-step transfer has sent and not had ACKed, while it is in the
        middle (0: not in a state to resume elsewhere: the OACK or the last block out, a
        retransmission pending, ended): ``ReadSession(..., resume_at=)`` continues from it."""
        if (self.finished or self._oack is not None or self._last is not None
                or self.windowsize != 1 or self._sent != self._acked + 1 or self._expiries):
            return 0
        return self._sent

    def foreign_datagram(self) -> bytes:
        """Count a datagram from another address or port and return the reply to send there
        (ERROR 5). Touches nothing else, so a transport may call it from another thread than
        the one driving the transfer."""
        self.foreign += 1
        return UNKNOWN_TID_REPLY

    def new_request(self, request: codec.Request, settled: bool,
                    end_unsent: bool = False) -> None:
        """The client sent ``request`` to the well-known port from this transfer's address and
        port: is it a copy of this transfer's request or the client's next one?

        The transport reports what its socket saw. ``settled``: the session has been fed
        exactly the datagrams that reached the transfer's socket before the request (the
        event loop reads that socket the moment the request comes). False: it may also have
        been fed later ones (a transfer's thread takes the request at its next wake-up, after
        reading its socket, and may have held the final ACK when the request came).

        - A different request: the client is done with this transfer (a client does not ask
          for something else while it still receives; PXE ROMs ask for their next file from
          the same port the instant they ACK the last block, also when that ACK was lost).
          The transfer ends now and the request is served after it.
        - The same request while the transfer runs: the client sent it again before it saw
          our first answer (a retransmission crossing it): ignored, counted in ``copies``.
        - The same request after the transfer ended: the client ACKed the end and asked again
          (a re-fetch): served after it. When not ``settled`` the end may have come after the
          request, a late copy: it is then served only if the transfer ended ``ok`` (a late
          copy starts one extra transfer, which the client ends with ERROR 5).
        - ``end_unsent``: the transport knows the request came before the last block was first
          sent (:meth:`last_block_out`). The same request is then a copy whatever happened
          since: the client cannot have had the whole file when it sent it.

        One next request is kept (:attr:`next_request`); once it is, further requests are
        its retransmissions and are ignored.
        """
        if self._next is not None and not self._next_if_ok:
            return
        if request != self.request:
            self._supersede()
            self._next, self._next_if_ok = request, False
        elif not self.finished or end_unsent:
            self.copies += 1
        else:
            self._next, self._next_if_ok = request, not settled

    def last_block_out(self, prepared: bool = False) -> bool:
        """The last block has been handed to the transport (``prepared``: or it is the block a
        transport holds from :meth:`prepared_reply`, to send the moment its ACK comes). A
        transport that takes requests late uses it for ``end_unsent`` (:meth:`new_request`)."""
        if self._last is not None:
            return True
        ahead = self._ahead
        return prepared and len(ahead) > 0 and len(ahead[-1]) < self.blksize

    @property
    def next_request(self) -> codec.Request | None:
        """The request to serve once this transfer is over (:meth:`new_request`), or None."""
        if self._next is None or not self.finished or self.result == "aborted":
            return None
        if self._next_if_ok and self.result != "ok":
            return None
        return self._next

    def next_timer(self) -> float | None:
        return None if self.finished else self._deadline

    def receive(self, datagram: bytes, source: Address, now: float) -> None:
        if source != self.peer:
            self._out.append((self.foreign_datagram(), source))
            return
        if self.finished:
            return
        # fast path: a well-formed ACK is the packet we see thousands of times a second
        if len(datagram) >= 4 and datagram[0] == 0 and datagram[1] == codec.Opcode.ACK:
            self._on_ack((datagram[2] << 8) | datagram[3], now)
            return
        try:
            message = codec.decode(datagram)
        except codec.DecodeError as exc:
            self.malformed += 1
            self.detail = str(exc)
            return
        if isinstance(message, codec.Error):
            if self._asked_size_only():
                result = "tsize_probe"
            elif message.code == ErrorCode.OPTION_REFUSED:
                result = "options_refused"
            else:
                result = "client_error"
            self.finish(result, f"client sent ERROR {message.code}: {message.message[:100]}")
        else:
            self._out.append((codec.error(ErrorCode.ILLEGAL_OPERATION,
                                          "illegal TFTP operation during a read transfer"),
                              self.peer))
            self.finish("illegal", f"client sent {type(message).__name__} during the transfer")

    def on_timer(self, now: float) -> None:
        if self.finished or self._deadline is None or now < self._deadline:
            return
        self._expiries += 1
        silence = now - self._progress_at
        if self._expiries > self._limits.retries and silence >= self._patience:
            waited = f"for {silence:.1f} s after {self._expiries - 1} retransmissions"
            if self._end_probably_received():
                self.finish("unconfirmed", f"no ACK of the last block {waited}: the client "
                            "probably has the file and its final ACK was lost")
            else:
                self.finish("timeout", f"no ACK {waited} (last acknowledged block "
                            f"{self._acked})")
            return
        self._rto = min(self._rto * 2, self._rto_max)
        if self._oack is not None:
            self._oack_sent_at = None
            self._out.append((self._oack, self.peer))
            self.retransmits += 1
        else:
            self._resend_window()
        self._deadline = now + self._rto

    # -- internals -----------------------------------------------------------------------------
    def _supersede(self) -> None:
        """The client asked for something else from this transfer's address and port: end the
        transfer now. ``unconfirmed`` if the last block went out and data was ACKed (its final
        ACK was lost), ``tsize_probe`` if it only wanted the size, ``abandoned`` otherwise.
        Nothing if it has ended already."""
        if self.finished:
            return
        if self._asked_size_only():
            self.finish("tsize_probe", "the client sent a new request from the same port "
                        "instead of ACKing our OACK (its ERROR ending this one may be lost)")
        elif self._end_probably_received():
            self.finish("unconfirmed", "the client sent a new request from the same port "
                        "instead of ACKing the last block: it is done with this transfer")
        else:
            self.finish("abandoned", "the client sent a new request from the same port before "
                        f"finishing this transfer (last acknowledged block {self._acked})")

    def _end_probably_received(self) -> bool:
        """Whether a silent client most likely has the whole file: it has ACKed data and the
        final window (the last block in lock-step) is out. A client ACKs its end once and
        exits, so that ACK lost looks like silence; with no DATA ACKed at all, nothing says
        any data got through."""
        return self._last is not None and self._acked > 0

    def _asked_size_only(self) -> bool:
        """Whether the client, ending the transfer before ACKing our OACK, only wanted the size
        (UEFI PXE (OVMF) asks with tsize, reads the OACK, ends that transfer with ERROR 8 and
        asks for the file again)."""
        return self._oack is not None and any(name == codec.TSIZE
                                              for name, _value in self.options.oack)

    def finish(self, result: str, detail: str = "") -> None:
        """End the transfer with ``result`` (the session's own ends, and the transport's: a
        socket that cannot be opened, the service stopping); nothing more is sent."""
        self.finished = True
        self.result = result
        if detail:
            self.detail = detail
        self._blocks.clear()
        self._sent_at.clear()
        self._ahead.clear()
        self._framed.clear()
        self._deadline = None

    def _sample(self, sent_at: float | None, now: float) -> None:
        if sent_at is None:
            return
        rtt = now - sent_at
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._rto = min(max(self._srtt + 4 * self._rttvar, self._limits.timeout_min),
                        self._rto_max)

    def _fill(self, now: float) -> None:
        """Send new blocks until the window is full or the last block is out."""
        limit = self._acked + self.windowsize
        number = self._sent
        if number >= limit or self._last is not None:
            return
        blksize, read, peer = self.blksize, self._read, self.peer
        blocks, sent_at, out = self._blocks, self._sent_at, self._out
        ahead, framed = self._ahead, self._framed
        octets = 0
        while number < limit:
            number += 1
            if ahead:  # read by prepared_reply: block number `number`
                payload = ahead.pop(0)
                datagram = framed.pop(0) if framed else \
                    _data_header(3, number & 0xFFFF) + payload
            else:
                payload = read(blksize)
                datagram = _data_header(3, number & 0xFFFF) + payload  # 3: DATA
            size = len(payload)
            blocks[number] = payload
            sent_at[number] = now
            out.append((datagram, peer))
            octets += size
            if size < blksize:
                self._last = number
                break
        self._sent = number
        self.bytes_sent += octets

    def _resend_window(self) -> None:
        for number in range(self._acked + 1, self._sent + 1):
            self._out.append((_data_header(3, number & 0xFFFF) + self._blocks[number],
                              self.peer))
            self._sent_at.pop(number, None)  # Karn: no RTT sample from a retransmitted block
            self.retransmits += 1

    def _on_ack(self, block: int, now: float) -> None:
        if self._oack is not None:
            if block == 0:
                self._oack = None
                self._sample(self._oack_sent_at, now)
                self._expiries = 0
                self._progress_at = now
                self._fill(now)
                self._deadline = now + self._rto
            else:
                self.duplicate_acks += 1
            return
        acked = self._acked
        ahead = (block - acked) & 0xFFFF
        if ahead == 0 or ahead > self._sent - acked:
            self.duplicate_acks += 1  # already acknowledged, or never sent: never a send
            return
        number = acked + ahead
        blocks, sent_at = self._blocks, self._sent_at
        self._sample(sent_at.pop(number, None), now)
        del blocks[number]
        for done in range(acked + 1, number):
            del blocks[done]
            sent_at.pop(done, None)
        self._acked = number
        self._expiries = 0
        self._progress_at = now
        if number == self._last:
            self.finish("ok")
            return
        if number < self._sent:
            self._resend_window()  # the client saw a gap: resend from the block after its ACK
        self._fill(now)
        self._deadline = now + self._rto
