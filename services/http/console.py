"""The web console (docs/console.md): the machines list, one machine's page and the mirrors and
exports overview, served by the HTTP service on the admin listener, behind the admin token.

The pages are small HTML shells; the browser fills them from the admin API (``/api/v1/hosts``,
``/api/v1/states``, ``/api/v1/events``, ``/api/v1/overview`` and the live
``/api/v1/events/stream``) with
``console.js``. Every asset ships here (``console_assets/``): no CDN, no internet needed.

Login: a form takes the admin token (never in a URL) and sets a session cookie (HttpOnly,
SameSite=Strict, random, kept in this process's memory for :data:`SESSION_SECONDS`). The admin
API accepts that cookie as it accepts the bearer token; anything that writes with the cookie must
also send the session's CSRF token in ``X-CSRF-Token`` (the page carries it in a meta tag), so
another site can neither read the pages nor make the browser write. Without ``http.admin_token``
(the API on loopback only) there is no login.
"""

from __future__ import annotations

import hmac
import html
import secrets
import time
from pathlib import Path

from aiohttp import web

from shared.addresses import AddressError, normalise_mac

ASSETS = Path(__file__).with_name("console_assets")
ASSET_TYPES = {"console.js": "text/javascript", "console.css": "text/css"}
COOKIE = "bootyard_console"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 1000
LOGIN = "/console/login"
FORM_PATHS = (LOGIN,)  # the form that may POST application/x-www-form-urlencoded
FORM_TYPES = ("application/x-www-form-urlencoded",)
PUBLIC = (LOGIN, "/console/static/console.css")


class Console:
    def __init__(self, token: str) -> None:
        self.token = token
        self._sessions: dict[str, tuple[float, str]] = {}  # id -> (expiry, csrf token)

    # -- sessions ------------------------------------------------------------------------------
    def _new_session(self) -> str:
        now = time.monotonic()
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions = {k: v for k, v in self._sessions.items() if v[0] > now}
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = (now + SESSION_SECONDS, secrets.token_urlsafe(32))
        return sid

    def session_csrf(self, request: web.Request) -> str | None:
        """The CSRF token of the request's valid session, or None."""
        sid = request.cookies.get(COOKIE)
        found = self._sessions.get(sid) if sid else None
        if found is None:
            return None
        if found[0] < time.monotonic():
            self._sessions.pop(sid, None)
            return None
        return found[1]

    def check(self, request: web.Request) -> bool | web.StreamResponse | None:
        """For the admin API's auth (no valid bearer token): True to serve the request, a
        response to send instead, None to refuse it as the API does (401)."""
        if request.path in PUBLIC:
            return True
        csrf = self.session_csrf(request)
        if csrf is not None:
            if request.method in ("GET", "HEAD"):
                return True
            if hmac.compare_digest(request.headers.get("X-CSRF-Token", "").encode(),
                                   csrf.encode()):
                return True
            return web.json_response({"error": "missing or wrong X-CSRF-Token for this "
                                               "console session"}, status=403)
        if request.path.startswith("/console"):
            raise web.HTTPSeeOther(LOGIN)
        return None

    # -- pages ---------------------------------------------------------------------------------
    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/console", self.to_list)
        router.add_get("/console/", self.machines)
        router.add_get(LOGIN, self.login_form)
        router.add_post(LOGIN, self.login)
        router.add_post("/console/logout", self.logout)
        router.add_get("/console/machines/{mac}", self.machine)
        router.add_get("/console/storage", self.storage)
        router.add_get("/console/discovered", self.discovered)
        router.add_get("/console/static/{name}", self.asset)

    async def to_list(self, _request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/console/")

    def _page(self, request: web.Request, title: str, body: str, page: str,
              **data: str) -> web.Response:
        csrf = self.session_csrf(request) or ""
        attrs = " ".join(f'data-{k}="{html.escape(v)}"' for k, v in data.items())
        # the nav names these pages
        shown = "" if page in ("machines", "storage", "discovered") else title

        def current(name: str) -> str:
            return ' class="current"' if name == page else ""
        text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{html.escape(csrf)}">
<title>{html.escape(title)} · bootyard</title>
<link rel="stylesheet" href="/console/static/console.css">
</head><body data-page="{page}" {attrs}>
<header><a class="brand" href="/console/">bootyard</a><nav><a id="nav-machines"
 href="/console/"{current("machines")}>Machines</a><a id="nav-storage" href="/console/storage"
{current("storage")}>Mirrors and exports</a><a id="nav-discovered" href="/console/discovered"
{current("discovered")}>Discovered</a></nav><span class="title">{html.escape(shown)}
</span><span id="live" class="live">connecting…</span>
{'<button id="logout" type="button">Log out</button>' if self.token else ''}</header>
<main>{body}</main>
<script src="/console/static/console.js"></script>
</body></html>
"""
        return web.Response(text=text, content_type="text/html", headers=_NO_STORE)

    async def machines(self, request: web.Request) -> web.Response:
        body = """
<form id="filters" class="filters">
  <label>State <select id="f-state"><option value="">any</option><option>stuck</option>
    <option>progressing</option><option>finished</option><option>idle</option></select></label>
  <label>Profile <select id="f-profile"><option value="">any</option></select></label>
  <label>Tag <input id="f-tag" size="10"></label>
  <label>Search <input id="f-text" size="18" placeholder="MAC, name, reason"></label>
  <span id="count" class="count"></span>
</form>
<table id="machines" class="machines"><thead><tr><th>MAC</th><th>Hostname</th>
<th>Profile</th><th>Boot mode</th><th>State</th><th>Stage</th><th>Since</th><th>Reason</th>
</tr></thead><tbody></tbody></table>"""
        return self._page(request, "Machines", body, "machines")

    async def machine(self, request: web.Request) -> web.Response:
        try:
            mac = normalise_mac(request.match_info["mac"])
        except AddressError as exc:
            raise web.HTTPBadRequest(text=f"bootyard: {exc}\n") from None
        body = """
<section class="card"><h2>Boot</h2><p id="state" class="state"></p>
<div id="stages" class="stages"></div>
<table id="attempts" class="attempts"><thead><tr><th>Attempt</th><th>Started</th><th>State</th>
<th>Stage</th><th>Reason</th></tr></thead><tbody></tbody></table></section>
<section class="card"><h2>Actions</h2>
<p>Boot mode: <b id="mode"></b>
<button type="button" data-mode="install">Install once</button>
<button type="button" data-mode="local">Local disk</button>
<button type="button" data-mode="live">Live</button></p>
<p><button type="button" id="reinstall">Reinstall (install once, then local disk)</button>
<label>Profile <input id="rescue-profile" size="14" placeholder="live-rescue"></label>
<button type="button" id="rescue">Boot it once (live)</button>
<button type="button" id="rescue-cancel">Cancel the one-shot boot</button></p>
<p id="action-result"></p>
<p>Power: <b id="power-state">?</b>
<button type="button" data-power="status">Status</button>
<button type="button" data-power="on">Power on</button>
<button type="button" data-power="off">Power off</button>
<button type="button" data-power="cycle">Power cycle</button></p>
<p id="power-result"></p></section>
<section class="card"><h2>Record</h2><table id="record" class="kv"></table>
<ul id="problems" class="problems"></ul></section>
<section class="card"><h2>Effective</h2><p id="groups"></p>
<table id="effective" class="kv"></table><ul id="conflicts" class="problems"></ul></section>
<section class="card"><h2>Lease</h2><p id="lease">none</p></section>
<section class="card"><h2>Timeline</h2><table id="events" class="events"><thead><tr>
<th>Time</th><th>+s</th><th>Service</th><th>Event</th><th>Details</th></tr></thead>
<tbody></tbody></table></section>"""
        return self._page(request, mac, body, "machine", mac=mac)

    async def discovered(self, request: web.Request) -> web.Response:
        """Machines that reported their hardware (docs/discovery.md), each with an adopt form
        that posts to /api/v1/discovered/<mac>/adopt (the API's checks, the session's CSRF)."""
        body = """
<p class="count">Machines that booted the discovery image and reported their hardware. Adopt
one to make it a host: it boots the chosen profile at its next network boot.</p>
<table id="discovered" class="machines"><thead><tr><th>MAC</th><th>IP</th><th>Vendor</th>
<th>Product</th><th>Serial</th><th>CPUs</th><th>Memory</th><th>Disks</th><th>NICs</th>
<th>Firmware</th><th>Last seen</th><th>Adopt</th></tr></thead><tbody></tbody></table>
<p id="adopt-result"></p>"""
        return self._page(request, "Discovered", body, "discovered")

    async def storage(self, request: web.Request) -> web.Response:
        body = """
<section class="card"><h2>Mirrors</h2><table id="mirrors" class="mirrors"><thead><tr>
<th>Mirror</th><th>State</th><th>Freshness</th><th>Last published</th><th>Size</th>
<th>Files</th><th>Source</th><th>Last error</th></tr></thead><tbody></tbody></table></section>
<section class="card"><h2>Block exports</h2><table id="exports" class="exports"><thead><tr>
<th>Export</th><th>Kind</th><th>Target</th><th>State</th><th>Size</th><th>Overlays</th>
<th>Overlay bytes</th><th>Free</th><th>Sessions</th><th>Backing</th></tr></thead><tbody>
</tbody></table></section>"""
        return self._page(request, "Mirrors and exports", body, "storage")

    async def login_form(self, request: web.Request, error: str = "") -> web.Response:
        if not self.token or self.session_csrf(request) is not None:
            raise web.HTTPSeeOther("/console/")
        note = f'<p class="error">{html.escape(error)}</p>' if error else ""
        text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · bootyard</title>
<link rel="stylesheet" href="/console/static/console.css"></head>
<body class="login"><form method="post" action="{LOGIN}" class="card">
<h1>bootyard</h1>{note}
<label>Admin token <input type="password" name="token" id="token" autocomplete="off"
 autofocus></label>
<button type="submit" id="login">Log in</button></form></body></html>
"""
        return web.Response(text=text, content_type="text/html", headers=_NO_STORE,
                            status=401 if error else 200)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        given = str(form.get("token", ""))
        if not self.token:
            raise web.HTTPSeeOther("/console/")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return await self.login_form(request, "wrong token")
        response = web.HTTPSeeOther("/console/")
        response.set_cookie(COOKIE, self._new_session(), max_age=SESSION_SECONDS,
                            httponly=True, samesite="Strict", path="/")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            self._sessions.pop(sid, None)
        response = web.json_response({"logged_out": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSET_TYPES:
            raise web.HTTPNotFound(text="bootyard: no such console file\n")
        return web.Response(body=(ASSETS / name).read_bytes(), content_type=ASSET_TYPES[name],
                            headers={"Cache-Control": "no-cache"})


_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
             "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}
