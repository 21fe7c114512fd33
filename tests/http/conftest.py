"""Fixtures for the HTTP service tests (helpers live in httpkit.py)."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from httpkit import REPO, SECRET, Inventory, ServiceProcess, make_service

from services.http.settings import HttpSection
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.store import InventoryStore, connect


@pytest.fixture
async def inventory(redis_url, tmp_path):
    client = connect(redis_url)
    store = InventoryStore(client, redis_url)
    cache = InventoryCache(client, service="http")
    events = EventLog(client, "http", known=cache.knows_host)  # as the service has it
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


@pytest.fixture
async def http(inventory, aiohttp_client):
    return await aiohttp_client(make_service(inventory).app())


@pytest.fixture
def service_process(redis_url, tmp_path):
    proc = ServiceProcess(tmp_path, redis_url)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def console(redis_url, tmp_path):
    """The HTTP service as a process and a headless Chromium (the console's browser tests)."""
    from harness.webdriver import Browser

    proc = ServiceProcess(tmp_path, redis_url)
    proc.start()
    browser = Browser()
    yield proc, browser
    browser.close()
    proc.stop()
