"""A client that asks again from the same port, as the read session sees it: its next request
ends the transfer, a copy of its request is ignored, on the fake clock with both transports'
ways of reporting what the transfer's socket showed (ReadSession.new_request)."""

from __future__ import annotations

import heapq
import io

import pytest
from tftp_sessionkit import PEER, payload, request

from services.tftp import codec
from services.tftp.codec import Ack, Opcode, Request
from services.tftp.session import Limits, ReadSession

NEXT = Request(Opcode.RRQ, "next-file", "octet")  # the client's next request


def test_a_different_request_from_the_client_ends_the_transfer():
    def session_after(acks: list[int], size: int, **options) -> ReadSession:
        session = ReadSession(PEER, io.BytesIO(payload(size)), size, request(**options),
                              Limits(), 0.0)
        for block in acks:
            session.receive(codec.encode(Ack(block)), PEER, 0.01)
        return session

    # data ACKed and the last block out: done with it, its final ACK was lost
    session = session_after([1], 600)
    session.new_request(NEXT, settled=True)
    assert session.result == "unconfirmed" and session.next_timer() is None
    assert "instead of ACKing the last block" in session.detail
    # nothing ACKed (one block), the OACK only, or mid-file: it gave this transfer up
    for session in (session_after([], 100), session_after([0], 100, tsize=0),
                    session_after([1], 5000)):
        session.new_request(NEXT, settled=True)
        assert session.result == "abandoned" and session.next_timer() is None
    assert session.detail.endswith("before finishing this transfer (last acknowledged block 1)")
    # the size asked, the OACK not answered: a size probe whose ERROR may have been lost
    session = session_after([], 100, tsize=0)
    session.new_request(NEXT, settled=True)
    assert session.result == "tsize_probe"
    # an ended transfer stays as it ended
    session = session_after([1, 2], 600)
    assert session.result == "ok"
    session.new_request(NEXT, settled=True)
    assert session.result == "ok"



# ------------------------------------------------------------------------------- requests again
# A request from the transfer's own address and port reaches the listener, not the transfer's
# socket; the transport hands it to the session (new_request) with what the socket showed. The
# two transports, on the fake clock: the event loop reads the transfer's socket the moment the
# request comes ("loop", settled); a transfer's thread takes it at its next wake-up, after the
# datagram that woke it, and may take a datagram LAG after it arrived ("thread", not settled);
# it knows whether the request came before the last block went out (end_unsent). ``late``: the
# thread takes its requests only as it ends (a loaded machine did not schedule it sooner).
LAG = 0.0005


def requests_again(size: int, script: list, model: str, req: Request | None = None,
                   late: bool = False):
    """Run a transfer of ``size`` bytes against a client that sends ``script``: (time, ACK
    datagram or Request), each arriving 1 ms later. Returns (session, the requests served
    after it: its next_request, then those that came once it was over, end time)."""
    req = req or request()
    session = ReadSession(PEER, io.BytesIO(payload(size)), size, req, Limits(), 0.0)
    session.datagrams_to_send(0.0)
    events = []
    for seq, (sent_at, item) in enumerate(script):
        taken = sent_at + 0.001 + (LAG if model == "thread" and isinstance(item, bytes) else 0)
        heapq.heappush(events, (taken, seq, item))
    waiting: list[tuple[Request, bool]] = []
    now = 0.0
    while not session.finished:
        deadline = session.next_timer()
        if events and events[0][0] <= deadline:
            now, _seq, item = heapq.heappop(events)
            if isinstance(item, Request):
                if model == "loop":
                    session.new_request(item, settled=True)
                else:
                    waiting.append((item, not session.last_block_out()))  # until the
                    # thread's next wake-up
                continue
            session.receive(item, PEER, now)
        else:
            now = deadline  # a timer wake-up: the thread takes its requests first
        if not late:
            for waiting_request, end_unsent in waiting:
                session.new_request(waiting_request, settled=False, end_unsent=end_unsent)
            waiting.clear()
        if not session.finished and now >= session.next_timer():
            session.on_timer(now)
        session.datagrams_to_send(now)
    for waiting_request, end_unsent in waiting:  # the thread's last intake, as it ends
        session.new_request(waiting_request, settled=False, end_unsent=end_unsent)
    later = [item for _t, _s, item in sorted(events) if isinstance(item, Request)]
    served = ([session.next_request] if session.next_request else []) + later
    return session, served, now


def ack(block: int) -> bytes:
    return codec.encode(Ack(block))


models = pytest.mark.parametrize("model", ["loop", "thread"])


@models
def test_a_copy_crossing_data_1_is_not_served_again(model):
    """The client's second copy of its request crosses our DATA 1: ignored, one transfer."""
    session, served, _ = requests_again(600, [(0.0005, request()), (0.002, ack(1)),
                                              (0.004, ack(2))], model)
    assert session.result == "ok" and session.copies == 1 and served == []


def test_a_copy_a_thread_takes_after_the_final_ack():
    """The copy crosses DATA 1 of 2 and the thread takes it only after the final ACK: it
    came before the last block went out, so it is still a copy (CI once served it again)."""
    session, served, _ = requests_again(600, [(0.0005, request()), (0.002, ack(1)),
                                              (0.004, ack(2))], "thread", late=True)
    assert session.result == "ok" and session.copies == 1 and served == []


@models
def test_a_copy_crossing_the_only_block(model):
    """One block: the copy crosses DATA 1, which is also the last. The event loop sees the
    copy before the ACK; a thread cannot tell it from a re-fetch (docs/tftp.md): it serves it
    once more, and the client ends that transfer with ERROR 5."""
    session, served, _ = requests_again(100, [(0.0005, request()), (0.002, ack(1))], model)
    assert session.result == "ok"
    assert served == ([] if model == "loop" else [request()])


@models
def test_the_same_request_right_after_the_final_ack_is_served(model):
    """A re-fetch of the same file from the same port the instant the final ACK went (CI hit
    this with a thread holding the ACK while the listener saw the request)."""
    session, served, _ = requests_again(100, [(0.002, ack(1)), (0.002, request())], model)
    assert session.result == "ok" and served == [request()]


@models
def test_the_next_file_right_after_the_final_ack_is_served(model):
    session, served, _ = requests_again(600, [(0.002, ack(1)), (0.004, ack(2)), (0.004, NEXT)],
                                        model)
    assert session.result == "ok" and served == [NEXT]


@models
def test_a_new_request_after_a_lost_final_ack(model):
    """ACK 2 (the last) is lost and the client asks for its next file from the same port:
    unconfirmed, served at once (the loop) or at the thread's next timer, not after our
    give-up (retries x timeout_max = 24 s)."""
    session, served, now = requests_again(600, [(0.002, ack(1)), (0.005, NEXT)], model)
    assert session.result == "unconfirmed" and served == [NEXT]
    assert "new request from the same port" in session.detail
    assert now < Limits().timeout_initial


@models
def test_a_new_request_mid_file_abandons_it(model):
    session, served, _ = requests_again(5000, [(0.002, ack(1)), (0.003, NEXT)], model)
    assert session.result == "abandoned" and served == [NEXT]


@models
def test_a_size_probe_whose_error_was_lost(model):
    """OVMF asks with tsize, reads the OACK and ends it with an ERROR, then asks again: with
    that ERROR lost, its next request says the same."""
    probe = request(tsize=0)
    session, served, _ = requests_again(5000, [(0.003, request(tsize=0, blksize=1468))], model,
                                        probe)
    assert session.result == "tsize_probe" and served == [request(tsize=0, blksize=1468)]


def test_next_request_rules():
    def ended(result: str) -> ReadSession:
        session = ReadSession(PEER, io.BytesIO(payload(100)), 100, request(), Limits(), 0.0)
        if result == "ok":
            session.receive(ack(1), PEER, 0.01)
        else:
            session.finish(result)
        assert session.result == result
        return session

    # the same request after the end: served; not settled, only after an ok end
    for result in ("ok", "timeout", "client_error"):
        session = ended(result)
        session.new_request(request(), settled=True)
        assert session.next_request == request()
        session = ended(result)
        session.new_request(request(), settled=False)
        assert session.next_request == (request() if result == "ok" else None)
    # never after the service stopped
    session = ended("aborted")
    session.new_request(NEXT, settled=True)
    assert session.next_request is None
    # one next request is kept: its copies and later ones are ignored...
    session = ended("ok")
    session.new_request(NEXT, settled=True)
    session.new_request(Request(Opcode.RRQ, "other", "octet"), settled=True)
    assert session.next_request == NEXT
    # ... but one that waits on an ok end gives way to a different request
    session = ended("timeout")
    session.new_request(request(), settled=False)
    session.new_request(NEXT, settled=False)
    assert session.next_request == NEXT
    # the transport knows the request came before the last block was sent: a copy, also
    # when its thread takes it after an ok end
    session = ended("ok")
    session.new_request(request(), settled=False, end_unsent=True)
    assert session.next_request is None and session.copies == 1
    # nothing is served while the transfer runs
    session = ReadSession(PEER, io.BytesIO(payload(5000)), 5000, request(), Limits(), 0.0)
    session.new_request(request(), settled=True)
    assert session.next_request is None and session.copies == 1 and not session.finished


def test_last_block_out_says_when_the_end_may_have_reached_the_client():
    session = ReadSession(PEER, io.BytesIO(payload(600)), 600, request(), Limits(), 0.0)
    session.datagrams_to_send(0.0)                 # DATA 1 of 2
    assert not session.last_block_out(prepared=True)
    _ack_1, (data_2,) = session.prepared_reply()   # DATA 2, held for ACK 1
    assert not session.last_block_out() and session.last_block_out(prepared=True)
    session.prepared_reply_sent(0.01)
    assert session.last_block_out() and codec.decode(data_2).block == 2

