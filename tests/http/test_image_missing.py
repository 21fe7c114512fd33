"""A 404 under /images/ leaves an ``http.file`` event with ``result=not_found`` (in the host's
timeline when its address says who it is: reserved, else its lease; else in the global stream)
and a warning line within a log budget (shared/logbudget.py), with one summary of what was held
back; the host's boot state shows it stuck on the missing file."""

from __future__ import annotations

import time

from httpkit import make_service

from harness.waiting import wait_until
from shared import keys
from shared.bootstate import boot_state
from shared.logbudget import LogBudget

POOL_MAC = "52:54:00:12:34:58"


async def test_a_missing_image_is_an_event_in_the_hosts_timeline(inventory, aiohttp_client,
                                                                 caplog):
    await inventory.put("profile", "debian", kernel="debian/linux", initrd="debian/initrd.gz",
                        install="none")
    await inventory.put("host", POOL_MAC, profile="debian")  # no ip: a pool address
    await inventory.client.hset(keys.lease("127.0.0.1"), mapping={
        "mac": POOL_MAC, "client": POOL_MAC, "state": "bound", "subnet": "lab", "hostname": "",
        "expires": str(int(time.time()) + 600)})
    (inventory.tmp / "images" / "debian").mkdir()
    (inventory.tmp / "images" / "debian" / "linux").write_bytes(b"k" * 100)
    http = await aiohttp_client(make_service(inventory).app())
    with caplog.at_level("WARNING", logger="bootyard.http"):
        assert (await http.get("/images/debian/linux")).status == 200
        # (each event waits for its lease read: the kernel's first, as a booting host's are)
        await wait_until(lambda: inventory.events_of("http.file", POOL_MAC), 10, "the first")
        assert (await http.get("/images/debian/initrd.gz")).status == 404

        async def events():
            found = await inventory.events_of("http.file", POOL_MAC)
            return found if len(found) == 2 else None
        await wait_until(events, 10, "both http.file events of the host")
        by_path = {e.fields["path"]: e for e in await events()}
        kernel, initrd = by_path["/images/debian/linux"], by_path["/images/debian/initrd.gz"]
    assert (kernel.fields["status"], kernel.fields.get("result")) == ("200", None)
    assert (initrd.fields["status"], initrd.fields["result"]) == ("404", "not_found")
    lines = [r for r in caplog.records if r.getMessage() == "image_not_found"]
    assert len(lines) == 1 and lines[0].fields["path"] == "/images/debian/initrd.gz"
    # the host's boot state: stuck at the kernel, for the initrd it could not fetch
    state = boot_state(POOL_MAC, await inventory.events_of(None, POOL_MAC), time.time() + 3600,
                       host=inventory.cache.host(POOL_MAC),
                       profile=inventory.cache.profile("debian"))
    assert state.state == "stuck", state
    assert "asked HTTP for /images/debian/initrd.gz: not found" in state.reason, state


async def test_missing_images_past_the_budget_are_summed_up(inventory, aiohttp_client, caplog):
    service = make_service(inventory)
    service.file_events._missing = LogBudget(burst=3, interval=0.5)
    http = await aiohttp_client(service.app())
    with caplog.at_level("WARNING", logger="bootyard.http"):
        for i in range(12):  # an unknown address: events in the global stream only
            assert (await http.get(f"/images/nope{i}")).status == 404
        await wait_until(lambda: any(r.getMessage() == "image_not_found_summary"
                                     for r in caplog.records), 10, "the summary line")
    names = [r.getMessage() for r in caplog.records if r.name == "bootyard.http"]
    assert names.count("image_not_found") == 3
    summary = next(r for r in caplog.records if r.getMessage() == "image_not_found_summary")
    assert summary.fields["held"] == 9 and summary.fields["reasons"] == "not_found:9"

    async def global_events():
        found = [e for e in await inventory.events_of("http.file", None)
                 if e.fields.get("result") == "not_found"]
        return found if len(found) == 12 else None
    await wait_until(global_events, 10, "12 not_found events in the global stream")
    found = await global_events()
    assert all(e.mac in (None, "") for e in found)
