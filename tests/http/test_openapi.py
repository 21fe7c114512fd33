"""The admin API's OpenAPI document names exactly the routes the application has; ETag and
If-Match keep two editors from silently overwriting each other."""

from __future__ import annotations

import re

import pytest
from httpkit import MAC, SECRET

from services.http.adminapi import AdminApi
from shared.leases import Leases


@pytest.fixture
async def api(inventory, aiohttp_client):
    app = AdminApi(inventory.store, inventory.events, "", SECRET, leases=Leases(inventory.client))
    return await aiohttp_client(app.app())


async def test_the_document_names_exactly_the_real_routes(api):
    doc = await (await api.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item}
    real = set()
    for route in api.server.app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        real.add((route.method, re.sub(r"\{(\w+)\}", r"{\1}", path)))
    assert documented == real, (f"undocumented: {sorted(real - documented)}, "
                                f"not routes: {sorted(documented - real)}")
    host_fields = doc["components"]["schemas"]["HostFields"]["properties"]
    assert {"hostname", "ip", "boot_mode", "vars"} <= set(host_fields)


async def test_if_match_refuses_a_stale_edit(api):
    assert (await api.post("/api/v1/hosts", json={"id": MAC, "hostname": "web1"})).status == 201
    first = await api.get(f"/api/v1/hosts/{MAC}")
    tag = first.headers["ETag"]
    assert tag == (await first.json())["etag"]
    # editor A changes the host with the tag it read: accepted, a new tag
    ok = await api.patch(f"/api/v1/hosts/{MAC}", json={"hostname": "web2"},
                         headers={"If-Match": tag})
    assert ok.status == 200 and ok.headers["ETag"] != tag
    # editor B still holds the old tag: refused, nothing written
    stale = await api.patch(f"/api/v1/hosts/{MAC}", json={"hostname": "web3"},
                            headers={"If-Match": tag})
    assert stale.status == 412 and "changed since it was read" in (await stale.json())["error"]
    assert (await (await api.get(f"/api/v1/hosts/{MAC}")).json())["fields"]["hostname"] == "web2"
    assert (await api.delete(f"/api/v1/hosts/{MAC}", headers={"If-Match": tag})).status == 412
    assert (await api.delete(f"/api/v1/hosts/{MAC}",
                             headers={"If-Match": ok.headers["ETag"]})).status == 204


async def test_lists_page_and_filter(api):
    macs = [f"52:54:00:00:00:{i:02x}" for i in range(1, 6)]
    for i, mac in enumerate(macs):
        assert (await api.post("/api/v1/hosts", json={
            "id": mac, "hostname": f"n{i}", "tags": ["odd" if i % 2 else "even"]})).status == 201
    first = await api.get("/api/v1/hosts?limit=2")
    assert list(await first.json()) == macs[:2]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    second = await api.get(link[1:link.index(">")])
    assert list(await second.json()) == macs[2:4]
    last = await api.get(second.headers["Link"][1:second.headers["Link"].index(">")])
    assert list(await last.json()) == macs[4:] and "Link" not in last.headers
    assert list(await (await api.get("/api/v1/hosts?tag=odd")).json()) == [macs[1], macs[3]]
    assert (await api.get("/api/v1/hosts?limit=0")).status == 400


async def test_named_tokens_and_read_only_scope(inventory, aiohttp_client):
    from services.http.settings import parse_tokens
    tokens = parse_tokens(["alice:admin:alice-token-0123456789", "grafana:read:read-token-0123456789"])
    app = AdminApi(inventory.store, inventory.events, "", SECRET, leases=Leases(inventory.client),
                   tokens=tokens)
    client = await aiohttp_client(app.app())
    alice = {"Authorization": "Bearer alice-token-0123456789"}
    reader = {"Authorization": "Bearer read-token-0123456789"}
    assert (await client.get("/api/v1/hosts")).status == 401
    assert (await client.post("/api/v1/hosts", json={"id": MAC, "hostname": "web1"},
                              headers=alice)).status == 201
    assert (await client.get(f"/api/v1/hosts/{MAC}", headers=reader)).status == 200
    refused = await client.patch(f"/api/v1/hosts/{MAC}", json={"hostname": "x"}, headers=reader)
    assert refused.status == 403 and "'grafana' is read-only" in (await refused.json())["error"]
    assert (await client.get(f"/api/v1/hosts/{MAC}/token", headers=reader)).status == 403
    assert (await client.get(f"/api/v1/hosts/{MAC}/token", headers=alice)).status == 200
    history = await (await client.get("/api/v1/history", headers=reader)).json()
    assert [e["who"].split("@")[0] for e in history] == ["api:alice"]
    with pytest.raises(ValueError, match="scope read or admin"):
        parse_tokens(["bob:write:0123456789abcdef"])


async def test_lease_release(api, inventory):
    import time

    from shared import leases
    store = leases.LeaseStore(inventory.client)
    await store.sync_pool("lab", (("198.18.6.10", "198.18.6.10"),))
    now = int(time.time())
    offer = await store.step(store.offer_step("lab", MAC, reserved=None, requested=None,
                                              hostname="", now=now))
    await store.step(store.request_step("lab", MAC, offer.ip, reserved=None, hostname="",
                                        lease_time=600, now=now))
    assert await leases.Leases(inventory.client).holder(offer.ip) == MAC
    resp = await api.delete(f"/api/v1/leases/{offer.ip}")
    assert resp.status == 200 and (await resp.json())["state"] == "released"
    assert await leases.Leases(inventory.client).holder(offer.ip) is None
    assert (await api.delete(f"/api/v1/leases/{offer.ip}")).status == 409
    assert (await api.delete("/api/v1/leases/198.18.6.99")).status == 404
    # the address is free again: another client gets it
    other = await store.step(store.offer_step("lab", "52:54:00:00:00:77", reserved=None,
                                              requested=None, hostname="", now=now + 1))
    assert other.kind == "ok" and other.ip == offer.ip
