"""The admin API: JSON over HTTP for the inventory, leases and events (docs/api.md).

The same operations and validation as the ``bootyard`` CLI (both call :mod:`shared.inventory` and
:class:`~shared.store.InventoryStore`). Every request needs ``Authorization: Bearer <token>``
when ``http.admin_token`` is set; the service refuses to start without a token unless the API
listens on loopback only. With or without a token, a request is refused (docs/security.md)

- with a Host header that is not ``localhost``, an IP address or one of ``http.admin_hostnames``
  (a page on a rebound DNS name reaching the loopback API), **421**;
- with an ``Origin`` header other than the API's own (a web page's cross-origin request), **403**;
- with a body that is not declared as JSON (or YAML for ``/import``): a browser sends a
  cross-origin "simple" request only as ``text/plain`` or a form, **415**.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import time
from typing import Any

from aiohttp import web

from services.http import board, console as console_mod, metrics as m
from services.http.access import host_token
from services.http.accounting import Accounting, Record
from services.http.policy import install_urls
from shared import inventory as admin, logs
from shared.addresses import AddressError, normalise_ipv4, normalise_mac
from shared.events import EventLog
from shared.leases import LeaseRecord
from shared.schema import KIND_BY_PLURAL, KINDS
from shared.store import (
    AlreadyExists,
    InventoryError,
    InventoryStore,
    InventoryUnavailable,
    NotFound,
    RecordInvalid,
)

log = logs.get_logger("http.api")
PREFIX = "/api/v1"
SSE_KEEPALIVE = 15.0
JSON_TYPES = ("application/json",)
IMPORT_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
                "application/json")


def _host_name(value: str) -> str | None:
    """The host part of a Host header (``name``, ``name:port``, ``[v6]:port``), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else None
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _lease_json(lease: LeaseRecord) -> dict[str, Any]:
    return {"mac": lease.mac, "state": lease.state, "expires": lease.expires,
            "subnet": lease.subnet, "hostname": lease.hostname}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=2) + "\n")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


class AdminApi:
    def __init__(self, store: InventoryStore, events: EventLog, token: str, token_secret: str,
                 public_url: str = "", *, hostnames: tuple[str, ...] = (),
                 accounting: Accounting | None = None, max_body: int = 8 << 20, leases,
                 board=None, console=None) -> None:
        self.store = store
        self.board = board  # services.http.board.Board: the hosts' boot states
        self.console = console  # services.http.console.Console: the web console
        self.events = events
        self._leases = leases  # shared.leases.Leases (the handler is self.leases)
        self.token = token
        self.token_secret = token_secret
        self.public_url = public_url.rstrip("/")
        self.hostnames = frozenset(n.strip().lower().rstrip(".") for n in hostnames if n.strip())
        self.accounting = accounting or Accounting()
        self.max_body = max_body

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.account, self.guard, self.auth, self.errors],
                              client_max_size=self.max_body)
        r = app.router
        r.add_get(f"{PREFIX}/leases", self.leases)
        r.add_get(f"{PREFIX}/leases/{{ip}}", self.lease)
        r.add_get(f"{PREFIX}/events", self.event_list)
        r.add_get(f"{PREFIX}/events/stream", self.event_stream)
        r.add_get(f"{PREFIX}/validate", self.validate)
        r.add_get(f"{PREFIX}/export", self.export)
        r.add_post(f"{PREFIX}/import", self.import_)
        r.add_get(f"{PREFIX}/hosts/{{id}}/token", self.host_token)
        if self.board is not None:  # GET hosts/<mac>/state and states (services/http/board.py)
            board.add_routes(r, PREFIX, self.board)
        if self.console is not None:  # /console/... (services/http/console.py)
            self.console.add_routes(r)
        for plural in KIND_BY_PLURAL:
            r.add_get(f"{PREFIX}/{plural}", self.list_objects)
            r.add_post(f"{PREFIX}/{plural}", self.create)
            r.add_get(f"{PREFIX}/{plural}/{{id}}", self.show)
            r.add_put(f"{PREFIX}/{plural}/{{id}}", self.replace)
            r.add_patch(f"{PREFIX}/{plural}/{{id}}", self.update)
            r.add_delete(f"{PREFIX}/{plural}/{{id}}", self.delete)
        return app

    # -- middlewares ---------------------------------------------------------------------------
    @web.middleware
    async def account(self, request: web.Request, handler):
        start = time.perf_counter()
        status, sent = 500, 0
        try:
            response = await handler(request)
            status = response.status
            sent = response.content_length or response.body_length or 0
            return response
        except web.HTTPException as exc:
            status, sent = exc.status, len(exc.body or b"")
            raise
        finally:
            self.accounting.record(Record("api", status, sent, time.perf_counter() - start,
                                          request.method, request.path, request.remote))

    def _refuse(self, request: web.Request, status: int, reason: str, message: str):
        m.DENIED.labels(reason).inc()
        log.warning("admin_refused", ip=request.remote, path=request.path, reason=reason,
                    host=request.headers.get("Host"), origin=request.headers.get("Origin"),
                    content_type=request.headers.get("Content-Type"))
        return _error(status, message)

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Host, Origin and content type: what keeps web pages out (with or without a token)."""
        host = _host_name(request.headers.get("Host", ""))
        if host is None or not (host == "localhost" or host.endswith(".localhost") or
                                _is_address(host) or host in self.hostnames):
            return self._refuse(request, 421, "admin_host",
                                f"the admin API is not served as {request.headers.get('Host')!r}"
                                ": use localhost or an IP address, or add the name to "
                                "http.admin_hostnames")
        origin = request.headers.get("Origin")
        if origin is not None:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or rest.lower() != \
                    request.headers.get("Host", "").strip().lower():
                return self._refuse(request, 403, "admin_origin",
                                    f"cross-origin request from {origin!r} refused: the admin "
                                    "API does not serve web pages of other sites")
        if request.method in ("POST", "PUT", "PATCH"):
            allowed = IMPORT_TYPES if request.path == f"{PREFIX}/import" else JSON_TYPES
            if self.console is not None and request.path in console_mod.FORM_PATHS:
                allowed = console_mod.FORM_TYPES
            if request.content_type not in allowed:
                return self._refuse(request, 415, "admin_content_type",
                                    f"Content-Type {request.content_type!r} refused: send "
                                    f"{' or '.join(allowed[:2])}")
        return await handler(request)

    @web.middleware
    async def auth(self, request: web.Request, handler):
        if self.token:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    value.strip().encode(), self.token.encode()):
                # the web console: its login page, or a request with its session cookie
                decision = self.console.check(request) if self.console is not None else None
                if decision is True:
                    return await handler(request)
                if decision is not None:
                    return decision
                m.DENIED.labels("admin_token").inc()
                log.warning("admin_denied", ip=request.remote, path=request.path)
                return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="bootyard"'})
        return await handler(request)

    @web.middleware
    async def errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except InventoryUnavailable as exc:
            m.INVENTORY_ERRORS.labels("api").inc()
            return _error(503, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except AlreadyExists as exc:
            return _error(409, str(exc))
        except RecordInvalid as exc:
            return _error(422, str(exc), problems=[
                {"key": p.key, "field": p.field, "value": p.value, "reason": p.reason,
                 "severity": p.severity} for p in exc.problems])
        except admin.ImportRefused as exc:
            return _error(422, str(exc), problems=[str(p) for p in exc.problems])
        except (InventoryError, AddressError) as exc:
            return _error(400, str(exc))

    # -- inventory objects ---------------------------------------------------------------------
    @staticmethod
    def _kind(request: web.Request):
        return KIND_BY_PLURAL[request.path[len(PREFIX) + 1:].split("/", 1)[0]]

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}\n',
                                     content_type="application/json") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}\n',
                                     content_type="application/json")
        return body

    async def list_objects(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        objects = await admin.list_objects(self.store, kind, request.query.get("tag"))
        from shared.schema import from_hash
        return _json({ident: from_hash(kind, raw) for ident, raw in objects.items()})

    async def show(self, request: web.Request) -> web.Response:
        return _json(await admin.show(self.store, self._kind(request), request.match_info["id"]))

    async def create(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        body = await self._body(request)
        ident = body.pop("id", None) or body.pop(kind.id_field, None)
        if not ident:
            return _error(400, f"give the {kind.name}'s {kind.id_field} as \"id\"")
        await self.store.write(kind, str(ident), admin.changes_from_fields(kind, body), mode="add")
        log.info("api_write", kind=kind.name, id=str(ident), mode="add", ip=request.remote)
        return _json(await admin.show(self.store, kind, str(ident)), 201)

    async def _write(self, request: web.Request, mode: str) -> web.Response:
        kind = self._kind(request)
        ident = request.match_info["id"]
        body = await self._body(request)
        body.pop("id", None)
        await self.store.write(kind, ident, admin.changes_from_fields(kind, body), mode=mode)
        log.info("api_write", kind=kind.name, id=ident, mode=mode, ip=request.remote)
        return _json(await admin.show(self.store, kind, ident))

    async def replace(self, request: web.Request) -> web.Response:
        return await self._write(request, "replace")

    async def update(self, request: web.Request) -> web.Response:
        return await self._write(request, "set")

    async def delete(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        await self.store.delete(kind, request.match_info["id"])
        log.info("api_write", kind=kind.name, id=request.match_info["id"], mode="delete",
                 ip=request.remote)
        return web.Response(status=204)

    async def host_token(self, request: web.Request) -> web.Response:
        mac = normalise_mac(request.match_info["id"])
        await self.store.get(KINDS["host"], mac)  # NotFound for an unknown host
        token = host_token(self.token_secret, mac)
        base = self.public_url or "http://SERVER"
        return _json({"mac": mac, "token": token, "urls": install_urls(base, mac, token)})

    # -- whole inventory -----------------------------------------------------------------------
    async def validate(self, _request: web.Request) -> web.Response:
        problems = await admin.validate(self.store)
        return _json({"valid": not any(p.severity == "error" for p in problems),
                      "problems": [{"key": p.key, "field": p.field, "value": p.value,
                                    "reason": p.reason, "severity": p.severity}
                                   for p in problems]})

    async def export(self, _request: web.Request) -> web.Response:
        return web.Response(text=await admin.export_yaml(self.store),
                            content_type="application/yaml")

    async def import_(self, request: web.Request) -> web.Response:
        replace = request.query.get("replace", "").lower() in ("1", "yes", "true")
        counts = await admin.import_yaml(self.store, await request.text(), replace=replace,
                                         source="request body")
        log.info("api_import", ip=request.remote, replace=replace, **counts)
        return _json(counts)

    # -- leases --------------------------------------------------------------------------------
    async def leases(self, _request: web.Request) -> web.Response:
        return _json({rec.ip: _lease_json(rec) for rec in await self._leases.all()})

    async def lease(self, request: web.Request) -> web.Response:
        ip = normalise_ipv4(request.match_info["ip"])
        lease = await self._leases.lease(ip)
        if lease is None:
            return _error(404, f"no lease for {ip}")
        return _json(_lease_json(lease))

    # -- events --------------------------------------------------------------------------------
    def _event_mac(self, request: web.Request) -> str | None:
        host = request.query.get("host")
        return normalise_mac(host) if host else None

    async def event_list(self, request: web.Request) -> web.Response:
        try:
            count = max(1, min(int(request.query.get("count", "200")), 10_000))
        except ValueError:
            return _error(400, "count must be a whole number")
        mac = self._event_mac(request)
        events = await self.events.read(mac, count=count)
        body = [_event_json(e) for e in events]
        if mac and self.board is not None:  # each event's boot attempt (docs/console.md)
            attempts = self.board.attempt_ids(mac, events)
            for item in body:
                item["attempt"] = attempts.get(item["id"])
        return _json(body)

    async def event_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``event: <kind>`` message per event, JSON data, the stream
        entry id as ``id`` (a reconnecting client's ``Last-Event-ID`` resumes after it)."""
        mac = self._event_mac(request)
        last_id = request.headers.get("Last-Event-ID") or "$"
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(b": bootyard event stream\n\n")
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)

        async def pump() -> None:
            async for event in self.events.follow(mac, last_id=last_id):
                await queue.put(event)

        reader = asyncio.create_task(pump())
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE)
                except TimeoutError:
                    if reader.done():  # Redis went away: end the stream, the client reconnects
                        break
                    await response.write(b": keepalive\n\n")
                    continue
                data = json.dumps(_event_json(event))
                await response.write(f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
                                     .encode())
        except (ConnectionError, InventoryUnavailable):
            pass
        finally:
            reader.cancel()
        return response


def _event_json(event) -> dict[str, Any]:
    return {"id": event.id, "ts": event.ts, "service": event.service, "kind": event.kind,
            "mac": event.mac, "fields": event.fields}
