"""Fleet features through the TFTP service, on a real Redis: a host's group gives it its
profile and kernel arguments in PXELINUX, an unknown MAC under ``profile:<name>`` boots that
profile, and a one-shot (rescue) boot is cleared once its config was served."""

from __future__ import annotations

import asyncio

import pytest
from tftp_rawclient import RawClient

from services.tftp.server import TftpServer
from services.tftp.settings import TftpSection
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.store import InventoryStore, connect

MAC = "52:54:00:ab:cd:01"
UNKNOWN = "52:54:00:ab:cd:99"


@pytest.fixture
async def stack(redis_url, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    client = connect(redis_url)
    cache = InventoryCache(client, service="tftp")
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    await cache.wait_ready(10)
    store = InventoryStore(client, redis_url)
    events = EventLog(client, "tftp", known=cache.knows_host)
    yield root, client, cache, store, events
    stop.set()
    await task
    await client.aclose()


async def put(client, cache, key, **fields):
    await client.hset(key, mapping=fields)
    await cache.refresh()


async def serve(root, cache, store, events, **settings):
    srv = TftpServer(TftpSection(root=str(root), bind="127.0.0.1", port=0, **settings), cache,
                     events=events, store=store)
    return srv, await srv.start()


def pxelinux(mac: str) -> str:
    return "pxelinux.cfg/01-" + mac.replace(":", "-")


async def test_group_one_shot_and_default_profile_over_tftp(stack):
    root, client, cache, store, events = stack
    await put(client, cache, "bootyard:profile:debian12", kernel="debian12/linux",
              initrd="debian12/initrd.gz")
    await put(client, cache, "bootyard:profile:rescue", kernel="rescue/vmlinuz",
              root_image="http://198.18.0.1:8080/images/rescue/root.squashfs")
    await put(client, cache, "bootyard:group:rack1", **{"match.tags": "rack1",
                                                        "profile": "debian12",
                                                        "kernel_args": "console=ttyS0"})
    await put(client, cache, f"bootyard:host:{MAC}", tags="rack1", boot_mode="install")
    raw = RawClient()
    srv, address = await serve(root, cache, store, events, unknown_host="profile:rescue")
    try:
        data, _, _ = await raw.fetch(address, pxelinux(MAC))
        assert b"KERNEL /images/debian12/linux" in data and b"console=ttyS0" in data
        # an unknown MAC under profile:rescue gets the rescue config
        data, _, _ = await raw.fetch(address, pxelinux(UNKNOWN))
        assert b"KERNEL /images/rescue/vmlinuz" in data and b"root=live:" in data
        # a one-shot boot: served once, then cleared (history and timeline say so)
        await put(client, cache, f"bootyard:host:{MAC}", once_profile="rescue")
        data, _, _ = await raw.fetch(address, pxelinux(MAC))
        assert b"KERNEL /images/rescue/vmlinuz" in data and b"console=ttyS0" in data
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await client.hget(f"bootyard:host:{MAC}", "once_profile") is not None:
            assert loop.time() < deadline, "one-shot not cleared"
            await asyncio.sleep(0.05)
        last = (await client.xrevrange("bootyard:audit", count=1))[0][1]
        assert last["who"] == "tftp:once-served" and last["key"] == f"bootyard:host:{MAC}"
        await events.flush()
        found = [e for e in await events.read(MAC, count=100) if e.kind == "tftp.once_served"]
        assert [e.fields["profile"] for e in found] == ["rescue"]
        await cache.refresh()
        data, _, _ = await raw.fetch(address, pxelinux(MAC))
        assert b"KERNEL /images/debian12/linux" in data
    finally:
        raw.close()
        await srv.close()
