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

import hmac
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from services.http import metrics as m
from services.http.render import INSTALL_FILES, template_for
from services.http.server import HOST_HEADER
from shared.store import InventoryUnavailable

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


class FastAnswers:
    """The fast path's answers for a BootService (its render cache, inventory and access)."""

    def __init__(self, boot) -> None:
        self.boot = boot
        self._date_second = 0
        self._date = ""

    def __call__(self, data: bytes, transport) -> bytes | None:
        """The whole response for a render-cache hit that needs no I/O, else None (aiohttp then
        handles the request the normal way). ``data`` is one complete GET request head."""
        start = time.perf_counter()
        try:
            head = data[:-4].decode("latin-1")
            request_line, _, header_text = head.partition("\r\n")
            _method, target, version = request_line.split(" ")
        except (UnicodeDecodeError, ValueError):
            return None
        if version != "HTTP/1.1" or "%" in target or "+" in target:
            return None
        host_header = None
        for line in header_text.split("\r\n"):
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "host":
                host_header = value.strip()
            elif name == "connection" and "close" in value.lower():
                return None
        if self.boot.cfg.public_url:
            base = self.boot.cfg.public_url.rstrip("/")
        elif host_header and HOST_HEADER.fullmatch(host_header):
            base = f"http://{host_header}"
        else:
            return None
        path, _, query = target.partition("?")
        try:
            peer = transport.get_extra_info("peername")[0]
            if path.startswith("/boot/"):
                return self._fast_script(path, query, base, transport, peer, start)
            if path.startswith("/install/"):
                return self._fast_install(path, query, base, peer, start)
        except (InventoryUnavailable, web.HTTPException, TypeError, IndexError):
            return None
        return None

    def _fast_script(self, path: str, query: str, base: str, transport, peer: str,
                     start: float) -> bytes | None:
        if path == "/boot/ipxe" and query.startswith("mac=") and "&" not in query:
            mac_text, kind = query[4:], "ipxe"
        elif path.endswith(".ipxe") and path.count("/") == 2 and not query:
            mac_text, kind = path[6:-5], "ipxe"
        else:
            return None
        mac = self.boot.mac(mac_text)
        san = self.boot.cfg.san_server or transport.get_extra_info("sockname")[0]
        script = self.boot.cache.get(self.boot.stamp(), (kind, mac, base, san))
        if script is None:
            return None
        self.boot.script_event(mac, self.boot.inventory.host(mac), script, kind, peer)
        m.RENDERS_BY[kind, "cached"].inc()
        return self._fast_response("script", script.body, start)

    def _fast_install(self, path: str, query: str, base: str, peer: str,
                      start: float) -> bytes | None:
        parts = path.split("/")
        if len(parts) != 4 or parts[3] not in INSTALL_FILES:
            return None
        mac, filename = self.boot.mac(parts[2]), parts[3]
        host = self.boot.inventory.host(mac)
        if host is None:
            return None
        if query.startswith("token=") and "&" not in query and \
                hmac.compare_digest(self.boot.access.token(mac).encode(),
                                    query[6:].lower().encode("latin-1")):
            how = "token"
        elif host.ip and host.ip == peer:
            how = "reserved"
        else:
            return None  # a lease, a refusal or an error: the normal path decides and records
        body = self.boot.cache.get(self.boot.stamp(), ("install", filename, mac, base))
        if body is None:
            return None
        profile = self.boot.inventory.profile(host.profile) if host.profile else None
        template = template_for(profile, filename) if profile else None
        self.boot.emit_coalesced("http.install", mac, peer, file=filename, template=template,
                            via=how)
        m.RENDERS_BY[INSTALL_FILES[filename][2], "cached"].inc()
        return self._fast_response("install", body, start)

    def _fast_response(self, family: str, body: bytes, start: float) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = formatdate(now, usegmt=True)
        m.REQUESTS_BY[family, "2xx"].inc()
        m.SENT_BY[family].inc(len(body))
        m.DURATION_BY[family].observe(time.perf_counter() - start)
        return (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nDate: {self._date}\r\n"
                f"Server: bootyard\r\n\r\n").encode() + body

