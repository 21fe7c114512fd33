"""The web console's routes without a browser (tests/http/test_console_browser.py drives one):
the login gate, a forged cookie, no login without an admin token, the console switched off."""

from __future__ import annotations

from httpkit import SECRET

from services.http.adminapi import AdminApi
from services.http.console import COOKIE, Console
from shared.leases import Leases

TOKEN = "t0ken"


def app(inventory, token: str, console: bool = True):
    return AdminApi(inventory.store, inventory.events, token, SECRET,
                    leases=Leases(inventory.client),
                    console=Console(token) if console else None).app()


async def test_login_gate_session_and_forged_cookie(inventory, aiohttp_client):
    client = await aiohttp_client(app(inventory, TOKEN))
    page = await client.get("/console/", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/console/login"
    assert (await client.get("/api/v1/hosts")).status == 401  # the API still needs its token
    form = await client.get("/console/login")
    assert form.status == 200 and 'type="password"' in await form.text()
    wrong = await client.post("/console/login", data={"token": "nope"}, allow_redirects=False)
    assert wrong.status == 401 and "wrong token" in await wrong.text()
    # a login posted as JSON (not the form) is refused like any non-form body there
    assert (await client.post("/console/login", json={"token": TOKEN})).status == 415
    ok = await client.post("/console/login", data={"token": TOKEN}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == "/console/"
    cookie = ok.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    page = await client.get("/console/")
    text = await page.text()
    assert page.status == 200 and 'id="logout"' in text and TOKEN not in text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert (await client.get("/api/v1/hosts")).status == 200  # the session reads the API
    csrf = text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    no_csrf = await client.patch("/api/v1/hosts/52:54:00:00:00:01", json={"ip": "10.0.0.9"})
    assert no_csrf.status == 403
    assert (await client.post("/console/logout", json={},
                              headers={"X-CSRF-Token": csrf})).status == 200
    assert (await client.get("/api/v1/hosts")).status == 401

    forged = await aiohttp_client(app(inventory, TOKEN))
    forged.session.cookie_jar.update_cookies({COOKIE: "made-up"})
    assert (await forged.get("/console/", allow_redirects=False)).status == 303
    assert (await forged.get("/api/v1/hosts")).status == 401


async def test_without_an_admin_token_there_is_no_login(inventory, aiohttp_client):
    client = await aiohttp_client(app(inventory, ""))
    login = await client.get("/console/login", allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "/console/"
    page = await client.get("/console/")
    assert page.status == 200 and 'id="logout"' not in await page.text()
    js = await client.get("/console/static/console.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert (await client.get("/console/static/../settings.py")).status == 404


async def test_the_console_switched_off(inventory, aiohttp_client):
    client = await aiohttp_client(app(inventory, TOKEN, console=False))
    assert (await client.get("/console/", headers={"Authorization": f"Bearer {TOKEN}"})
            ).status == 404
