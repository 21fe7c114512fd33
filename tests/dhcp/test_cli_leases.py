"""``bootyard leases`` lists what the lease store wrote."""

from __future__ import annotations

import io
import json
import time

from cli import commands as cli
from shared import leases
from shared.leases import LeaseStore


async def test_bootyard_leases_lists_current_leases(redis_url):
    client = leases.connect(redis_url)
    store = LeaseStore(client)
    await store.sync_pool("lab", (("198.18.0.10", "198.18.0.12"),))
    now = int(time.time())
    for n, mac in enumerate(("52:54:00:00:00:01", "52:54:00:00:00:02")):
        offer = await store.step(store.offer_step("lab", mac, reserved=None, requested=None,
                                                  hostname="", now=now))
        if n == 0:
            await store.step(store.request_step("lab", mac, offer.ip, reserved=None,
                                                hostname="web1", lease_time=600, now=now))
    await client.aclose()

    async def run(*argv):
        out = io.StringIO()
        assert await cli.run(cli.build_parser().parse_args(list(argv)), redis_url, out) == 0
        return out.getvalue()

    text = await run("leases")
    lines = text.splitlines()
    assert lines[0].split() == ["IP", "MAC", "STATE", "EXPIRES", "SUBNET", "HOSTNAME"]
    assert len(lines) == 2 and "52:54:00:00:00:01" in lines[1] and "web1" in lines[1]
    assert "bound" in lines[1]
    everything = json.loads(await run("leases", "--all", "--json"))
    assert {(r["mac"], r["state"], r["current"]) for r in everything} == {
        ("52:54:00:00:00:01", "bound", True), ("52:54:00:00:00:02", "offered", False)}
