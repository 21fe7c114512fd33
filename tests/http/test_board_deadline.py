"""The board's periodic refresh (the boot metrics) recomputes a progressing host with no new
events only once its stage's time has run out: a rack booting at once is a thousand progressing
hosts. The host still turns stuck at the first refresh after its time ran out, as before."""

from __future__ import annotations

import asyncio
import time

import pytest
from httpkit import MAC

from services.http import metrics as m
from services.http.board import Board
from shared.events import EventLog


@pytest.fixture
async def board(inventory):
    await inventory.put("profile", "debian", kernel="debian/vmlinuz", initrd="debian/initrd.gz",
                        install="preseed")
    await inventory.put("host", MAC, ip="10.0.0.21", profile="debian")
    clock = {"now": time.time()}
    made = Board(inventory.events, inventory.cache, clock=lambda: clock["now"])
    made.clock = clock
    yield made


async def test_a_progressing_host_is_recomputed_when_its_time_runs_out(board, inventory):
    dhcp = EventLog(inventory.client, "dhcp", known=inventory.cache.knows_host)
    dhcp.emit("dhcp.offer", MAC, ip="10.0.0.21", boot_file="undionly.kpxe", boot_reason="bios")
    dhcp.emit("dhcp.ack", MAC, ip="10.0.0.21", boot_file="undionly.kpxe", boot_reason="bios")
    await dhcp.flush()
    stop = asyncio.Event()
    task = asyncio.create_task(board.run(stop))
    try:
        await asyncio.wait_for(board.loaded.wait(), 10)
        computed = []
        compute = board._compute
        board._compute = lambda mac, now: computed.append(mac) or compute(mac, now)
        first = board.refresh(every_progressing=False)[MAC]
        assert (first.state, first.stage) == ("progressing", "bound")
        assert computed == [MAC]  # new events: computed

        board.clock["now"] += 10  # within the 30 s a bound host has to fetch its loader
        assert board.refresh(every_progressing=False)[MAC] is first
        assert computed == [MAC]
        assert m.BOOT_HOSTS.labels("progressing", "bound")._value.get() == 1
        board.refresh()  # what the API asks: every progressing host, its stage timed to now
        assert computed == [MAC, MAC]

        board.clock["now"] += 60  # past it
        late = board.refresh(every_progressing=False)[MAC]
        assert (late.state, late.stage) == ("stuck", "bound")
        assert m.BOOT_HOSTS.labels("stuck", "bound")._value.get() == 1
        assert m.BOOT_HOSTS.labels("progressing", "bound")._value.get() == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
