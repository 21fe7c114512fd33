"""The admin API (/api/v1/...) against a real Redis, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import json

import pytest
from httpkit import MAC, SECRET

from services.http.access import host_token
from services.http.adminapi import AdminApi
from shared.leases import Leases

TOKEN = "t0ken"


@pytest.fixture
async def api(inventory, aiohttp_client):
    app = AdminApi(inventory.store, inventory.events, TOKEN, SECRET, "http://10.0.0.1:8080",
                   leases=Leases(inventory.client)).app()
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {TOKEN}"})
    return client


async def test_token_is_required(inventory, aiohttp_client):
    app = AdminApi(inventory.store, inventory.events, TOKEN, SECRET,
                   leases=Leases(inventory.client)).app()
    client = await aiohttp_client(app)
    resp = await client.get("/api/v1/hosts")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get("/api/v1/hosts", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401


async def test_host_crud_with_the_cli_validation(api, inventory):
    resp = await api.post("/api/v1/profiles", json={"id": "debian12", "kernel": "d/linux",
                                                    "initrd": ["d/initrd.gz"],
                                                    "install": "preseed"})
    assert resp.status == 201
    resp = await api.post("/api/v1/hosts", json={
        "id": "52-54-00-12-34-56", "hostname": "web1", "ip": "10.0.0.21", "profile": "debian12",
        "tags": ["rack1", "web"], "vars": {"disk": "/dev/vda"}})
    assert resp.status == 201
    body = await resp.json()
    assert body["id"] == MAC and body["valid"] and body["fields"]["tags"] == ["rack1", "web"]
    assert body["fields"]["vars"] == {"disk": "/dev/vda"}
    # the same as the CLI sees it
    assert (await inventory.store.raw(__import__("shared.schema").schema.KINDS["host"], MAC)) == {
        "hostname": "web1", "ip": "10.0.0.21", "profile": "debian12", "tags": "rack1,web",
        "var.disk": "/dev/vda"}
    again = await api.post("/api/v1/hosts", json={"id": MAC})
    assert again.status == 409
    bad = await api.patch(f"/api/v1/hosts/{MAC}", json={"ip": "10.0.0.300"})
    assert bad.status == 422
    problem = (await bad.json())["problems"][0]
    assert problem["field"] == "ip" and problem["key"] == f"bootyard:host:{MAC}"
    unknown = await api.patch(f"/api/v1/hosts/{MAC}", json={"colour": "red"})
    assert unknown.status == 400 and "no field 'colour'" in (await unknown.json())["error"]
    ok = await api.patch(f"/api/v1/hosts/{MAC}",
                         json={"boot_mode": "local", "vars": {"disk": None}})
    assert ok.status == 200
    fields = (await ok.json())["fields"]
    assert fields["boot_mode"] == "local" and "vars" not in fields
    listed = await (await api.get("/api/v1/hosts?tag=web")).json()
    assert list(listed) == [MAC]
    assert await (await api.get("/api/v1/hosts?tag=db")).json() == {}
    replaced = await api.put(f"/api/v1/hosts/{MAC}", json={"hostname": "web9"})
    assert (await replaced.json())["fields"] == {"hostname": "web9"}
    token = await (await api.get(f"/api/v1/hosts/{MAC}/token")).json()
    assert token["token"] == host_token(SECRET, MAC)
    assert token["urls"]["kickstart"].endswith(f"/install/{MAC}/ks.cfg?token={token['token']}")
    assert (await api.delete(f"/api/v1/hosts/{MAC}")).status == 204
    assert (await api.get(f"/api/v1/hosts/{MAC}")).status == 404
    assert (await api.get("/api/v1/hosts/not-a-mac")).status == 400


async def test_exports_subnets_mirrors_validate_export_import(api):
    assert (await api.post("/api/v1/exports", json={"id": "web1-root", "kind": "aoe",
                                                    "backing": "/srv/a.img"})).status == 422
    assert (await api.post("/api/v1/exports", json={
        "id": "web1-root", "kind": "aoe", "backing": "/srv/a.img", "aoe_shelf": "0",
        "aoe_slot": "1"})).status == 201
    assert (await api.post("/api/v1/subnets", json={
        "id": "lab", "network": "10.0.0.0/24", "ranges": ["10.0.0.100-10.0.0.199"]})).status == 201
    assert (await api.post("/api/v1/mirrors", json={
        "id": "debian", "source": "rsync://x/debian", "path": "debian"})).status == 201
    # the API runs the CLI's reference checks: an unknown profile is refused...
    refused = await api.post("/api/v1/hosts", json={"id": MAC, "profile": "missing"})
    assert refused.status == 422
    assert (await refused.json())["problems"][0]["reason"].startswith("no such profile")
    # ... unless forced (then written, and validate reports it)
    assert (await api.post("/api/v1/hosts?force=yes",
                           json={"id": MAC, "profile": "missing"})).status == 201
    report = await (await api.get("/api/v1/validate")).json()
    assert not report["valid"]
    assert report["problems"][0]["reason"].startswith("no such profile")
    exported = await (await api.get("/api/v1/export")).text()
    assert "subnets:" in exported and "web1-root:" in exported
    resp = await api.post("/api/v1/import?replace=yes", data="hosts: {}\n",
                          headers={"Content-Type": "application/yaml"})
    assert resp.status == 409 and "confirm=yes" in (await resp.json())["error"]
    assert len((await resp.json())["diff"]["deleted"]) == 4
    resp = await api.post("/api/v1/import?replace=yes&confirm=yes", data="hosts: {}\n",
                          headers={"Content-Type": "application/yaml"})
    body = await resp.json()
    assert (body["written"], body["deleted"]) == (0, 4)
    assert await (await api.get("/api/v1/exports")).json() == {}


async def test_leases(api, inventory):
    await inventory.client.hset("bootyard:lease:10.0.0.150", mapping={
        "mac": MAC, "state": "bound", "expires": "2000000000", "subnet": "lab", "hostname": ""})
    leases = await (await api.get("/api/v1/leases")).json()
    assert leases == {"10.0.0.150": {"mac": MAC, "state": "bound", "expires": 2000000000,
                                     "subnet": "lab", "hostname": ""}}
    assert (await (await api.get("/api/v1/leases/10.0.0.150")).json())["mac"] == MAC
    assert (await api.get("/api/v1/leases/10.0.0.151")).status == 404


async def test_events_and_the_live_stream(api, inventory):
    inventory.events.emit("dhcp.ack", MAC, ip="10.0.0.21")
    await inventory.events.flush()
    listed = await (await api.get(f"/api/v1/events?host={MAC}")).json()
    assert [e["kind"] for e in listed] == ["dhcp.ack"]
    # MAC is not in this test's inventory: no stream of its own, found in the global one
    assert not await inventory.client.exists(f"bootyard:events:{MAC}")
    resp = await api.get(f"/api/v1/events/stream?host={MAC}")
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await resp.content.readline() == b": bootyard event stream\n"
    await resp.content.readline()
    # the stream follows from "now": the dhcp.ack above never comes; an event written after
    # the stream started does. The stream reads from its start (XREAD $), so the new event is
    # written again until one arrives: the first one to arrive must be it, not the dhcp.ack.
    lines: list[str] = []
    for _ in range(50):
        inventory.events.emit("http.script", MAC, outcome="install")
        await inventory.events.flush()
        try:
            lines.append((await asyncio.wait_for(resp.content.readline(), 0.2)).decode()
                         .rstrip("\n"))
            break
        except TimeoutError:
            continue
    while len(lines) < 3:
        lines.append((await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n"))
    assert lines[0].startswith("id: ") and lines[1] == "event: http.script"
    data = json.loads(lines[2][len("data: "):])
    assert data["mac"] == MAC and data["fields"] == {"outcome": "install"}
    resp.close()
    # Last-Event-ID: a reconnecting client continues right after the entry it names
    resp = await api.get(f"/api/v1/events/stream?host={MAC}",
                         headers={"Last-Event-ID": listed[0]["id"]})
    await resp.content.readline()
    await resp.content.readline()
    lines = [(await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
             for _ in range(3)]
    assert lines[1] == "event: http.script"
    resp.close()


# ---------------------------------------------------------------- F5: web pages stay out

@pytest.fixture
async def open_api(inventory, aiohttp_client):
    """The token-less admin API (the default outside compose: loopback, no token)."""
    await inventory.put("host", MAC, hostname="web1")
    return await aiohttp_client(AdminApi(inventory.store, inventory.events, "", SECRET,
                                                   leases=Leases(inventory.client)).app())


async def test_f5_text_plain_post_cannot_wipe_the_inventory(open_api, inventory):
    # what a web page's cross-site "simple" request (no preflight) can send
    resp = await open_api.post("/api/v1/import?replace=yes", data="hosts: {}\n",
                               headers={"Content-Type": "text/plain"})
    assert resp.status == 415 and "Content-Type 'text/plain'" in (await resp.json())["error"]
    form = await open_api.post("/api/v1/hosts", data="id=52:54:00:00:00:01",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415
    assert list(await (await open_api.get("/api/v1/hosts")).json()) == [MAC]
    ok = await open_api.post("/api/v1/hosts",
                             json={"id": "52:54:00:00:00:02", "hostname": "web2"})
    assert ok.status == 201


async def test_f5_foreign_origin_refused(open_api):
    resp = await open_api.post("/api/v1/hosts", json={"id": "52:54:00:00:00:01",
                                                      "hostname": "evil"},
                               headers={"Origin": "http://evil.example"})
    assert resp.status == 403 and "cross-origin" in (await resp.json())["error"]
    resp = await open_api.delete(f"/api/v1/hosts/{MAC}", headers={"Origin": "null"})
    assert resp.status == 403
    same = await open_api.get("/api/v1/hosts",
                              headers={"Origin": f"http://{open_api.host}:{open_api.port}"})
    assert same.status == 200


async def test_f5_rebound_host_refused(inventory, open_api, aiohttp_client):
    resp = await open_api.get(f"/api/v1/hosts/{MAC}/token",
                              headers={"Host": "attacker.example:9180"})
    assert resp.status == 421 and "http.admin_hostnames" in (await resp.json())["error"]
    assert SECRET not in await resp.text()
    for host in ("localhost:9180", "127.0.0.1:9180", "[::1]:9180", "10.0.0.1"):
        resp = await open_api.get(f"/api/v1/hosts/{MAC}/token", headers={"Host": host})
        assert resp.status == 200, host
    named = AdminApi(inventory.store, inventory.events, "", SECRET,
                     hostnames=("deploy.lab.example",), leases=Leases(inventory.client)).app()
    client = await aiohttp_client(named)
    ok = await client.get("/api/v1/hosts", headers={"Host": "Deploy.Lab.Example:9180"})
    assert ok.status == 200
