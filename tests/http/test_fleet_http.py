"""Fleet features through the HTTP service and the admin API, on a real Redis: the
unknown-host menu and default profile, groups and per-host kernel arguments in boot scripts,
one-shot (rescue) boots cleared once served, and the API's effective/reinstall/rescue routes."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from httpkit import SECRET

from services.http.access import Access
from services.http.adminapi import AdminApi
from services.http.render import Renderer
from services.http.server import BootService
from services.http.settings import DiscoverySection
from shared.leases import Leases

UNKNOWN = "52:54:00:99:99:01"
HOST = "52:54:00:99:99:02"
TOKEN = "t0ken"


def service(inv, discovery=False, **overrides) -> BootService:
    cfg = dataclasses.replace(inv.cfg, **overrides)
    return BootService(cfg, inv.cache, inv.events, inv.store, Renderer(cfg.templates_dir),
                       Access(cfg.token_secret, inv.cache, Leases(inv.client)),
                       discovery_cfg=DiscoverySection(enabled=discovery))


async def profiles(inv) -> None:
    await inv.put("profile", "rescue", kernel="rescue/vmlinuz", initrd="rescue/initrd.img",
                  root_image="rescue/root.squashfs", menu="yes", description="Live rescue")
    await inv.put("profile", "debian12", kernel="debian12/linux", initrd="debian12/initrd.gz",
                  install="preseed", cmdline="auto=true url={{ urls.preseed }}")


async def script(client, mac: str) -> str:
    resp = await client.get(f"/boot/ipxe?mac={mac}")
    assert resp.status == 200
    return await resp.text()


async def test_unknown_host_menu_offers_discovery_local_disk_and_menu_profiles(
        inventory, aiohttp_client):
    await profiles(inventory)
    client = await aiohttp_client(service(inventory, discovery=True, unknown_host="menu",
                                          unknown_delay=7).app())
    text = await script(client, UNKNOWN)
    lines = text.splitlines()
    assert lines[:2] == ["#!ipxe", f"# bootyard: unknown host {UNKNOWN}"]
    assert [line.split()[1] for line in lines if line.startswith("item ")] == \
        ["discovery", "local", "profile-rescue"]  # debian12 has no menu: yes
    assert "item profile-rescue rescue: Live rescue" in lines
    assert "choose --timeout 7000 --default discovery selected || goto discovery" in lines
    at = lines.index(":discovery")
    assert lines[at + 1] == \
        "chain http://10.0.0.1:8080/boot/discovery.ipxe?mac=${mac} || goto failed"
    at = lines.index(":local")
    assert lines[at + 2:at + 4] == [
        "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||", "exit"]
    at = lines.index(":profile-rescue")
    kernel = lines[at + 2]
    assert kernel.startswith("kernel http://10.0.0.1:8080/images/rescue/vmlinuz initrd=")
    assert "root=live:http://10.0.0.1:8080/images/rescue/root.squashfs" in kernel
    assert lines[-1] == "exit" and ":failed" in lines
    # without the discovery boot: no discovery entry, the local disk is the default
    client = await aiohttp_client(service(inventory, unknown_host="menu").app())
    text = await script(client, UNKNOWN)
    assert "item discovery" not in text and "discovery.ipxe" not in text
    assert "--default local selected || goto local" in text


async def test_unknown_host_default_profile(inventory, aiohttp_client):
    await profiles(inventory)
    client = await aiohttp_client(service(inventory, unknown_host="profile:rescue").app())
    text = await script(client, UNKNOWN)
    assert "kernel http://10.0.0.1:8080/images/rescue/vmlinuz" in text
    assert "root=live:http://10.0.0.1:8080/images/rescue/root.squashfs" in text
    client = await aiohttp_client(service(inventory, unknown_host="profile:nosuch").app())
    text = await script(client, UNKNOWN)
    assert "default profile nosuch (http.unknown_host) does not exist" in text
    assert text.endswith("exit\n")
    # a known host is not touched by the default
    await inventory.put("host", HOST, boot_mode="local")
    assert "booting from the local disk" in await script(client, HOST)


async def test_group_profile_and_kernel_args_reach_the_script(inventory, aiohttp_client):
    await profiles(inventory)
    await inventory.put("host", HOST, tags="rack1", ip="10.0.0.40")
    await inventory.put("group", "rack1", **{"match.tags": "rack1", "profile": "debian12",
                                             "kernel_args": "console=ttyS0,115200"})
    client = await aiohttp_client(service(inventory).app())
    text = await script(client, HOST)
    kernel = next(line for line in text.splitlines() if line.startswith("kernel "))
    assert kernel == ("kernel http://10.0.0.1:8080/images/debian12/linux initrd=initrd.gz "
                      f"auto=true url=http://10.0.0.1:8080/install/{HOST}/preseed.cfg "
                      "console=ttyS0,115200 || goto failed")
    # the host's own kernel_args replace the group's; its own kernel the profile's
    await inventory.put("host", HOST, tags="rack1", ip="10.0.0.40",
                        kernel_args="console=tty0 net.ifnames=0", kernel="custom/vmlinuz")
    text = await script(client, HOST)
    kernel = next(line for line in text.splitlines() if line.startswith("kernel "))
    assert kernel.startswith("kernel http://10.0.0.1:8080/images/custom/vmlinuz ")
    assert kernel.endswith("preseed.cfg console=tty0 net.ifnames=0 || goto failed")


async def wait_for(predicate, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await predicate()
        if found:
            return found
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_rescue_boots_once_then_the_usual_boot(inventory, aiohttp_client):
    await profiles(inventory)
    await inventory.put("host", HOST, profile="debian12", boot_mode="local",
                        once_profile="rescue")
    client = await aiohttp_client(service(inventory).app())
    text = await script(client, HOST)
    assert "root=live:http://10.0.0.1:8080/images/rescue/root.squashfs" in text
    key = f"bootyard:host:{HOST}"

    async def cleared():
        return await inventory.client.hget(key, "once_profile") is None
    await wait_for(cleared)
    assert await inventory.client.hgetall(key) == {"profile": "debian12", "boot_mode": "local"}
    served = await inventory.events_of("http.once_served", HOST)
    assert [e.fields["profile"] for e in served] == ["rescue"]
    entries = await inventory.client.xrange("bootyard:audit")
    assert [e[1]["who"] for e in entries if e[1]["key"] == key][-1] == "http:once-served"
    await inventory.cache.refresh()
    assert "booting from the local disk" in await script(client, HOST)


@pytest.fixture
async def api(inventory, aiohttp_client):
    app = AdminApi(inventory.store, inventory.events, TOKEN, SECRET, "http://10.0.0.1:8080",
                   leases=Leases(inventory.client)).app()
    return await aiohttp_client(app, headers={"Authorization": f"Bearer {TOKEN}"})


async def test_api_effective_reinstall_and_rescue(api, inventory):
    await profiles(inventory)
    await inventory.put("host", HOST, tags="rack1", boot_mode="local")
    resp = await api.post("/api/v1/groups", json={"id": "rack1", "match": {"tags": "rack1"},
                                                  "profile": "debian12",
                                                  "options": {"ntp-servers": "10.0.0.1"}})
    assert resp.status == 201, await resp.text()
    found = await (await api.get(f"/api/v1/hosts/{HOST}?effective=1")).json()
    assert found["profile"] == {"value": "debian12", "source": "group:rack1"}
    assert found["options"] == {"ntp-servers": {"value": "10.0.0.1", "source": "group:rack1"}}
    assert found["boot_mode"] == {"value": "local", "source": "host"}
    resp = await api.post(f"/api/v1/hosts/{HOST}/reinstall", json={})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["fields"]["boot_mode"] == "install"
    resp = await api.post(f"/api/v1/hosts/{HOST}/rescue", json={"profile": "debian12"})
    assert resp.status == 422  # debian12 has no root_image: it cannot boot live
    assert "no root_image" in json.dumps(await resp.json())
    resp = await api.post(f"/api/v1/hosts/{HOST}/rescue?dry_run=yes",
                          json={"profile": "rescue"})
    assert (await resp.json())["dry_run"] is True
    assert await inventory.client.hget(f"bootyard:host:{HOST}", "once_profile") is None
    resp = await api.post(f"/api/v1/hosts/{HOST}/rescue", json={"profile": "rescue"})
    assert resp.status == 200
    assert (await resp.json())["fields"]["once_profile"] == "rescue"
    resp = await api.delete(f"/api/v1/hosts/{HOST}/rescue")
    assert resp.status == 200 and "once_profile" not in (await resp.json())["fields"]
    history = await (await api.get(f"/api/v1/history?host={HOST}")).json()
    assert {e["who"].split("@")[0] for e in history} == {"api:admin"}
    assert len(history) == 3  # reinstall, rescue, cancel
