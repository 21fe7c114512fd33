"""The read session pumped against an in-memory RFC 7440 client with a fake clock and a
scripted network (loss, duplication, reordering)."""

from __future__ import annotations

import io
import random

import pytest
from tftp_sessionkit import PEER, payload, request

from services.tftp import codec
from services.tftp.codec import Ack, Data, Opcode, Request
from services.tftp.session import Limits, ReadSession, negotiate

SERVER = ("198.18.0.1", 50000)


class Client:
    """A receiving client as RFC 1350/7440 describe it: ACK every `window` blocks in order,
    ACK the last in-order block when a gap appears, re-ACK on its own timeout."""

    def __init__(self, window: int = 1, blksize: int = 512, timeout: float = 1.0) -> None:
        self.window, self.blksize, self.timeout = window, blksize, timeout
        self.expected = 1
        self.received = bytearray()
        self.done = False
        self.oack = None
        self.deadline = timeout
        self.since_ack = 0

    def on(self, datagram: bytes, now: float) -> list[bytes]:
        message = codec.decode(datagram)
        if isinstance(message, codec.OAck):
            self.oack = dict(message.options)
            self.blksize = int(self.oack.get("blksize", self.blksize))
            self.window = int(self.oack.get("windowsize", 1))
            self.deadline = now + self.timeout
            return [codec.encode(Ack(0))]
        assert isinstance(message, Data)
        if self.done:
            return [codec.encode(Ack(message.block))]  # re-ACK a retransmitted last block
        if message.block != self.expected & 0xFFFF:
            if (message.block - self.expected) & 0xFFFF < 0x8000:  # a gap: ACK last in order
                self.since_ack = 0
                return [codec.encode(Ack((self.expected - 1) & 0xFFFF))]
            return [codec.encode(Ack((self.expected - 1) & 0xFFFF))]  # a duplicate: re-ACK
        self.received += message.data
        self.expected += 1
        self.since_ack += 1
        self.deadline = now + self.timeout
        if len(message.data) < self.blksize:
            self.done = True
            return [codec.encode(Ack(message.block))]
        if self.since_ack >= self.window:
            self.since_ack = 0
            return [codec.encode(Ack(message.block))]
        return []

    def on_timer(self, now: float) -> list[bytes]:
        if self.done or now < self.deadline:
            return []
        self.deadline = now + self.timeout
        self.since_ack = 0
        return [codec.encode(Ack((self.expected - 1) & 0xFFFF))]


class Network:
    """Datagrams with a delivery time; `fate(direction, datagram)` returns a list of delays
    (empty: lost, two: duplicated, larger delay: reordered)."""

    def __init__(self, fate) -> None:
        self.fate = fate
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.seq = 0

    def send(self, direction: str, datagram: bytes, now: float) -> None:
        for delay in self.fate(direction, datagram):
            self.seq += 1
            self.queue.append((now + delay, self.seq, direction, datagram))


def pump(data: bytes, req: Request, client: Client, fate=lambda d, g: [0.001],
         limits: Limits = Limits(), max_steps: int = 2_000_000, prepared: bool = False):
    """Run a transfer to its end. ``prepared``: drive it as the transports do, sending the
    session's prepared reply (if any) the moment the matching ACK arrives."""
    now = 0.0
    ready = None
    session = ReadSession(PEER, io.BytesIO(data), len(data), req, limits, now)
    net = Network(fate)
    sent_data = []

    def flush():
        nonlocal ready
        for datagram, addr in session.datagrams_to_send(now):
            assert addr == PEER
            if datagram[1] == Opcode.DATA:
                sent_data.append(datagram)
            net.send("down", datagram, now)
        ready = session.prepared_reply() if prepared else None

    flush()
    for _ in range(max_steps):
        if session.finished and not net.queue:
            break
        timers = [t for t in (session.next_timer(), client.deadline if not client.done else None)
                  if t is not None]
        arrival = min(net.queue)[0] if net.queue else None
        if arrival is not None and (not timers or arrival <= min(timers)):
            net.queue.sort()
            when, _, direction, datagram = net.queue.pop(0)
            now = max(now, when)
            if direction == "down":
                for reply in client.on(datagram, now):
                    net.send("up", reply, now)
            elif ready is not None and datagram == ready[0]:
                for prepared_datagram in ready[1]:
                    sent_data.append(prepared_datagram)
                    net.send("down", prepared_datagram, now)
                session.prepared_reply_sent(now)
                flush()
            else:
                session.receive(datagram, PEER, now)
                flush()
        elif timers:
            now = max(now, min(timers))
            session.on_timer(now)
            flush()
            for reply in client.on_timer(now):
                net.send("up", reply, now)
        else:
            break
    else:
        pytest.fail("pump did not finish")
    return session, sent_data, now


both_paths = pytest.mark.parametrize("prepared", [False, True], ids=["receive", "prepared"])


# ------------------------------------------------------------------------------- negotiation
def test_negotiate_caps_and_ignores():
    limits = Limits(blksize_max=1468, windowsize_max=16)
    n = negotiate(request(blksize=65464, windowsize=64, tsize=0, timeout=3, multicast=""),
                  1000, limits)
    assert (n.blksize, n.windowsize, n.timeout) == (1468, 16, 3)
    assert n.oack == (("blksize", "1468"), ("windowsize", "16"), ("tsize", "1000"),
                      ("timeout", "3"))
    assert negotiate(request(blksize=4), 10, limits).oack == ()          # < 8: ignored
    assert negotiate(request(timeout=0), 10, limits).oack == ()          # RFC 2349 1..255
    assert negotiate(request(timeout=256), 10, limits).oack == ()
    assert negotiate(request(tsize=0), None, limits).oack == ()          # size unknown
    assert negotiate(request(blksize=70000), 1, Limits()).blksize == 65464  # fits one datagram


# ------------------------------------------------------------------------------- clean transfers
@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
@both_paths
def test_lockstep_sizes_end_cleanly(size, prepared):
    data = payload(size)
    client = Client()
    session, sent, _ = pump(data, request(), client, prepared=prepared)
    assert session.result == "ok" and bytes(client.received) == data
    assert len(sent) == size // 512 + 1          # the empty final block when size % 512 == 0
    assert len(codec.decode(sent[-1]).data) == size % 512
    assert session.retransmits == 0 and session.duplicate_acks == 0


def test_oack_then_data_after_ack0():
    data = payload(3000)
    client = Client()
    session, sent, _ = pump(data, request(blksize=1000, tsize=0), client)
    assert client.oack == {"blksize": "1000", "tsize": "3000"}
    assert [len(codec.decode(d).data) for d in sent] == [1000, 1000, 1000, 0]
    assert session.result == "ok" and bytes(client.received) == data


@pytest.mark.parametrize("window,size", [(4, 4 * 512 * 3), (16, 100_000), (7, 512 * 7 - 1)])
@both_paths
def test_windowed(window, size, prepared):
    data = payload(size)
    client = Client()
    session, sent, _ = pump(data, request(windowsize=window), client, prepared=prepared)
    assert session.result == "ok" and bytes(client.received) == data
    assert len(sent) == size // 512 + 1 and session.retransmits == 0


def test_block_numbers_wrap_to_zero():
    data = payload(70_000 * 8 + 3)
    client = Client()
    session, sent, _ = pump(data, request(blksize=8, windowsize=8), client)
    assert session.result == "ok" and bytes(client.received) == data
    assert codec.decode(sent[65535]).block == 0


# ------------------------------------------------------------------------------- misbehaving nets
@both_paths
def test_duplicate_acks_never_cause_duplicate_sends(prepared):
    """Sorcerer's Apprentice: every ACK delivered twice; each block still goes out once."""
    data = payload(512 * 50 + 10)
    client = Client()
    fate = lambda direction, _d: [0.001, 0.002] if direction == "up" else [0.001]
    session, sent, _ = pump(data, request(), client, fate, prepared=prepared)
    assert session.result == "ok" and bytes(client.received) == data
    assert len(sent) == 51 and session.retransmits == 0
    assert session.duplicate_acks == 50  # the last one arrives after the transfer ended


def test_delayed_ack_causes_no_double_window():
    """A late duplicate of an old ACK arrives after the window has moved: ignored."""
    data = payload(512 * 40)
    client = Client()
    count = {"n": 0}

    def fate(direction, datagram):
        if direction == "up":
            count["n"] += 1
            if count["n"] % 5 == 0:
                return [0.001, 0.05]   # a copy arrives much later
        return [0.001]

    session, sent, _ = pump(data, request(windowsize=4), client, fate)
    assert session.result == "ok" and bytes(client.received) == data
    assert session.retransmits == 0 and len(sent) == 41


def test_lost_block_in_window_recovered():
    data = payload(512 * 64 + 100)
    client = Client()
    dropped = set()

    def fate(direction, datagram):
        if direction == "down" and datagram[1] == Opcode.DATA:
            block = int.from_bytes(datagram[2:4], "big")
            if block in (5, 20, 21, 65) and block not in dropped:
                dropped.add(block)
                return []
        return [0.001]

    session, sent, _ = pump(data, request(windowsize=16), client, fate)
    assert session.result == "ok" and bytes(client.received) == data
    assert dropped == {5, 20, 21, 65} and session.retransmits > 0


@both_paths
def test_lost_ack_and_lost_oack_retransmitted_after_timeout(prepared):
    data = payload(2000)
    client = Client(timeout=10.0)  # the server's timer must do the work
    lost = {"oack": False, "ack2": False}

    def fate(direction, datagram):
        msg = codec.decode(datagram)
        if isinstance(msg, codec.OAck) and not lost["oack"]:
            lost["oack"] = True
            return []
        if isinstance(msg, Ack) and msg.block == 2 and not lost["ack2"]:
            lost["ack2"] = True
            return []
        return [0.001]

    session, sent, now = pump(data, request(blksize=512, tsize=0), client, fate,
                             prepared=prepared)
    assert session.result == "ok" and bytes(client.received) == data
    assert session.retransmits == 2 and now < 5


@pytest.mark.parametrize("window", [1, 8])
@both_paths
def test_random_loss_duplication_reordering(window, prepared):
    rng = random.Random(7 + window)
    data = payload(512 * 300 + 77)

    def fate(_direction, _datagram):
        r = rng.random()
        if r < 0.05:
            return []
        if r < 0.08:
            return [0.001, 0.003]
        if r < 0.12:
            return [0.004]  # reordered behind later datagrams
        return [0.001]

    client = Client(timeout=0.3)
    session, _sent, _ = pump(data, request(windowsize=window), client, fate,
                            prepared=prepared)
    assert session.result == "ok" and bytes(client.received) == data
    assert session.retransmits > 0


def test_gives_up_after_retries_and_backs_off():
    data = payload(5000)
    client = Client(timeout=1000)
    limits = Limits(retries=3, timeout_initial=0.5, timeout_max=4.0)
    session, sent, now = pump(data, request(), client, lambda d, g: [] if d == "up" else [0.001],
                              limits)
    assert session.result == "timeout" and session.finished and session.next_timer() is None
    # 3 expiries are not enough on their own: it waits until 3 x timeout_max (12 s) have passed
    assert len(sent) == 6 and session.retransmits == 5
    assert now == pytest.approx(0.5 + 1 + 2 + 4 + 4 + 4)
    assert session.detail == "no ACK for 15.5 s after 5 retransmissions (last acknowledged " \
                             "block 0)"


def test_client_timeout_option_caps_the_backoff():
    data = payload(100)
    session, sent, now = pump(data, request(timeout=2), Client(timeout=1000),
                              lambda d, g: [] if d == "up" else [0.001], Limits(retries=4))
    assert session.options.timeout == 2 and session.result == "timeout"
    # resends every 2 s at most, and gives up only when 4 x timeout_max (16 s) have passed
    assert now == pytest.approx(0.5 + 1 + 2 * 8)
    assert "last block" not in session.detail  # the OACK was never acknowledged


def test_a_long_client_timeout_does_not_hold_the_slot_longer():
    """RFC 2349 allows timeout 255: the floor stays the operator's retries x timeout_max
    (24 s), and the count rule ends it after 7 doubled timeouts from 0.5 s, not after 6 x 255 s."""
    session, _sent, now = pump(payload(5000), request(timeout=255), Client(timeout=1000),
                               lambda d, g: [] if d == "up" else [0.001], Limits())
    assert session.result == "timeout" and now == pytest.approx(0.5 * (2 ** 7 - 1))


@pytest.mark.parametrize("window", [1, 8])
def test_a_lost_final_ack_is_unconfirmed_not_timeout(window):
    """A client ACKs the end of the file once and exits; when that ACK is lost the record must
    not read like a failed download. 10 blocks: lock-step, or a window of 8 then 2."""
    data = payload(5000)

    def fate(direction, datagram):
        return [] if direction == "up" and datagram[3] == 10 else [0.001]

    client = Client(timeout=1000)
    session, _sent, _now = pump(data, request(windowsize=window), client, fate)
    assert bytes(client.received) == data and session.result == "unconfirmed"
    assert session.detail.startswith("no ACK of the last block for ")
    assert session.detail.endswith(": the client probably has the file and its final ACK was lost")


@pytest.mark.parametrize("options", [{}, {"windowsize": 16}])
def test_a_file_never_acknowledged_is_a_timeout_even_if_all_of_it_was_sent(options):
    """One block in lock-step, or the whole file in the first window: with no DATA ACK
    nothing says any of it arrived (a blksize too big for the path looks like this)."""
    size = 100 if not options else 512 * 10

    def fate(direction, datagram):
        return [] if direction == "up" and datagram[1] == Opcode.ACK and datagram[3] else [0.001]

    session, _sent, _now = pump(payload(size), request(**options), Client(timeout=1000), fate)
    assert session.result == "timeout", session.detail
    assert session.detail.endswith("(last acknowledged block 0)")


def test_silence_before_the_last_block_is_a_timeout():
    data = payload(5000)

    def fate(direction, datagram):
        return [] if direction == "up" and datagram[3] >= 5 else [0.001]

    client = Client(timeout=1000)
    session, _sent, _now = pump(data, request(), client, fate)
    assert session.result == "timeout" and len(client.received) == 5 * 512
    assert session.detail.endswith("retransmissions (last acknowledged block 4)")


@both_paths
def test_small_rtt_timeouts_do_not_shorten_the_wait_for_a_slow_client(prepared):
    """On a fast link the RTT-based timeout is timeout_min (50 ms): six doublings of it are
    over in 6.35 s. Losing one block that often must not end a transfer whose client re-ACKs
    only every 12 s (curl with --max-time 600): the server goes on resending, at most every
    6 s (curl's timeout option), until retries x timeout_max (24 s) have passed."""
    data = payload(512 * 40)
    losses = {"block 20": 0}

    def fate(direction, datagram):
        if direction == "down" and datagram[1] == Opcode.DATA and datagram[3] == 20 and \
                losses["block 20"] < 7:
            losses["block 20"] += 1
            return []
        return [0.0005]

    client = Client(timeout=12.0)
    session, _sent, now = pump(data, request(timeout=6), client, fate, prepared=prepared)
    assert session.result == "ok", session.detail
    assert bytes(client.received) == data and losses["block 20"] == 7
    assert 6.35 < now < 12  # the 8th send of block 20 did it, before curl's own re-ACK


def test_client_timeout_option_does_not_slow_loss_recovery():
    """curl asks for timeout 6; a lost ACK must cost about an RTT-based timeout, not 6 s."""
    data = payload(512 * 40)
    lost = set()

    def fate(direction, datagram):
        if direction == "up" and len(lost) < 3 and datagram[3] in (10, 20, 30) and \
                datagram[3] not in lost:
            lost.add(datagram[3])
            return []
        return [0.001]

    session, _sent, now = pump(data, request(timeout=6), Client(timeout=1000), fate)
    assert session.result == "ok" and lost == {10, 20, 30} and now < 1.0


# ------------------------------------------------------------------------------- peers
def test_foreign_port_gets_error_5_and_is_not_processed():
    session = ReadSession(PEER, io.BytesIO(payload(2000)), 2000, request(), Limits(), 0.0)
    first = session.datagrams_to_send(0.0)
    assert len(first) == 1
    intruder = ("198.18.0.10", 40001)
    session.receive(codec.encode(Ack(1)), intruder, 0.01)
    out = session.datagrams_to_send(0.01)
    assert out == [(codec.error(codec.ErrorCode.UNKNOWN_TID,
                                "unknown transfer ID: not your transfer"), intruder)]
    assert session.foreign == 1 and not session.finished
    session.receive(codec.encode(Ack(1)), PEER, 0.02)
    assert codec.decode(session.datagrams_to_send(0.02)[0][0]) == Data(2, payload(2000)[512:1024])


def test_client_error_and_option_refusal_end_the_transfer():
    session = ReadSession(PEER, io.BytesIO(b"x" * 10), 10, request(blksize=1000), Limits(), 0)
    session.receive(codec.encode(codec.Error(8, "no")), PEER, 0.1)
    assert session.finished and session.result == "options_refused"
    # the size asked and the OACK answered with an ERROR: a size probe (OVMF), not a failure
    session = ReadSession(PEER, io.BytesIO(b"x" * 10), 10,
                          request(tsize=0, blksize=1468, windowsize=4), Limits(), 0)
    session.receive(codec.encode(codec.Error(8, "User aborted the transfer")), PEER, 0.1)
    assert session.result == "tsize_probe" and "User aborted" in session.detail
    # the same ERROR later in the transfer is the client's error
    session = ReadSession(PEER, io.BytesIO(b"x" * 1000), 1000, request(tsize=0), Limits(), 0)
    session.receive(codec.encode(Ack(0)), PEER, 0.1)
    session.receive(codec.encode(codec.Error(8, "stop")), PEER, 0.2)
    assert session.result == "options_refused"
    session = ReadSession(PEER, io.BytesIO(b"x" * 10), 10, request(), Limits(), 0)
    session.receive(codec.encode(codec.Error(0, "user abort")), PEER, 0.1)
    assert session.result == "client_error" and "user abort" in session.detail


def test_malformed_in_session_is_counted_and_ignored_3_byte_ack():
    session = ReadSession(PEER, io.BytesIO(b"x" * 600), 600, request(), Limits(), 0)
    session.datagrams_to_send(0)
    session.receive(b"\x00\x04\x00", PEER, 0.1)
    assert session.malformed == 1 and not session.finished
    assert session.datagrams_to_send(0.1) == []


def test_data_from_client_is_illegal():
    session = ReadSession(PEER, io.BytesIO(b"x" * 600), 600, request(), Limits(), 0)
    session.datagrams_to_send(0)
    session.receive(codec.encode(Data(1, b"zz")), PEER, 0.1)
    assert session.result == "illegal"
    assert codec.decode(session.datagrams_to_send(0.1)[0][0]).code == 4


def test_prepared_reply_needs_a_whole_window_in_flight_and_stops_at_the_last_block():
    data = payload(1200)
    session = ReadSession(PEER, io.BytesIO(data), len(data), request(tsize=0), Limits(), 0)
    session.datagrams_to_send(0)
    assert session.prepared_reply() is None          # the OACK is not acknowledged yet
    session.receive(codec.encode(Ack(0)), PEER, 0.01)
    assert session.datagrams_to_send(0.01)[0][0] == codec.encode(Data(1, data[:512]))
    ack, reply = session.prepared_reply()
    assert ack == codec.encode(Ack(1)) and reply == [codec.encode(Data(2, data[512:1024]))]
    # a different datagram (a duplicate ACK 0) takes the ordinary path and sends nothing
    session.receive(codec.encode(Ack(0)), PEER, 0.02)
    assert session.datagrams_to_send(0.02) == []
    session.prepared_reply_sent(0.03)
    assert session.datagrams_to_send(0.03) == []      # the transport sent block 2 itself
    ack, reply = session.prepared_reply()
    assert reply == [codec.encode(Data(3, data[1024:]))]
    # the ordinary path uses the block read ahead: nothing skipped, nothing read twice
    session.receive(codec.encode(Ack(2)), PEER, 0.04)
    assert session.datagrams_to_send(0.04)[0][0] == reply[0]
    assert session.prepared_reply() is None          # block 3 is the last one
    session.receive(codec.encode(Ack(3)), PEER, 0.05)
    assert session.result == "ok" and session.bytes_sent == 1200


def test_prepared_window_after_a_gap_keeps_the_blocks_read_ahead_in_order():
    data = payload(512 * 10 + 5)
    session = ReadSession(PEER, io.BytesIO(data), len(data), request(windowsize=4), Limits(), 0)
    session.datagrams_to_send(0)
    session.receive(codec.encode(Ack(0)), PEER, 0.01)
    assert len(session.datagrams_to_send(0.01)) == 4  # blocks 1-4 in flight
    ack, window = session.prepared_reply()
    assert ack == codec.encode(Ack(4))
    assert [codec.decode(d).block for d in window] == [5, 6, 7, 8]
    # the client saw a gap after block 2: resend 3-4, then 5-6 from the blocks read ahead
    session.receive(codec.encode(Ack(2)), PEER, 0.02)
    sent = [codec.decode(d) for d, _ in session.datagrams_to_send(0.02)]
    assert [m.block for m in sent] == [3, 4, 5, 6]
    assert [m.data for m in sent[2:]] == [data[2048:2560], data[2560:3072]]
    ack, window = session.prepared_reply()            # 7, 8 read ahead, 9, 10 topped up
    assert ack == codec.encode(Ack(6))
    assert [codec.decode(d).data for d in window] == [data[i * 512:(i + 1) * 512]
                                                      for i in range(6, 10)]
    session.prepared_reply_sent(0.03)
    assert session.datagrams_to_send(0.03) == []
    ack, window = session.prepared_reply()
    assert [codec.decode(d).data for d in window] == [data[5120:]]   # the last block
    session.prepared_reply_sent(0.04)
    session.receive(codec.encode(Ack(11)), PEER, 0.05)
    assert session.result == "ok" and session.bytes_sent == len(data)


