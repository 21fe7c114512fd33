"""The admin API's fleet routes (docs/api.md "Fleet"): a host's effective values, reinstall and
rescue. The same functions as the CLI (shared/effective.py through shared/inventory_view.py,
shared/oneshot.py), the same checks and audit trail.

- ``GET /api/v1/hosts/<mac>?effective=1``: the effective values and their sources (the
  ``show`` handler of adminapi.py answers it through :func:`effective`);
- ``POST /api/v1/hosts/<mac>/reinstall`` (body ``{"profile": ...}`` optional): install once,
  then local;
- ``POST /api/v1/hosts/<mac>/rescue`` (body ``{"profile": ..., "mode": "live"}``): that
  profile once; ``DELETE`` cancels it.

Each write answers with the host (as ``PATCH`` does) and takes ``?force=yes`` and
``?dry_run=yes`` (then: the diff, nothing written).
"""

from __future__ import annotations

import functools

from aiohttp import web

from shared import audit, inventory_view, oneshot
from shared.schema import KINDS


def add_routes(router, prefix: str, api) -> None:
    router.add_post(f"{prefix}/hosts/{{id}}/reinstall", functools.partial(_reinstall, api))
    router.add_post(f"{prefix}/hosts/{{id}}/rescue",
                    functools.partial(_rescue, api, cancel=False))
    router.add_delete(f"{prefix}/hosts/{{id}}/rescue",
                      functools.partial(_rescue, api, cancel=True))


async def effective(api, request: web.Request) -> web.Response:
    from services.http.adminapi import _json
    return _json(await inventory_view.explain_host(api.store, request.match_info["id"]))


async def _optional_body(api, request: web.Request) -> dict:
    return await api._body(request) if request.can_read_body else {}


async def _answer(api, request: web.Request, mac: str, written, dry_run: bool,
                  action: str) -> web.Response:
    from services.http.adminapi import _json, log
    if dry_run:
        return _json({"dry_run": True, "diff": written.diff(),
                      "after": written.after, "warnings": [str(p) for p in written.warnings]})
    log.info("api_write", kind="host", id=mac, mode=action, ip=request.remote)
    return await api._written(request, KINDS["host"], mac, written)


async def _reinstall(api, request: web.Request) -> web.Response:
    mac = KINDS["host"].canonical_id(request.match_info["id"])
    body = await _optional_body(api, request)
    dry_run = api._flag(request, "dry_run")
    written = await oneshot.reinstall(api.store, [mac], profile=body.get("profile"),
                                      force=api._flag(request, "force"), dry_run=dry_run,
                                      record=audit.recorder(api._who(request)))
    return await _answer(api, request, mac, written, dry_run, "reinstall")


async def _rescue(api, request: web.Request, *, cancel: bool) -> web.Response:
    mac = KINDS["host"].canonical_id(request.match_info["id"])
    body = {} if cancel else await _optional_body(api, request)
    dry_run = api._flag(request, "dry_run")
    written = await oneshot.rescue(api.store, [mac], profile=body.get("profile"),
                                   mode=str(body.get("mode") or "live"), cancel=cancel,
                                   force=api._flag(request, "force"), dry_run=dry_run,
                                   record=audit.recorder(api._who(request)))
    return await _answer(api, request, mac, written, dry_run,
                         "rescue-cancel" if cancel else "rescue")
