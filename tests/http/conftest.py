"""Fixtures for the HTTP service: a real Redis inventory and the boot app on aiohttp's client."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import pytest

from services.http.access import Access
from services.http.render import Renderer
from services.http.server import BootService
from services.http.settings import HttpSection
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.schema import KINDS
from shared.store import InventoryStore, connect

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789"
MAC = "52:54:00:12:34:56"


class Inventory:
    """The inventory a test builds, and the running service pieces around it."""

    def __init__(self, client, store, cache, events, cfg, tmp: Path) -> None:
        self.client, self.store, self.cache, self.events = client, store, cache, events
        self.cfg, self.tmp = cfg, tmp

    async def put(self, kind_name: str, ident: str, **fields) -> None:
        await self.store.write(KINDS[kind_name], ident, {k: str(v) for k, v in fields.items()},
                               mode="replace")
        await self.cache.refresh()

    async def events_of(self, kind: str | None = None, mac: str | None = None) -> list:
        await self.events.flush()
        found = await self.events.read(mac, count=1000)
        return [e for e in found if kind is None or e.kind == kind]


@pytest.fixture
async def inventory(redis_url, tmp_path):
    client = connect(redis_url)
    store = InventoryStore(client, redis_url)
    cache = InventoryCache(client, service="http")
    events = EventLog(client, "http")
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    await cache.wait_ready(10)
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    (tmp_path / "images").mkdir()
    (tmp_path / "mirror").mkdir()
    cfg = HttpSection(templates_dir=str(templates), images_root=str(tmp_path / "images"),
                      mirror_root=str(tmp_path / "mirror"), token_secret=SECRET,
                      public_url="http://10.0.0.1:8080", san_server="10.0.0.1")
    inv = Inventory(client, store, cache, events, cfg, tmp_path)
    yield inv
    stop.set()
    await task
    await client.aclose()


def make_service(inv: Inventory, **overrides) -> BootService:
    cfg = dataclasses.replace(inv.cfg, **overrides)
    return BootService(cfg, inv.cache, inv.events, inv.store, Renderer(cfg.templates_dir),
                       Access(cfg.token_secret, inv.cache, inv.client))


@pytest.fixture
async def http(inventory, aiohttp_client):
    return await aiohttp_client(make_service(inventory).app())
