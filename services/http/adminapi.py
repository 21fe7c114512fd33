"""The admin API: JSON over HTTP for the inventory, leases and events (docs/api.md).

The same operations and validation as the ``bootyard`` CLI (both call :mod:`shared.inventory`,
:mod:`shared.inventory_view`, :mod:`shared.inventory_file` and
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
import dataclasses
import hmac
import ipaddress
import json
import time
from typing import Any

from aiohttp import web

from services.http import board, console as console_mod, fleetapi, metrics as m
from services.http.access import host_token
from services.http.accounting import Accounting, Record
from services.http.policy import install_urls
from shared import audit, checks, inventory as admin, inventory_file, inventory_view, logs
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
    PreconditionFailed,
    RecordInvalid,
    WrongType,
)

log = logs.get_logger("http.api")
PREFIX = "/api/v1"
SSE_KEEPALIVE = 15.0
# who asks (the token's name) and what they may do (read, admin), set by the auth middleware
WHO = web.RequestKey("who", str)
SCOPE = web.RequestKey("scope", str)
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
                 tokens: dict[str, tuple[str, str]] | None = None,
                 board=None, console=None, power=None) -> None:
        self.store = store
        self.power = power  # shared.powerctl.PowerSection: power actions (services/http/power.py)
        self.board = board  # services.http.board.Board: the hosts' boot states
        self.console = console  # services.http.console.Console: the web console
        self.events = events
        self._leases = leases  # shared.leases.Leases (the handler is self.leases)
        self.token = token
        # {token: (name, scope)}: http.admin_token is the token named "admin", scope admin
        self.tokens = dict(tokens or {})
        if token:
            self.tokens[token] = ("admin", "admin")
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
        r.add_delete(f"{PREFIX}/leases/{{ip}}", self.release)
        r.add_get(f"{PREFIX}/events", self.event_list)
        r.add_get(f"{PREFIX}/events/stream", self.event_stream)
        r.add_get(f"{PREFIX}/validate", self.validate)
        r.add_get(f"{PREFIX}/export", self.export)
        r.add_post(f"{PREFIX}/import", self.import_)
        r.add_get(f"{PREFIX}/hosts/{{id}}/token", self.host_token)
        fleetapi.add_routes(r, PREFIX, self)
        r.add_get(f"{PREFIX}/history", self.history)
        r.add_get(f"{PREFIX}/openapi.json", self.openapi)
        r.add_post(f"{PREFIX}/discovered/{{id}}/adopt", self.adopt)  # docs/discovery.md
        r.add_get(f"{PREFIX}/overview", self.overview)  # mirrors and exports (overview.py)
        if self.board is not None:  # GET hosts/<mac>/state and states (services/http/board.py)
            board.add_routes(r, PREFIX, self.board)
        if self.console is not None:  # /console/... (services/http/console.py)
            self.console.add_routes(r)
        from services.http.power import PowerApi  # hosts/<mac>/power, /power
        PowerApi(self.store, self.events, self.power, self._who).add_routes(r, PREFIX)
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
        """The bearer token names who asks (the audit trail's "who") and what they may do:
        ``read`` tokens only read, and never a host's install token."""
        request[WHO], request[SCOPE] = "admin", "admin"  # no token set: loopback only
        if self.tokens:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            found = None
            for token, owner in self.tokens.items():  # every one compared: no early exit
                if hmac.compare_digest(value.strip().encode(), token.encode()):
                    found = owner
            if scheme.lower() != "bearer" or found is None:
                # the web console: its login page, or a request with its session cookie
                decision = self.console.check(request) if self.console is not None else None
                if decision is True:
                    request[WHO] = "console"
                    return await handler(request)
                if decision is not None:
                    return decision
                m.DENIED.labels("admin_token").inc()
                log.warning("admin_denied", ip=request.remote, path=request.path)
                return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="bootyard"'})
            request[WHO], request[SCOPE] = found
            if found[1] != "admin" and (request.method not in ("GET", "HEAD") or
                                        request.path.endswith("/token")):
                m.DENIED.labels("admin_scope").inc()
                log.warning("admin_denied", ip=request.remote, path=request.path,
                            token=found[0], reason="read-only token")
                return _error(403, f"token {found[0]!r} is read-only: it may not "
                                   f"{request.method} {request.path}")
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
        except inventory_file.ImportRefused as exc:
            return _error(422, str(exc), problems=[str(p) for p in exc.problems])
        except WrongType as exc:
            return _error(409, str(exc))
        except PreconditionFailed as exc:
            return _error(412, str(exc))
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
        objects = await inventory_view.list_objects(self.store, kind, request.query.get("tag"),
                                           profile=request.query.get("profile"),
                                           subnet=request.query.get("subnet"),
                                           group=request.query.get("group"))
        # pagination: ?limit=N (up to 10000) from after ?after=<id>; a Link header names the
        # next page while there is one
        try:
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError:
            return _error(400, "limit must be a whole number")
        if limit is not None and not 1 <= limit <= 10_000:
            return _error(400, "limit must be between 1 and 10000")
        after = request.query.get("after")
        ids = [i for i in objects if after is None or i > kind.canonical_id(after)]
        page = ids if limit is None else ids[:limit]
        response = _json(inventory_view.list_json(kind, {i: objects[i] for i in page}))
        if limit is not None and len(ids) > limit:
            query = dict(request.query, after=page[-1], limit=str(limit))
            response.headers["Link"] = (f'<{request.rel_url.with_query(query)}>; rel="next"')
        return response

    async def show(self, request: web.Request) -> web.Response:
        if self._flag(request, "effective") and self._kind(request).name == "host":
            return await fleetapi.effective(self, request)
        shown = await inventory_view.show(self.store, self._kind(request), request.match_info["id"])
        response = _json(shown)
        response.headers["ETag"] = shown["etag"]
        return response

    @staticmethod
    def _who(request: web.Request) -> str:
        """The audit trail's "who" for an API request: the token's name and the client."""
        return f"api:{request.get(WHO, 'admin')}@{request.remote}"

    @staticmethod
    def _flag(request: web.Request, name: str) -> bool:
        return request.query.get(name, "").lower() in ("1", "yes", "true")

    async def _written(self, request: web.Request, kind, ident: str, written,
                       status: int = 200) -> web.Response:
        """The object after a write, with the warnings it was written with (and the notes)."""
        shown = await inventory_view.show(self.store, kind, ident)
        shown["problems"] += [dataclasses.asdict(p) for p in written.warnings
                              if p.key == shown["key"] and dataclasses.asdict(p)
                              not in shown["problems"]]
        shown["warnings"] = [str(p) for p in written.warnings]
        if written.notes:
            shown["notes"] = written.notes
        response = _json(shown, status)
        response.headers["ETag"] = shown["etag"]
        return response

    async def adopt(self, request: web.Request) -> web.Response:
        """A discovered machine becomes a host (shared/discovery.py): body ``{"profile",
        "hostname", "boot_mode", "tags"}``; 201 with the host, or what the checks refused."""
        from shared import discovery

        body = await self._body(request)
        unknown = sorted(set(body) - {"profile", "hostname", "boot_mode", "tags"})
        if unknown or not isinstance(body.get("profile"), str):
            return _error(400, "give {\"profile\": NAME} and optionally hostname, boot_mode, "
                               "tags" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        tags = body.get("tags") or []
        tags = tags.split(",") if isinstance(tags, str) else [str(t) for t in tags]
        mac = KINDS["host"].canonical_id(request.match_info["id"])
        who = self._who(request)
        written = await discovery.adopt(
            self.store, mac, body["profile"], who=who, hostname=body.get("hostname") or None,
            boot_mode=body.get("boot_mode") or None, tags=tuple(t.strip() for t in tags if t),
            force=self._flag(request, "force"))
        self.events.emit("discovery.adopted", mac, by=who, profile=body["profile"],
                         hostname=body.get("hostname") or None)
        log.info("api_adopt", mac=mac, profile=body["profile"], ip=request.remote)
        return await self._written(request, KINDS["host"], mac, written, 201)

    async def create(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        body = await self._body(request)
        ident = body.pop("id", None) or body.pop(kind.id_field, None)
        if not ident:
            return _error(400, f"give the {kind.name}'s {kind.id_field} as \"id\"")
        written = await admin.write_object(self.store, kind, str(ident),
                                           inventory_view.changes_from_fields(kind, body), mode="add",
                                           force=self._flag(request, "force"),
                                           record=audit.recorder(self._who(request)))
        log.info("api_write", kind=kind.name, id=str(ident), mode="add", ip=request.remote)
        return await self._written(request, kind, str(ident), written, 201)

    async def _write(self, request: web.Request, mode: str) -> web.Response:
        kind = self._kind(request)
        ident = request.match_info["id"]
        body = await self._body(request)
        body.pop("id", None)
        written = await admin.write_object(self.store, kind, ident,
                                           inventory_view.changes_from_fields(kind, body), mode=mode,
                                           force=self._flag(request, "force"),
                                           record=audit.recorder(self._who(request)),
                                           if_match=request.headers.get("If-Match"))
        log.info("api_write", kind=kind.name, id=ident, mode=mode, ip=request.remote)
        return await self._written(request, kind, ident, written)

    async def replace(self, request: web.Request) -> web.Response:
        return await self._write(request, "replace")

    async def update(self, request: web.Request) -> web.Response:
        return await self._write(request, "set")

    async def delete(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        await admin.delete_objects(self.store, kind, [request.match_info["id"]],
                                   force=self._flag(request, "force"),
                                   record=audit.recorder(self._who(request)),
                                   if_match=request.headers.get("If-Match"))
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
        problems = await checks.validate(self.store)
        return _json({"valid": not any(p.severity == "error" for p in problems),
                      "problems": [{"key": p.key, "field": p.field, "value": p.value,
                                    "reason": p.reason, "severity": p.severity}
                                   for p in problems]})

    async def export(self, _request: web.Request) -> web.Response:
        return web.Response(text=await inventory_file.export_yaml(self.store),
                            content_type="application/yaml")

    async def import_(self, request: web.Request) -> web.Response:
        replace = self._flag(request, "replace")
        dry_run = self._flag(request, "dry_run")
        try:
            written = await admin.import_yaml(
                self.store, await request.text(), replace=replace,
                yes=self._flag(request, "confirm"), dry_run=dry_run, source="request body",
                record=audit.recorder(self._who(request)))
        except admin.ConfirmationNeeded as exc:
            return _error(409, str(exc).replace("--yes", "confirm=yes").replace(
                "--dry-run", "dry_run=yes"), diff=exc.written.diff())
        diff = written.diff()
        counts = {"written": len(diff["added"]) + len(diff["changed"]),
                  "deleted": len(diff["deleted"]), "diff": diff,
                  "warnings": [str(p) for p in written.warnings], "dry_run": dry_run}
        log.info("api_import", ip=request.remote, replace=replace, dry_run=dry_run,
                 written=counts["written"], deleted=counts["deleted"])
        return _json(counts)

    async def openapi(self, _request: web.Request) -> web.Response:
        from services.http.openapi import document
        return _json(document())

    async def overview(self, _request: web.Request) -> web.Response:
        from services.http import overview
        return _json(await overview.read(self.store, time.time()))

    async def history(self, request: web.Request) -> web.Response:
        try:
            count = max(1, min(int(request.query.get("count", "100")), 10_000))
        except ValueError:
            return _error(400, "count must be a whole number")
        host = request.query.get("host")
        key = KINDS["host"].key(normalise_mac(host)) if host else request.query.get("key")
        entries = await audit.history(self.store.redis, key, count=count)
        return _json([e.json() for e in entries])

    # -- leases --------------------------------------------------------------------------------
    async def leases(self, _request: web.Request) -> web.Response:
        return _json({rec.ip: _lease_json(rec) for rec in await self._leases.all()})

    async def lease(self, request: web.Request) -> web.Response:
        ip = normalise_ipv4(request.match_info["ip"])
        lease = await self._leases.lease(ip)
        if lease is None:
            return _error(404, f"no lease for {ip}")
        return _json(_lease_json(lease))

    async def release(self, request: web.Request) -> web.Response:
        """Release a lease as its client's DHCPRELEASE would (the lease step's script): the
        address goes back to the pool. The operator's way to free an address a machine that is
        gone still holds."""
        import time as time_mod

        from shared.leases import LeaseStore

        ip = normalise_ipv4(request.match_info["ip"])
        lease = await self._leases.lease(ip)
        if lease is None:
            return _error(404, f"no lease for {ip}")
        if lease.state != "bound" and lease.state != "offered":
            return _error(409, f"the lease of {ip} is {lease.state}, not held: nothing to "
                               "release")
        step = LeaseStore(self.store.redis).release_step(
            lease.subnet, lease.mac, ip, now=int(time_mod.time()),
            client="" if lease.client == lease.mac else lease.client)
        outcome = await LeaseStore(self.store.redis).step(step)
        if outcome.kind != "ok":
            return _error(409, f"lease of {ip} not released: {outcome.kind} {outcome.reason}")
        self.events.emit("api.lease_release", lease.mac, ip=ip, subnet=lease.subnet,
                         who=self._who(request))
        log.info("api_lease_release", ip=ip, mac=lease.mac, who=self._who(request))
        return _json(_lease_json(await self._leases.lease(ip)))

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
    return event.json()
