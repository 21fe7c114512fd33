"""Power control through the admin API and the console: the routes, their validation, tokens and
CSRF, the secret masked in every answer, and (slow) a Redfish machine powered through the API."""

from __future__ import annotations

import json

import pytest
from powerkit import MAC, wait_vm

from services.http.adminapi import AdminApi
from services.http.console import Console
from services.http.settings import parse_tokens
from shared.events import EventLog
from shared.leases import Leases
from shared.powerctl import PowerSection
from shared.store import InventoryStore, connect

TOKEN = "admin-token-0123456789"
READER = "reader:read:read-token-0123456789"
SECRET = "x" * 32
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": "Bearer read-token-0123456789"}


@pytest.fixture
async def api(redis_url, aiohttp_client):
    client = connect(redis_url)
    store = InventoryStore(client, redis_url)
    events = EventLog(client, "http")
    app = AdminApi(store, events, TOKEN, SECRET, leases=Leases(client),
                   tokens=parse_tokens([READER]), console=Console(TOKEN),
                   power=PowerSection(timeout=20)).app()
    http = await aiohttp_client(app)
    http.events = events
    http.redis = client
    yield http
    await client.aclose()


async def add(api, **fields):
    resp = await api.post("/api/v1/hosts", json={"id": MAC, "boot_mode": "local", **fields},
                          headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_power_routes_validate_and_answer_with_the_reason(api):
    assert (await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "on"},
                           headers=ADMIN)).status == 404
    await add(api, power="wol")
    bad = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "dance"}, headers=ADMIN)
    assert bad.status == 400 and "one of on, off, cycle, status" in (await bad.json())["error"]
    bad = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "on", "pxe": "yes"},
                         headers=ADMIN)
    assert bad.status == 400
    off = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "off"}, headers=ADMIN)
    body = await off.json()
    assert off.status == 409 and body["outcome"] == "unsupported"
    assert "Wake-on-LAN cannot power off" in body["error"]
    # the HTTP service sends Wake-on-LAN only with power.wol_interfaces set
    on = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "on"}, headers=ADMIN)
    body = await on.json()
    assert on.status == 409 and body["reason"] == "interface_refused", body
    # a read token reads the state, and may not act
    status = await api.get(f"/api/v1/hosts/{MAC}/power", headers=READ)
    assert status.status == 409 and (await status.json())["action"] == "status"
    assert (await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "on"},
                           headers=READ)).status == 403
    # many hosts: selectors needed
    many = await api.post("/api/v1/power", json={"action": "status"}, headers=ADMIN)
    assert many.status == 400
    many = await api.post("/api/v1/power", json={"action": "status", "hosts": [MAC]},
                          headers=ADMIN)
    body = await many.json()
    assert many.status == 200 and body["failed"] == 1 and body["results"][0]["mac"] == MAC
    await api.events.flush()
    kinds = [(e.kind, e.service, e.fields.get("who")) for e in await api.events.read(MAC)]
    assert ("power.request", "http", "api:admin@127.0.0.1") in kinds
    assert ("power.request", "http", "api:reader@127.0.0.1") in kinds
    history = await (await api.get(f"/api/v1/history?host={MAC}", headers=ADMIN)).json()
    assert [e["detail"]["outcome"] for e in history if e["op"] == "power"] == [
        "unsupported", "failed", "unsupported", "unsupported"]


async def test_the_api_masks_the_secret_and_keeps_it(api):
    shown = await add(api, power="redfish", power_address="https://bmc9", power_user="root",
                      power_secret="api-pw-77")
    assert shown["fields"]["power_secret"] == "********"
    for path in (f"/api/v1/hosts/{MAC}", "/api/v1/hosts", "/api/v1/export",
                 f"/api/v1/history?host={MAC}"):
        text = await (await api.get(path, headers=ADMIN)).text()
        assert "api-pw-77" not in text, path
    # what the API returned, saved again: the secret stays
    fields = shown["fields"]
    resp = await api.put(f"/api/v1/hosts/{MAC}", json=fields, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert await api.redis.hget(f"bootyard:host:{MAC}", "power_secret") == "api-pw-77"


async def test_console_power_button_goes_through_csrf(api):
    await add(api, power="wol")
    login = await api.post("/console/login", data={"token": TOKEN}, allow_redirects=False)
    assert login.status == 303
    page = await api.get(f"/console/machines/{MAC}")
    text = await page.text()
    assert 'data-power="cycle"' in text and 'id="power-result"' in text
    csrf = text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    no_csrf = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "off"})
    assert no_csrf.status == 403
    ok = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "off"},
                        headers={"X-CSRF-Token": csrf})
    assert ok.status == 409 and (await ok.json())["outcome"] == "unsupported"
    await api.events.flush()
    assert any(e.kind == "power.request" and e.fields["who"] == "api:console@127.0.0.1"
               for e in await api.events.read(MAC))


@pytest.mark.slow
async def test_api_powers_a_redfish_machine(api, redfish_bmc):
    bmc = redfish_bmc(allow="On,ForceOff,ForceRestart")
    await add(api, power="redfish", power_address=bmc.address, power_user=bmc.user,
              power_secret=bmc.password, tags=["rack3"])
    resp = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "on"}, headers=ADMIN)
    body = await resp.json()
    assert resp.status == 200 and body["outcome"] == "ok" and body["pxe"], body
    wait_vm(bmc.vm.running, "the VM powered on through the API")
    status = await (await api.get(f"/api/v1/hosts/{MAC}/power", headers=READ)).json()
    assert status["state"] == "on"
    resp = await api.post("/api/v1/power", json={"action": "off", "tag": "rack3"},
                          headers=ADMIN)
    body = await resp.json()
    assert body["ok"] == 1 and body["results"][0]["detail"] == "ResetType ForceOff"
    wait_vm(lambda: not bmc.vm.running(), "the VM powered off through the API")
    # a wrong password: 502, naming host, BMC and reason
    await api.patch(f"/api/v1/hosts/{MAC}", json={"power_secret": "nope"}, headers=ADMIN)
    resp = await api.post(f"/api/v1/hosts/{MAC}/power", json={"action": "on"}, headers=ADMIN)
    body = await resp.json()
    assert resp.status == 502 and body["reason"] == "auth_refused"
    assert f"host {MAC} (BMC {bmc.address})" in body["error"]
    assert "nope" not in json.dumps(body)
