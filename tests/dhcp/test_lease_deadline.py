"""A lease batch Redis does not answer fails within the connection's timeout, as Redis being
unreachable (InventoryUnavailable: the service answers reserved hosts from its cache), and the
next batch after Redis answers again runs on a new connection; a cancellation from outside
stays a cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import leases
from shared.leases import LeaseStore
from shared.store import InventoryUnavailable

SUBNET = "lab"
RANGES = (("198.18.0.100", "198.18.0.103"),)


def offer(s: LeaseStore, n: int):
    return s.offer_step(SUBNET, f"52:54:00:00:02:{n:02x}", reserved=None, requested=None,
                        hostname="", now=int(time.time()))


@pytest.fixture
async def clients(redis_url):
    client = leases.connect(redis_url, timeout=0.5)
    admin = leases.connect(redis_url)
    store = LeaseStore(client)
    await store.sync_pool(SUBNET, RANGES)
    yield store, admin
    await admin.execute_command("CLIENT", "UNPAUSE")
    await store.aclose()
    await client.aclose()
    await admin.aclose()


async def test_a_batch_redis_does_not_answer_fails_and_the_next_one_runs(clients):
    store, admin = clients
    assert (await store.step(offer(store, 1))).kind == "ok"  # the connection is open
    await admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
    with pytest.raises(InventoryUnavailable, match="no reply from Redis within 0.5 s"):
        await store.step(offer(store, 2))
    await admin.execute_command("CLIENT", "UNPAUSE")
    assert (await store.step(offer(store, 3))).kind == "ok"


async def test_a_cancelled_batch_is_cancelled_not_timed_out(redis_url):
    client = leases.connect(redis_url, timeout=60)  # the deadline never comes in this test
    admin = leases.connect(redis_url)
    store = LeaseStore(client)
    try:
        await store.sync_pool(SUBNET, RANGES)
        assert (await store.step(offer(store, 1))).kind == "ok"
        await admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
        task = asyncio.ensure_future(store.step(offer(store, 2)))
        await asyncio.sleep(0.05)  # lets the step reach its wait for the reply
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await store.aclose()
        await client.aclose()
        await admin.aclose()
