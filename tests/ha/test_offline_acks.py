"""A reserved host acknowledged from the inventory cache while Redis was down (the DHCP
service's degraded mode) has its lease written as soon as Redis answers again, before any new
step (the lab test tests/ha/test_outage_under_load.py shows it with the real service)."""

from __future__ import annotations

import time

import pytest

from shared import leases
from shared.leases import LeaseStore
from shared.store import InventoryUnavailable

SUBNET, RESERVED, MAC = "lab", "198.18.0.105", "52:54:00:00:00:05"


async def test_reserved_ack_while_redis_down_is_written_when_it_is_back(private_redis):
    client = leases.connect(private_redis.url, timeout=0.5)
    store = LeaseStore(client)
    await store.sync_pool(SUBNET, (("198.18.0.100", "198.18.0.109"),), reserved=[RESERVED])
    now = int(time.time())
    private_redis.kill()
    request = store.request_step(SUBNET, MAC, RESERVED, reserved=RESERVED, hostname="web1",
                                 lease_time=600, now=now)
    with pytest.raises(InventoryUnavailable):
        await store.run([request])
    store.acked_offline(request, RESERVED)  # what the service does when it ACKs from the cache
    store.acked_offline(request, RESERVED)  # renewed meanwhile: still one write
    private_redis.start()
    other = await store.step(store.offer_step(SUBNET, "52:54:00:00:00:09", reserved=None,
                                              requested=None, hostname="", now=now))
    assert other.kind == "ok" and other.ip != RESERVED
    assert store.replayed == 1
    raw = await client.hgetall(f"bootyard:lease:{RESERVED}")
    assert raw["mac"] == MAC and raw["state"] == "bound" and raw["expires"] == str(now + 600)
    assert raw["hostname"] == "web1"
    await client.aclose()
