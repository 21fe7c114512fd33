"""The HTTP transport: listening sockets and connections; it moves bytes and decides nothing.

:func:`start_listener` serves an aiohttp application on one address with :class:`Connection`,
aiohttp's connection protocol with these additions:

- **The fast path.** A booting fleet asks for the same few hundred bytes per host over and over,
  and aiohttp spends about 60 µs of Python per request on routing, request and response objects.
  When a connection is idle and a complete, bodiless ``GET`` arrives in one read, the connection
  asks ``fast(target, host_header, peer, sockname, start)`` (:meth:`BootService.fast_answer`)
  first and writes the body it returns as a 200 response. Anything else (a ``None`` answer,
  HEAD, ``Connection: close``, HTTP/1.0, pipelined or split requests) goes to aiohttp unchanged,
  and a connection that ever sends a request body or a partial request leaves the fast path for
  good, so aiohttp's parser never sees a half-consumed stream. This leans on aiohttp's
  ``RequestHandler`` internals (its message queue and flags); :func:`fast_path_supported`
  checks the names at start-up and the fast path is off if they changed.
- **Limits** (docs/security.md): a request head must be complete ``header_timeout`` seconds
  after its first byte, an idle connection is closed after ``idle_timeout`` seconds, at most
  ``max_connections`` connections are open per listener (more are closed at once), a GET or HEAD
  with a body and a body larger than ``max_body`` are refused and the connection closed
  without reading the body. Closed connections are counted in
  ``bootyard_http_connections_closed_total{reason}``, open ones in
  ``bootyard_http_connections``.
- **Bad requests** (a malformed request line or header, not HTTP at all) are one counted,
  rate-limited ``event=bad_request`` line in the service's log format, never aiohttp's
  traceback (:class:`ServerLog`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from services.http import metrics as m
from shared import logs, runtime
from shared.logbudget import LogBudget

log = logs.get_logger("http")
FastAnswer = Callable[[str, "str | None", str, Any, float], "bytes | None"]
_NEEDED = ("_messages", "_request_in_progress", "_close", "_force_close", "_payload_parser",
           "_upgraded", "_next_keepalive_close_time", "_keepalive_timeout", "_keepalive_handle",
           "_process_keepalive", "_loop", "_waiter")
_END = b"\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0  # seconds from a request head's first byte to its end
    idle_timeout: float = 30.0  # seconds a connection may wait for its next request
    max_connections: int = 1000  # open connections per listener
    max_body: int = 1 << 20  # bytes of a request body


def fast_path_supported() -> bool:
    """Whether this aiohttp's RequestHandler has what the fast path relies on."""
    probe = RequestHandler.__init__.__code__.co_names + tuple(dir(RequestHandler))
    return all(name in probe for name in _NEEDED)


class _Dates:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.text = ""

    def now(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.text = formatdate(now, usegmt=True)
        return self.text


_DATES = _Dates()


def ok_response(body: bytes) -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nDate: {_DATES.now()}\r\n"
            f"Server: bootyard\r\n\r\n").encode() + body


def parse_head(data: bytes) -> tuple[str, str | None] | None:
    """(target, Host header) of one complete ``GET`` head the fast path may answer, or None."""
    try:
        head = data[:-4].decode("latin-1")
        request_line, _, header_text = head.partition("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if method != "GET" or version != "HTTP/1.1":
        return None
    host_header = None
    for line in header_text.split("\r\n"):
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "host":
            host_header = value.strip()
        elif (name == "connection" and "close" in value.lower()) or \
                name in ("content-length", "transfer-encoding"):
            return None
    return target, host_header


class Connection(RequestHandler):
    """aiohttp's connection protocol, with the fast path, the limits and the counts."""

    def __init__(self, manager, *, fast: FastAnswer | None, limits: Limits, listener: _Server,
                 **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.idle_timeout, **kwargs)
        self._fast = fast
        self._limits = limits
        self._listener = listener
        self._open = False  # counted among the listener's open connections
        self._head_started = False  # some bytes of a request head have arrived, not its end

    # -- connections ---------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        listener = self._listener
        if listener.open >= self._limits.max_connections:
            m.CLOSED_BY["max_connections"].inc()
            self._fast = None
            transport.abort()  # counted, never served: the cap holds
            return
        listener.open += 1
        self._open = True
        m.CONNECTIONS.inc()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._open:
            self._open = False
            self._listener.open -= 1
            m.CONNECTIONS.dec()
        super().connection_lost(exc)

    # -- bytes in ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        fast = self._fast
        if fast is not None:
            whole = data[-4:] == _END and data.count(_END) == 1
            if whole and data[:5] == b"GET /" and not self._messages \
                    and not self._request_in_progress and not self._close \
                    and not self._force_close and self._payload_parser is None \
                    and not self._upgraded and not self._head_started:
                start = time.perf_counter()
                parsed = parse_head(data)
                if parsed is not None:
                    transport = self.transport
                    try:
                        answer = fast(parsed[0], parsed[1],
                                      transport.get_extra_info("peername")[0],
                                      transport.get_extra_info("sockname"), start)
                    except Exception:  # noqa: BLE001 - aiohttp's path then answers (and logs)
                        answer = None
                    if answer is not None:
                        transport.write(ok_response(answer))
                        self._keep_alive_clock()
                        return
            if not whole or b"content-length:" in data.lower() or \
                    b"transfer-encoding:" in data.lower():
                self._fast = None  # aiohttp's parser may now hold part of a message
        idle = not self._messages and not self._request_in_progress
        super().data_received(data)
        if self._messages or self._request_in_progress:
            self._head_started = False  # a whole head arrived
        elif idle and data and not self._head_started and not self._force_close:
            self._head_started = True  # a head has begun: it gets header_timeout to end
            self._head_deadline(self._loop.time() + self._limits.header_timeout)

    def _head_deadline(self, when: float) -> None:
        if when < self._next_keepalive_close_time or self._keepalive_handle is None:
            self._next_keepalive_close_time = when
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
            self._keepalive_handle = self._loop.call_at(when, self._process_keepalive)

    def _keep_alive_clock(self) -> None:
        loop = self._loop
        close_time = loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = loop.call_at(close_time, self._process_keepalive)

    def _process_keepalive(self) -> None:
        open_before = not self._force_close
        super()._process_keepalive()
        if open_before and self._force_close:
            m.CLOSED_BY["header_timeout" if self._head_started else "idle_timeout"].inc()


class _Server:
    """aiohttp's Server, making :class:`Connection` connections (everything else delegated)."""

    def __init__(self, server: web.Server, fast: FastAnswer | None, limits: Limits) -> None:
        self._server = server
        self._fast = fast
        self._limits = limits
        self.open = 0  # connections open now

    def __call__(self) -> RequestHandler:
        return Connection(self._server, loop=self._server._loop, fast=self._fast,
                          limits=self._limits, listener=self, **self._server._kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, fast: FastAnswer | None, limits: Limits,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._fast_answer = fast
        self._limits = limits

    async def _make_server(self):
        return _Server(await super()._make_server(), self._fast_answer, self._limits)


def body_limits(max_body: int):
    """Middleware: a GET/HEAD with a body is 400, a body over ``max_body`` bytes 413; either way
    the body is not read and the connection is closed after the answer (``lingering_time=0``)."""

    @web.middleware
    async def limit(request: web.Request, handler):
        if request.method in ("GET", "HEAD") and request.body_exists:
            m.CLOSED_BY["body_refused"].inc()
            response = web.Response(status=400, text="bootyard: a GET or HEAD request has no "
                                                     "body\n")
            response.force_close()
            return response
        if request.content_length is not None and request.content_length > max_body:
            m.CLOSED_BY["body_refused"].inc()
            response = web.Response(status=413, text=f"bootyard: request bodies are at most "
                                                     f"{max_body} bytes\n")
            response.force_close()
            return response
        return await handler(request)

    return limit


async def start_listener(app: web.Application, host: str, port: int, setting: str, *,
                         limits: Limits, fast: FastAnswer | None = None,
                         reuse_port: bool = False) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (chosen by ``setting``); a port that cannot be bound
    raises :class:`runtime.PortUnavailable`. Stop it with ``await runner.cleanup()``."""
    app.middlewares.insert(0, body_limits(limits.max_body))
    runner = _Runner(app, fast, limits, access_log=None, handle_signals=False,
                     shutdown_timeout=2.0, lingering_time=0, logger=ServerLog())
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
    try:
        with runtime.listening(setting, host, port):
            await site.start()
    except runtime.PortUnavailable:
        await runner.cleanup()
        raise
    return runner


class ServerLog:
    """Stands in for aiohttp's server logger (``aiohttp.server``): a bad request is a counted,
    rate-limited ``event=bad_request`` warning and anything else one ``event=server_error``
    line, both in the service's log format, with no multi-line traceback."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("bootyard.http")
        # the one budget for lines any client can cause (shared/logbudget.py, as TFTP's refusals)
        self._budget = LogBudget(burst=10, interval=60.0)
        self._summary_timer: asyncio.TimerHandle | None = None

    def _allow(self, source: str, reason: str) -> bool:
        """Whether to write this line; the ones held back are summed up in one
        ``event=bad_request_summary`` line when the budget's interval ends."""
        now = time.monotonic()
        if self._budget.allow(source, reason, now):
            return True
        if self._summary_timer is None and self._budget.summary_due is not None:
            self._summary_timer = asyncio.get_running_loop().call_later(
                max(0.0, self._budget.summary_due - now), self._summary)
        return False

    def _summary(self) -> None:
        self._summary_timer = None
        fields = self._budget.summary(time.monotonic())
        if fields:
            self._logger.warning("bad_request_summary", extra={"fields": fields})

    def debug(self, msg: str, *args: Any, exc_info: Any = None, **_kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._bad_request(msg, args, exc_info)

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **_kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._bad_request(msg, args, exc_info)
            return
        if not self._allow("server", "server_error"):
            return
        fields: dict[str, Any] = {"reason": (msg % args) if args else msg}
        # a bug: the traceback stays, as one quoted exc= field of the line
        self._logger.error("server_error", extra={"fields": fields},
                           exc_info=exc_info if isinstance(exc_info, BaseException) else None)

    error = exception
    warning = exception

    def _bad_request(self, msg: str, args: tuple, exc: HttpProcessingError) -> None:
        if isinstance(exc, LineTooLong):
            reason = "too_long"
        elif isinstance(exc, BadHttpMethod):
            reason = "not_http"
        else:
            reason = "malformed"
        m.BAD_REQUESTS_BY[reason].inc()
        ip = args[0] if args else None
        if not self._allow(str(ip), reason):
            return
        detail = "".join(c if c.isprintable() else "?" for c in str(exc.message))[:200]
        fields = {"ip": ip, "reason": reason, "status": exc.code or 400, "detail": detail}
        self._logger.warning("bad_request", extra={"fields": fields})

