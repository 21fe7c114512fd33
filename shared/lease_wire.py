"""The lease store's own Redis wire (shared/leases.py, LeaseStore): commands packed in the Redis
protocol, the lease function's FCALL packed from a prefix made once, and the replies of the
store's connections read by our own asyncio protocol with one deadline per call. redis-py makes
and authenticates the connections; this module only speaks on them (docs/benchmarks.md, DHCP,
sixth and eighth rounds)."""

from __future__ import annotations

import asyncio

from shared.lease_script import FUNCTION

try:  # hiredis (a dependency) packs a command in C
    from hiredis import pack_command as pack
except ImportError:  # pragma: no cover - hiredis is in pyproject's dependencies
    def pack(command) -> bytes:  # type: ignore[misc]
        """A command in the Redis protocol (RESP): its arguments as UTF-8 bulk strings."""
        out = [b"*%d\r\n" % len(command)]
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)


class Deadline:
    """``with Deadline(seconds):`` around awaits in a task: past the deadline the task is
    cancelled and the block raises TimeoutError (an OSError: redis_errors makes it
    InventoryUnavailable). asyncio.timeout's job, with one loop timer and no Python-level
    rescheduling per use: this is once per lease batch."""

    __slots__ = ("seconds", "task", "timer", "expired")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False

    def __enter__(self) -> None:
        self.task = task = asyncio.current_task()
        self.timer = (asyncio.get_running_loop().call_later(self.seconds, self._expire)
                      if self.seconds and task is not None else None)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def __exit__(self, kind, exc, tb) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if (self.expired and kind is asyncio.CancelledError
                and self.task.uncancel() == 0):  # ours, not a cancellation from outside
            raise TimeoutError(f"no reply from Redis within {self.seconds} s") from None


class Replies(asyncio.Protocol):
    """The replies of a lease store connection, read by our own protocol: redis-py connects
    (Sentinel's master lookup, TLS, AUTH, HELLO, SELECT), then its transport is given to this
    protocol, which feeds the connection's own hiredis reader and wakes the one waiting call
    when all the replies it wants are in: one future per call, where redis-py's stream reader
    and parser add coroutine layers and a future per read (docs/benchmarks.md, sixth round).
    The connection is the lease store's alone (make_connection); it is closed by disconnect()
    as before."""

    def __init__(self, reader, transport) -> None:
        self.reader = reader
        self.stream = transport.get_protocol()  # redis-py's, told when the connection ends
        # what the reader answers while no whole reply is in (redis-py sets its own marker):
        # asked now, after the handshake, when the reader holds nothing
        self.incomplete = reader.gets()
        self.transport = transport
        self.replies: list = []
        self.wanted = 0
        self.waiter: asyncio.Future | None = None
        self.lost: BaseException | None = None

    @classmethod
    def attach(cls, conn) -> Replies:
        transport = conn._writer.transport
        replies = cls(conn._parser._reader, transport)
        transport.set_protocol(replies)
        return replies

    def data_received(self, data: bytes) -> None:
        reader, replies, incomplete = self.reader, self.replies, self.incomplete
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not incomplete:
                replies.append(reply)
                reply = reader.gets()
        except Exception as exc:  # noqa: BLE001 - not the Redis protocol: the call fails
            self.lost = exc
        if len(replies) >= self.wanted or self.lost is not None:
            self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes: connection_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("Redis closed the connection")
        self._wake()
        self.stream.connection_lost(exc)  # its writer's wait_closed() (disconnect) returns

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, count: int) -> list:
        self.wanted = count
        replies = self.replies
        while len(replies) < count:
            if self.lost is not None:
                raise ConnectionError(f"Redis connection lost: {self.lost!r}")
            self.waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        got = replies[:count]
        del replies[:count]
        return got


# FCALL <the lease function> 0 <batch>, all but the batch in the protocol's bytes once: the
# batch call packed without hiredis's pack_command (~6,000 instructions a call, ~1,000 so)
_FCALL_HEAD = pack(("FCALL", FUNCTION, "0", "")).rpartition(b"$0\r\n")[0]


def fcall(packed: str) -> bytes:
    """``pack(("FCALL", FUNCTION, 0, packed))`` (tests/dhcp/test_lease_function.py)."""
    data = packed.encode()
    return b"%s$%d\r\n%s\r\n" % (_FCALL_HEAD, len(data), data)
