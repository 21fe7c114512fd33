"""The hosts' boot states in the HTTP service (services/http/board.py): read from the real event
streams (loaded, then followed), served by the admin API, counted in the metrics. A fake clock
makes a boot stuck without waiting."""

from __future__ import annotations

import asyncio
import time

import pytest
from httpkit import MAC, SECRET

from harness.waiting import wait_until
from services.http import metrics as m
from services.http.adminapi import AdminApi
from services.http.board import Board
from shared.events import EventLog
from shared.leases import Leases

TOKEN = "t0ken"
OTHER = "52:54:00:12:34:57"


@pytest.fixture
async def board(inventory):
    await inventory.put("profile", "debian", kernel="debian/vmlinuz", initrd="debian/initrd.gz",
                        install="preseed")
    await inventory.put("host", MAC, ip="10.0.0.21", profile="debian")
    await inventory.put("host", OTHER, ip="10.0.0.22", profile="debian")
    clock = {"now": time.time()}
    made = Board(inventory.events, inventory.cache, clock=lambda: clock["now"])
    made.clock = clock
    yield made


async def test_states_from_loaded_and_followed_events_in_the_api_and_metrics(
        board, inventory, aiohttp_client):
    dhcp = EventLog(inventory.client, "dhcp", known=inventory.cache.knows_host)
    tftp = EventLog(inventory.client, "tftp", known=inventory.cache.knows_host)
    dhcp.emit("dhcp.offer", MAC, ip="10.0.0.21", boot_file="undionly.kpxe", boot_reason="bios")
    dhcp.emit("dhcp.ack", MAC, ip="10.0.0.21", boot_file="undionly.kpxe", boot_reason="bios")
    await dhcp.flush()  # before the board starts: loaded from the host's stream
    stop = asyncio.Event()
    task = asyncio.create_task(board.run(stop))
    try:
        await asyncio.wait_for(board.loaded.wait(), 10)
        tftp.emit("tftp.transfer", MAC, ip="10.0.0.21", file="undionly.kpxe",
                  result="tsize_probe")
        tftp.emit("tftp.transfer", MAC, ip="10.0.0.21", file="undionly.kpxe",
                  result="not_found", detail="no such file")
        await tftp.flush()  # after: followed from the global stream
        await wait_until(lambda: len(board._events.get(MAC, ())) == 4, 10,
                         "the board read the TFTP events")
        assert board.state(MAC).state == "progressing"

        board.clock["now"] += 120  # past the 30 s a bound host has to fetch its loader
        app = AdminApi(inventory.store, inventory.events, TOKEN, SECRET,
                       leases=Leases(inventory.client), board=board).app()
        api = await aiohttp_client(app, headers={"Authorization": f"Bearer {TOKEN}"})
        resp = await api.get(f"/api/v1/hosts/{MAC.replace(':', '-')}/state")
        assert resp.status == 200
        got = await resp.json()
        assert (got["state"], got["stage"], got["reason_code"]) == (
            "stuck", "bound", "tftp_not_found")
        assert got["reason"].startswith("asked TFTP for undionly.kpxe: not found")
        assert [s["stage"] for s in got["attempt"]["stages"]] == ["dhcp", "offered", "bound"]

        timeline = await (await api.get(f"/api/v1/events?host={MAC}")).json()
        assert {e["attempt"] for e in timeline} == {got["attempt"]["id"]}
        assert len(timeline) == 4

        stuck = await (await api.get("/api/v1/states?state=stuck")).json()
        assert list(stuck) == [MAC]
        every = await (await api.get("/api/v1/states")).json()
        assert every[OTHER]["state"] == "idle"
        assert (await api.get("/api/v1/states?state=lost")).status == 400
        assert (await api.get("/api/v1/hosts/52:54:00:99:99:99/state")).status == 404

        assert m.BOOT_STUCK.labels("tftp_not_found")._value.get() == 1
        assert m.BOOT_HOSTS.labels("stuck", "bound")._value.get() == 1
        assert m.BOOT_HOSTS.labels("idle", "none")._value.get() == 1
        assert m.BOOT_STUCK.labels("offer_not_requested")._value.get() == 0

        # it moves on: the loader fetched, a state recomputed from the new event
        board.clock["now"] = time.time() + 1
        tftp.emit("tftp.transfer", MAC, ip="10.0.0.21", file="undionly.kpxe", result="ok")
        await tftp.flush()
        await wait_until(lambda: board.state(MAC).stage == "loader", 10,
                         "the board saw the loader fetched")
        assert board.state(MAC).state == "progressing"
        board.refresh()
        assert m.BOOT_STUCK.labels("tftp_not_found")._value.get() == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_pool_hosts_downloads_carry_its_mac_from_its_lease(inventory, aiohttp_client):
    """A host without a reserved address fetches its kernel from its leased address: the
    http.file event names it (its boot state needs the kernel and initrd stages)."""
    import time as clock

    from httpkit import make_service

    from shared import keys
    await inventory.put("host", OTHER, profile="debian")  # no ip: a pool address
    (inventory.tmp / "images" / "vmlinuz").write_bytes(b"k" * 100)
    await inventory.client.hset(keys.lease("127.0.0.1"), mapping={
        "mac": OTHER, "client": OTHER, "state": "bound", "subnet": "lab", "hostname": "",
        "expires": str(int(clock.time()) + 600)})
    http = await aiohttp_client(make_service(inventory).app())
    assert (await http.get("/images/vmlinuz")).status == 200

    async def fetched():
        return await inventory.events_of("http.file", OTHER)
    await wait_until(fetched, 10, "the http.file event with the lease's MAC")
    (event,) = await fetched()
    assert event.mac == OTHER and event.fields["path"] == "/images/vmlinuz"
