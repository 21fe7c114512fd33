"""The global event stream stays near its cap when the lease function writes the events: it
trims (MAXLEN ~) with the first event of each batch only (docs/benchmarks.md, DHCP, eighth
round), so the stream is at most about a batch's events and one stream node over the cap."""

from __future__ import annotations

import time

from harness.dhcpkit import lease_store
from shared import events, keys

SUBNET = "cap"
RANGES = (("198.18.9.1", "198.18.9.200"),)
NODE = 100  # Redis's stream-node-max-entries (default): ~ trims whole nodes only


def mac(n: int) -> str:
    return f"52:54:00:09:{n >> 8:02x}:{n & 0xff:02x}"


async def test_a_full_global_stream_stays_near_its_cap(redis_url):
    async with lease_store(redis_url, SUBNET, RANGES) as store:
        client = store.redis
        filler = {"ts": "1.000", "service": "test", "kind": "test.fill"}
        for _ in range(0, events.GLOBAL_MAXLEN + 500, 5000):  # over the cap
            pipe = client.pipeline(transaction=False)
            for _n in range(5000):
                pipe.xadd(keys.EVENTS_STREAM, filler)
            await pipe.execute()
        assert await client.xlen(keys.EVENTS_STREAM) > events.GLOBAL_MAXLEN + NODE
        now = int(time.time())
        event = ("eth0", "", "", False)
        for batch in range(4):  # 4 batches of 32 offers: 128 events
            steps = [store.offer_step(SUBNET, mac(batch * 32 + i), reserved=None, requested=None,
                                      hostname="", now=now, event=event)
                     for i in range(32)]
            outcomes = await store.run(steps)
            assert [o.kind for o in outcomes] == ["ok"] * 32
            length = await client.xlen(keys.EVENTS_STREAM)
            assert events.GLOBAL_MAXLEN <= length <= events.GLOBAL_MAXLEN + NODE + 32, length
        newest = await client.xrevrange(keys.EVENTS_STREAM, count=128)
        assert {e[1]["mac"] for e in newest} == {mac(n) for n in range(128)}
        assert all(e[1]["kind"] == "dhcp.offer" for e in newest)
