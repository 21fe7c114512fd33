"""Fixtures of the enlistment tests (issue 20): the HTTP boot listener in-process on the test's
Redis with discovery on, and the ``bootyard`` command."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from pathlib import Path

import pytest

from harness.clikit import cli, raw  # noqa: F401 - pytest fixtures
from services.http.access import Access
from services.http.render import Renderer
from services.http.server import BootService
from services.http.settings import DiscoverySection, HttpSection
from shared import keys
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.schema import KINDS
from shared.store import InventoryStore, connect

REPO = Path(__file__).resolve().parents[2]
class Env:
    """The test's Redis, store, cache and event log, and helpers to fill them."""

    def __init__(self, client, store, cache, events, tmp: Path) -> None:
        self.client, self.store, self.cache, self.events, self.tmp = \
            client, store, cache, events, tmp

    async def put(self, kind: str, ident: str, **fields) -> None:
        await self.store.write(KINDS[kind], ident, {k: str(v) for k, v in fields.items()},
                               mode="replace")
        await self.cache.refresh()

    async def lease(self, ip: str, mac: str, state: str = "bound") -> None:
        await self.client.hset(keys.lease(ip), mapping={
            "mac": mac, "client": mac, "state": state, "expires": str(int(time.time()) + 600),
            "subnet": "lab", "hostname": ""})

    async def events_of(self, kind: str) -> list:
        await self.events.flush()
        return [e for e in await self.events.read(None, count=1000) if e.kind == kind]


@pytest.fixture
async def env(redis_url, tmp_path):
    client = connect(redis_url)
    cache = InventoryCache(client, service="http")
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    await cache.wait_ready(10)
    yield Env(client, InventoryStore(client, redis_url), cache,
              EventLog(client, "http", known=cache.knows_host), tmp_path)
    stop.set()
    await task
    await client.aclose()


def boot_service(env: Env, **discovery) -> BootService:
    templates = env.tmp / "templates"
    if not templates.exists():
        shutil.copytree(REPO / "templates", templates)
    (env.tmp / "images").mkdir(exist_ok=True)
    cfg = HttpSection(templates_dir=str(templates), images_root=str(env.tmp / "images"),
                      mirror_root=str(env.tmp), token_secret="test-secret-0123456789",
                      public_url="http://10.0.0.1:8080", san_server="10.0.0.1")
    found = dataclasses.replace(DiscoverySection(enabled=True), **discovery)
    return BootService(cfg, env.cache, env.events, env.store, Renderer(templates),
                       Access(cfg.token_secret, env.cache, Leases(env.client)),
                       discovery_cfg=found)


@pytest.fixture
def boot(env, aiohttp_client):
    """``await boot(**discovery settings)``: a test client of the boot listener."""
    async def make(**discovery):
        return await aiohttp_client(boot_service(env, **discovery).app())
    return make


@pytest.fixture(scope="session")
def boot_assets():
    """The lab's kernel, initramfs, squashfs and boot programs (as tests/e2e has them)."""
    from lab.assets import ensure_assets
    return ensure_assets()


@pytest.fixture
def bootlab(lab, tmp_path, boot_assets):
    """``bootlab(stack)``: a lab.runner.BootLab on a fresh segment, stopped after the test."""
    from lab.runner import BootLab

    made = []

    def make(stack: str):
        boot = BootLab(lab, tmp_path / f"lab{len(made)}", stack=stack, assets=boot_assets)
        made.append(boot)
        return boot

    yield make
    for boot in made:
        boot.stop()
