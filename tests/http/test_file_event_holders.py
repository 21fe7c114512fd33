"""Whose file fetch it is, without a lease read: the board follows the event stream, and a
``dhcp.ack`` it reads names the holder of that address for the next seconds' ``http.file``
events (a boot storm's kernels and initrds); a release forgets it (services/http/fileevents.py).
No lease is written here, so the MAC an event names can only come from the followed ack."""

from __future__ import annotations

import asyncio

from httpkit import MAC, make_service

from harness.waiting import wait_until
from services.http.board import Board
from shared.events import EventLog


async def test_a_followed_dhcp_ack_names_who_fetched_a_file(inventory, aiohttp_client):
    await inventory.put("profile", "debian", kernel="vmlinuz", initrd="initrd.gz")
    await inventory.put("host", MAC, profile="debian")  # no reserved address
    (inventory.tmp / "images" / "vmlinuz").write_bytes(b"k" * 100_000)
    boot = make_service(inventory)
    holders = boot.file_events._holders
    board = Board(inventory.events, inventory.cache, on_event=boot.file_events.seen)
    stop = asyncio.Event()
    task = asyncio.create_task(board.run(stop))
    try:
        await asyncio.wait_for(board.loaded.wait(), 10)
        client = await aiohttp_client(boot.app())
        dhcp = EventLog(inventory.client, "dhcp", known=inventory.cache.knows_host)
        dhcp.emit("dhcp.ack", MAC, ip="127.0.0.1", subnet="lab", boot_file="http://x/boot",
                  boot_reason="ipxe-script")
        await dhcp.flush()
        await wait_until(lambda: "127.0.0.1" in holders, 10, "the board followed the ack")

        async def fetched_by() -> list:
            resp = await client.get("/images/vmlinuz")
            assert resp.status == 200 and len(await resp.read()) == 100_000
            await asyncio.sleep(0)  # (a lease read, if any, is a task)
            await asyncio.gather(*boot.file_events._lookups)
            return [e.mac for e in await inventory.events_of("http.file")]

        assert await fetched_by() == [MAC]
        dhcp.emit("dhcp.release", MAC, ip="127.0.0.1", subnet="lab", result="released")
        await dhcp.flush()
        await wait_until(lambda: "127.0.0.1" not in holders, 10, "the board followed the release")
        assert await fetched_by() == [MAC, None]  # now its lease says: there is none
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
