"""A fast path for the hottest requests: per-host scripts and install files already rendered.

A booting fleet asks for the same few hundred bytes per host over and over; aiohttp spends about
60 µs of Python per request on routing, request and response objects. :class:`FastHandler` is
aiohttp's own connection protocol with one addition: when a connection is idle and a complete,
bodiless ``GET`` arrives in one read, it asks :meth:`BootService.fast_answer` first. That answers
only what needs no I/O: a render-cache hit for a script, or for an install file whose requester
is allowed by token or reserved address. Anything else (cache misses, leases, errors, files, HEAD,
``Connection: close``, HTTP/1.0, pipelined or split requests) goes to aiohttp unchanged, and a
connection that ever sends a request body or a partial request leaves the fast path for good, so
aiohttp's parser never sees a half-consumed stream.

This leans on aiohttp's ``RequestHandler`` internals (its message queue and flags); the names are
checked when the service starts (:func:`supported`) and the fast path is simply off if they
changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

FastAnswer = Callable[[bytes, Any], "bytes | None"]
_NEEDED = ("_messages", "_request_in_progress", "_close", "_force_close", "_payload_parser",
           "_upgraded", "_next_keepalive_close_time", "_keepalive_timeout", "_keepalive_handle",
           "_process_keepalive", "_loop")
_END = b"\r\n\r\n"


class FastHandler(RequestHandler):
    def __init__(self, manager, *, fast: FastAnswer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._fast: FastAnswer | None = fast

    def data_received(self, data: bytes) -> None:
        fast = self._fast
        if fast is not None:
            whole = data[-4:] == _END and data.count(_END) == 1
            if whole and data[:5] == b"GET /" and not self._messages \
                    and not self._request_in_progress and not self._close \
                    and not self._force_close and self._payload_parser is None \
                    and not self._upgraded:
                answer = fast(data, self.transport)
                if answer is not None:
                    self.transport.write(answer)
                    self._keep_alive_clock()
                    return
            if not whole or b"content-length:" in data.lower() or \
                    b"transfer-encoding:" in data.lower():
                self._fast = None  # aiohttp's parser may now hold part of a message
        super().data_received(data)

    def _keep_alive_clock(self) -> None:
        loop = self._loop
        close_time = loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = loop.call_at(close_time, self._process_keepalive)


def supported() -> bool:
    """Whether this aiohttp's RequestHandler has what the fast path relies on."""
    probe = RequestHandler.__init__.__code__.co_names + tuple(dir(RequestHandler))
    return all(name in probe for name in _NEEDED)


class _FastServer:
    """aiohttp's Server, making FastHandler connections (everything else delegated)."""

    def __init__(self, server: web.Server, fast: FastAnswer) -> None:
        self._server = server
        self._fast = fast

    def __call__(self) -> RequestHandler:
        return FastHandler(self._server, loop=self._server._loop, fast=self._fast,
                           **self._server._kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class FastAppRunner(web.AppRunner):
    """An AppRunner whose connections try ``fast`` before aiohttp's request handling."""

    def __init__(self, app: web.Application, fast: FastAnswer | None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._fast_answer = fast

    async def _make_server(self):
        server = await super()._make_server()
        if self._fast_answer is None:
            return server
        return _FastServer(server, self._fast_answer)
