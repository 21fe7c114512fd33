"""The audit trail: changes made with redis-cli are recorded as "direct" by a service's cache,
once however many workers see them; our own writes are recorded once, by their writer."""

import asyncio
import subprocess

from harness.waiting import wait_until
from shared import audit, inventory
from shared.cache import InventoryCache
from shared.schema import KINDS
from shared.store import InventoryStore, connect

MAC = "52:54:00:12:34:56"
KEY = f"bootyard:host:{MAC}"


def redis_cli(port, *args):
    subprocess.run(["redis-cli", "-p", str(port), *args], check=True, capture_output=True)


async def test_direct_changes_are_recorded_once_and_ours_are_not_recorded_twice(
        redis_server, redis_url):
    redis_cli(redis_server.port, "HSET", KEY, "hostname", "web1")  # before: not a change
    client = connect(redis_url)
    stop = asyncio.Event()
    # two workers of the HTTP service, each with its cache and recorder
    caches = [InventoryCache(client, on_raw=audit.DirectRecorder(client).seen)
              for _ in range(2)]
    tasks = [asyncio.create_task(c.run(stop)) for c in caches]
    try:
        for cache in caches:
            await cache.wait_ready(10)
        assert await audit.history(client) == []
        redis_cli(redis_server.port, "HSET", KEY, "boot_mode", "install")

        async def entries():
            return await audit.history(client, KEY)
        await wait_until(entries, what="the direct change recorded")
        # ours: recorded by the writer in its transaction; the caches see it and add nothing
        store = InventoryStore(client, redis_url)
        await inventory.write_object(store, KINDS["host"], MAC, {"hostname": "web2"},
                                     mode="set", record=audit.recorder("alice@deploy1"))
        await wait_until(lambda: all(c.host(MAC).hostname == "web2" for c in caches),
                         what="both caches saw our write")
        redis_cli(redis_server.port, "DEL", KEY)

        async def three():
            return len(await entries()) >= 3
        await wait_until(three, what="the delete recorded")
        await wait_until(lambda: all(c.host(MAC) is None for c in caches),
                         what="both caches saw the delete")
        found = await entries()
        assert [(e.who, e.op) for e in found] == [("direct", "set"), ("alice@deploy1", "set"),
                                                  ("direct", "delete")]
        assert found[0].before == {"hostname": "web1"}
        assert found[0].after == {"hostname": "web1", "boot_mode": "install"}
        assert found[2].before == {"hostname": "web2", "boot_mode": "install"}
        assert found[2].after == {}
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.aclose()


async def test_a_big_import_is_not_recorded_again_as_direct(redis_server, redis_url):
    client = connect(redis_url)
    stop = asyncio.Event()
    cache = InventoryCache(client, on_raw=audit.DirectRecorder(client).seen)
    task = asyncio.create_task(cache.run(stop))
    try:
        await cache.wait_ready(10)
        store = InventoryStore(client, redis_url)
        dump = {name: {} for name in KINDS}
        dump["host"] = {f"52:54:00:00:{i // 256:02x}:{i % 256:02x}": {"hostname": f"h{i}"}
                        for i in range(800)}
        await inventory.import_dump(store, dump, replace=False,
                                    record=audit.recorder("alice@deploy1"))
        await wait_until(lambda: len(cache.hosts()) == 800, what="the cache saw the import")
        redis_cli(redis_server.port, "HSET", KEY, "hostname", "last")  # a marker, direct

        async def marker():
            return await audit.history(client, KEY)
        await wait_until(marker, what="the direct change recorded")
        entries = await audit.history(client, count=10_000)
        assert len(entries) == 801
        assert {e.who for e in entries[:800]} == {"alice@deploy1"}
        assert entries[800].who == "direct"
    finally:
        stop.set()
        await task
        await client.aclose()
