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
