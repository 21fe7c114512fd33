"""The admin API's discovered machines: list, show, adopt (the same checks as the CLI)."""

from __future__ import annotations

import json

from enlistkit import MAC, REPORT

from services.http.adminapi import AdminApi
from shared import audit, hardware
from shared.leases import Leases
from shared.schema import KINDS

JSON = {"Content-Type": "application/json"}


async def test_list_show_and_adopt_through_the_api(env, aiohttp_client, raw):
    api = await aiohttp_client(AdminApi(env.store, env.events, "", "secret-0123456789",
                                        leases=Leases(env.client)).app())
    raw.hset(KINDS["discovered"].key(MAC), mapping={
        "ip": "198.18.5.120", "reports": "1", "hw": hardware.dumps(hardware.check(REPORT))})
    listed = await (await api.get("/api/v1/discovered")).json()
    assert json.loads(listed[MAC]["hw"])["dmi"]["serial"] == "LAB-0042"
    shown = await (await api.get(f"/api/v1/discovered/{MAC}")).json()
    assert shown["valid"] and shown["fields"]["ip"] == "198.18.5.120"
    url = f"/api/v1/discovered/{MAC}/adopt"
    resp = await api.post(url, json={"profile": "live", "colour": "red"})
    assert resp.status == 400 and "colour" in (await resp.json())["error"]
    resp = await api.post(url, json={"profile": "live"})
    assert resp.status == 422  # no such profile: nothing written
    assert raw.exists(KINDS["discovered"].key(MAC))
    await env.put("profile", "live", kernel="vmlinuz", root_image="root.squashfs")
    resp = await api.post(url, json={"profile": "live", "hostname": "node7",
                                     "boot_mode": "live", "tags": ["rack1"]})
    assert resp.status == 201, await resp.text()
    host = await resp.json()
    assert host["key"] == KINDS["host"].key(MAC) and host["fields"]["hostname"] == "node7"
    assert json.loads(host["fields"]["hw"])["disks"][0]["name"] == "vda"
    assert not raw.exists(KINDS["discovered"].key(MAC))
    entries = await audit.history(env.client, KINDS["host"].key(MAC))
    assert entries[-1].who.startswith("api:admin@") and entries[-1].op == "add"
    assert (await api.post(url, json={"profile": "live"})).status == 404
    adopted = await env.events_of("discovery.adopted")
    assert adopted[-1].fields["profile"] == "live"
