"""The lease store's own connection (shared/lease_wire.py ``Replies``: redis-py connects, the store
reads the replies): a connection Redis closes makes the next batch fail as Redis unreachable
(the journal is replayed before the batch after it, on a new connection), the store closes its
connections promptly, and a batch's error reply is raised after its other replies were read."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import keys, leases
from shared.leases import LeaseStore
from shared.store import InventoryUnavailable, ResponseError

SUBNET = "lab"
RANGES = (("198.18.0.100", "198.18.0.103"),)
MAC = "52:54:00:00:04:01"


@pytest.fixture
async def clients(redis_url):
    client = leases.connect(redis_url)
    admin = leases.connect(redis_url)
    store = LeaseStore(client)
    await store.sync_pool(SUBNET, RANGES)
    yield store, admin
    await store.aclose()
    await client.aclose()
    await admin.aclose()


async def test_a_connection_redis_closes_fails_one_batch_then_the_store_reconnects(clients):
    store, admin = clients
    now = int(time.time())
    offered = await store.step(store.offer_step(SUBNET, MAC, reserved=None, requested=None,
                                                hostname="h", now=now))
    acked = await store.step(store.request_step(SUBNET, MAC, offered.ip, reserved=None,
                                                hostname="h", lease_time=600, now=now))
    assert acked.kind == "ok"
    await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await admin.delete(keys.lease(offered.ip))  # as if Redis had lost the acknowledged write
    with pytest.raises(InventoryUnavailable, match="Redis unreachable"):
        await store.step(store.offer_step(SUBNET, "52:54:00:00:04:02", reserved=None,
                                          requested=None, hostname="", now=now))
    again = await store.step(store.offer_step(SUBNET, "52:54:00:00:04:02", reserved=None,
                                              requested=None, hostname="", now=now))
    assert again.kind == "ok"
    assert store.replayed == 1  # the acknowledged lease written again first
    assert (await admin.hgetall(keys.lease(offered.ip)))["state"] == "bound"


async def test_closing_the_store_does_not_wait_for_a_timeout(clients):
    store, _admin = clients
    await store.step(store.offer_step(SUBNET, MAC, reserved=None, requested=None, hostname="",
                                      now=int(time.time())))
    await asyncio.wait_for(store.aclose(), 1.0)  # well under the client's 2 s timeout


async def test_an_error_reply_is_raised_after_the_other_replies(clients):
    store, _admin = clients
    with pytest.raises(ResponseError, match="unknown command"):
        await store._commands(("PING",), ("NOSUCHCOMMAND",), ("PING",))
    assert await store._commands(("PING",), ("PING",)) == ["PONG", "PONG"]  # still in step
