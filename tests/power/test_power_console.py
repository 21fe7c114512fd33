"""The console's power buttons in a real browser (Debian's headless Chromium over WebDriver):
log in, open a Redfish machine's page, press Power on and Power off; the QEMU machine behind the
Redfish mock starts and stops, the page shows the result and the power events arrive in its live
timeline."""

from __future__ import annotations

import asyncio

import pytest
from powerkit import MAC, wait_vm

from harness.webdriver import Browser
from services.http.adminapi import AdminApi
from services.http.board import Board
from services.http.console import Console
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.powerctl import PowerSection
from shared.store import InventoryStore, connect

pytestmark = [pytest.mark.slow]
TOKEN = "console-token-0123456789"


@pytest.fixture
async def admin(redis_url, aiohttp_server):
    client = connect(redis_url)
    cache = InventoryCache(client, service="http")
    events = EventLog(client, "http", known=cache.knows_host)
    board = Board(events, cache)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(cache.run(stop)), asyncio.create_task(events.run(stop)),
             asyncio.create_task(board.run(stop))]
    await cache.wait_ready(10)
    app = AdminApi(InventoryStore(client, redis_url), events, TOKEN, "x" * 32,
                   leases=Leases(client), board=board, console=Console(TOKEN),
                   power=PowerSection(timeout=30)).app()
    server = await aiohttp_server(app, host="127.0.0.1")
    yield f"http://127.0.0.1:{server.port}", client
    stop.set()
    await asyncio.gather(*tasks)
    await client.aclose()


async def test_power_buttons_on_the_machine_page(admin, redfish_bmc):
    base, client = admin
    bmc = redfish_bmc(allow="On,ForceOff,ForceRestart")
    await client.hset(f"bootyard:host:{MAC}", mapping={
        "hostname": "node7", "boot_mode": "local", "power": "redfish",
        "power_address": bmc.address, "power_user": bmc.user, "power_secret": bmc.password})

    def drive() -> None:
        browser = Browser()
        try:
            browser.get(base + "/console/")
            browser.type("#token", TOKEN)
            browser.click("#login")
            browser.wait("return location.pathname === '/console/'", what="logged in")
            browser.get(f"{base}/console/machines/{MAC}")
            browser.wait("return document.querySelector('#record tr') !== null",
                         what="the record shown")
            assert bmc.password not in browser.text("#record")
            assert "********" in browser.text("#record")
            browser.click('button[data-power="on"]')
            browser.wait("return document.getElementById('power-result').textContent"
                         ".startsWith('on: ok (redfish)')", 60, "the power-on result")
            assert browser.text("#power-state") == "on"
            wait_vm(bmc.vm.running, "the VM powered on from the console")
            browser.wait("return [...document.querySelectorAll('#events tr')]"
                         ".some(r => r.dataset.kind === 'power.result')", 30,
                         "the power.result event in the live timeline")
            browser.click('button[data-power="off"]')
            browser.wait("return document.getElementById('power-result').textContent"
                         ".startsWith('off: ok (redfish)')", 60, "the power-off result")
            wait_vm(lambda: not bmc.vm.running(), "the VM powered off from the console")
        finally:
            browser.close()

    await asyncio.to_thread(drive)
    history = [e for _i, e in await client.xrange("bootyard:audit") if e.get("op") == "power"]
    assert [e["who"] for e in history] == ["api:console@127.0.0.1"] * 2
