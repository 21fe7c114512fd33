"""Power control in the admin API (docs/api.md, docs/power.md): one host's power state and
actions, and the same action for many hosts chosen by selectors. The actions run here, in the
HTTP service, through :func:`shared.powerctl.act`, as ``bootyard power`` runs them: same
drivers, same events (``power.request``, ``power.result`` with service ``http``), same audit
entries (``who`` = ``api:<token name>@<client>``, or the console).

- ``GET /api/v1/hosts/<mac>/power``: the power state (action ``status``).
- ``POST /api/v1/hosts/<mac>/power`` ``{"action": "on"|"off"|"cycle"|"status", "pxe": bool}``.
- ``POST /api/v1/power`` ``{"action": ..., "hosts": [mac, ...], "tag": ..., "profile": ...,
  "subnet": ..., "pxe": bool}``: one result per host.

A result is :meth:`shared.power.Result.json`. One host: 200 when it is done (outcome ``ok`` or
``already``), 409 when the host's settings make it impossible (no power control, an action the
method cannot do, Wake-on-LAN without a deploy interface), 502 when the BMC failed or refused
(unreachable, wrong password, an error answer), with ``error`` naming host, BMC and reason.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from shared import inventory_view, logs, powerctl
from shared.addresses import normalise_mac
from shared.power import ACTIONS
from shared.powerctl import PowerSection
from shared.schema import KINDS
from shared.store import NotFound

log = logs.get_logger("http.power")
HOST = KINDS["host"]
CONFIG_REASONS = ("not_configured", "unsupported", "interface_refused")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=2) + "\n")


class PowerApi:
    def __init__(self, store, events, settings: PowerSection | None, who) -> None:
        self.store = store
        self.events = events
        self.settings = settings or PowerSection()
        self.who = who  # request -> the audit trail's "who"

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        router.add_get(f"{prefix}/hosts/{{id}}/power", self.host_power)
        router.add_post(f"{prefix}/hosts/{{id}}/power", self.host_power)
        router.add_post(f"{prefix}/power", self.many)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}\n',
                                     content_type="application/json")
        return body

    @staticmethod
    def _action(body: dict[str, Any]) -> tuple[str, bool | None]:
        action = body.get("action")
        if action not in ACTIONS:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"action must be one of {', '.join(ACTIONS)}, not "
                                          f"{action!r}"}) + "\n", content_type="application/json")
        pxe = body.get("pxe")
        if pxe is not None and not isinstance(pxe, bool):
            raise web.HTTPBadRequest(text='{"error": "pxe must be true or false"}\n',
                                     content_type="application/json")
        return action, pxe

    async def _act(self, request: web.Request, macs: list[str], action: str,
                   pxe: bool | None):
        results = await powerctl.act(self.store, self.events, macs, action,
                                     who=self.who(request), settings=self.settings, pxe=pxe)
        for r in results:
            log.info("api_power", mac=r.mac, action=action, method=r.method or "none",
                     outcome=r.outcome, reason=r.reason or None, ip=request.remote,
                     who=self.who(request))
        return results

    async def host_power(self, request: web.Request) -> web.Response:
        mac = normalise_mac(request.match_info["id"])
        if not await self.store.raw(HOST, mac):
            raise NotFound(f"no host {mac} (key {HOST.key(mac)})")
        action, pxe = ("status", None) if request.method == "GET" else \
            self._action(await self._body(request))
        (result,) = await self._act(request, [mac], action, pxe)
        body = result.json()
        if result.ok:
            return _json(body)
        body["error"] = result.detail
        return _json(body, 409 if result.reason in CONFIG_REASONS else 502)

    async def many(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        action, pxe = self._action(body)
        hosts = body.get("hosts") or []
        selectors = {k: body.get(k) for k in ("tag", "profile", "subnet")}
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts) or \
                not all(v is None or isinstance(v, str) for v in selectors.values()):
            return _json({"error": "hosts is a list of MACs; tag, profile, subnet are text"},
                         400)
        if not hosts and not any(selectors.values()):
            return _json({"error": "name the hosts: hosts, tag, profile or subnet"}, 400)
        macs = await inventory_view.select(self.store, HOST, hosts, **selectors)
        if not macs:
            return _json({"error": "no host matches"}, 404)
        results = await self._act(request, macs, action, pxe)
        return _json({"results": [r.json() for r in results],
                      "ok": sum(r.ok for r in results),
                      "failed": sum(not r.ok for r in results)})


def openapi_paths(prefix: str) -> dict[str, Any]:
    """The OpenAPI description of these routes (services/http/openapi.py)."""
    ident = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    result = {"type": "object", "properties": {
        "mac": {"type": "string"}, "action": {"type": "string", "enum": list(ACTIONS)},
        "method": {"type": "string"}, "outcome": {"type": "string", "enum": [
            "ok", "already", "failed", "unsupported"]},
        "state": {"type": "string", "enum": ["on", "off", "unknown"]},
        "reason": {"type": "string"}, "detail": {"type": "string"},
        "address": {"type": "string"}, "seconds": {"type": "number"},
        "pxe": {"type": "boolean"}, "error": {"type": "string"}}}
    action = {"type": "object", "required": ["action"], "properties": {
        "action": {"type": "string", "enum": list(ACTIONS)},
        "pxe": {"type": "boolean", "description": "on, cycle: ask for one PXE boot first "
                                                  "(default: power.pxe)"}}}
    many = {"type": "object", "required": ["action"], "properties": {
        **action["properties"], "hosts": {"type": "array", "items": {"type": "string"}},
        "tag": {"type": "string"}, "profile": {"type": "string"}, "subnet": {"type": "string"}}}

    def ok(what: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": what, "content": {"application/json": {"schema": schema}}}

    errors = {"404": ok("no such host", {"$ref": "#/components/schemas/Error"}),
              "409": ok("the host's power settings do not allow it", result),
              "502": ok("the BMC failed or refused (error names host, BMC, reason)", result)}
    return {
        f"{prefix}/hosts/{{id}}/power": {
            "get": {"summary": "a host's power state (asks its BMC)", "parameters": [ident],
                    "responses": {"200": ok("the result (state)", result), **errors}},
            "post": {"summary": "power a host on, off, cycle it, or read its state",
                     "parameters": [ident], "requestBody": {"required": True, "content": {
                         "application/json": {"schema": action}}},
                     "responses": {"200": ok("done", result), **errors}}},
        f"{prefix}/power": {"post": {
            "summary": "the same power action for several hosts (hosts, tag, profile, subnet)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": many}}},
            "responses": {"200": ok("{results, ok, failed}", {"type": "object"}),
                          "404": ok("no host matches", {"$ref": "#/components/schemas/Error"})}}},
    }
