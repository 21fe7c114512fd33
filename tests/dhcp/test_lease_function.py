"""The lease steps run as a Redis function library (shared/lease_script.py LIBRARY, FCALL):
loaded by the lease store before its first step, and loaded again when the Redis it talks to
no longer has it (emptied with FUNCTION FLUSH, or a new Redis behind the same address) without
failing the batch."""

from __future__ import annotations

import time

import pytest

from harness.dhcpkit import lease_store
from shared import keys, lease_wire, metrics
from shared.lease_script import FUNCTION
from shared.leases import LeaseStore

SUBNET = "lab"
RANGES = (("198.18.0.100", "198.18.0.103"),)
MAC = "52:54:00:00:02:01"


@pytest.fixture
async def store(redis_url):
    async with lease_store(redis_url, SUBNET, RANGES) as s:
        yield s


def errors() -> float:
    return metrics.REDIS_ERRORS.labels("leases")._value.get()


async def libraries(store: LeaseStore) -> list[str]:
    listed = await store.redis.execute_command("FUNCTION", "LIST", "LIBRARYNAME", FUNCTION)
    return [entry["library_name"] for entry in listed]  # (redis-py parses each into a dict)


async def test_a_step_runs_in_the_loaded_library(store):
    now = int(time.time())
    offered = await store.step(store.offer_step(SUBNET, MAC, reserved=None, requested=None,
                                                hostname="h", now=now))
    assert offered.kind == "ok"
    assert await libraries(store) == [FUNCTION]
    acked = await store.step(store.request_step(SUBNET, MAC, offered.ip, reserved=None,
                                                hostname="h", lease_time=600, now=now))
    assert (acked.kind, acked.state) == ("ok", "bound")
    assert (await store.redis.hgetall(keys.lease(offered.ip)))["state"] == "bound"


async def test_a_redis_that_lost_the_library_gets_it_again_and_the_step_succeeds(store):
    now = int(time.time())
    first = await store.step(store.offer_step(SUBNET, MAC, reserved=None, requested=None,
                                              hostname="h", now=now))
    await store.redis.execute_command("FUNCTION", "FLUSH")
    assert await libraries(store) == []
    before = errors()
    acked = await store.step(store.request_step(SUBNET, MAC, first.ip, reserved=None,
                                                hostname="h", lease_time=600, now=now))
    assert (acked.kind, acked.ip, acked.state) == ("ok", first.ip, "bound")
    assert await libraries(store) == [FUNCTION]
    assert errors() == before  # not a Redis failure: no journal replay, nothing counted
    assert not store.failed


@pytest.mark.parametrize("packed", ["", "offer\x1flab\x1e", "é\x1f\x1e" * 300])
def test_the_batch_call_is_packed_as_hiredis_packs_it(packed):
    """LeaseStore packs its FCALL itself (a per-batch cost): the bytes hiredis would send."""
    from hiredis import pack_command

    assert lease_wire.fcall(packed) == pack_command(("FCALL", FUNCTION, 0, packed))
