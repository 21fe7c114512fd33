"""The REQUEST that answers our own OFFER (or renews a bound lease) writes only the lease's
state and expiry when the rest of the record is already what it would write (the lease script's
cheaper path); the record read by TFTP and HTTP is the same as a full write's, whatever the
record held before."""

from __future__ import annotations

import time

import pytest

from harness.dhcpkit import lease_store
from shared import keys
from shared.leases import LeaseStore

SUBNET = "lab"
RANGES = (("198.18.0.100", "198.18.0.103"),)
MAC = "52:54:00:00:01:01"


@pytest.fixture
async def store(redis_url):
    async with lease_store(redis_url, SUBNET, RANGES) as s:
        yield s


async def offer(s: LeaseStore, now: int, hostname: str = "h"):
    return await s.step(s.offer_step(SUBNET, MAC, reserved=None, requested=None,
                                     hostname=hostname, now=now))


async def request(s: LeaseStore, ip: str, now: int, hostname: str = "h", lease_time: int = 600):
    return await s.step(s.request_step(SUBNET, MAC, ip, reserved=None, hostname=hostname,
                                       lease_time=lease_time, now=now))


def contract(ip_state: str, expires: int, hostname: str = "h", subnet: str = SUBNET) -> dict:
    return {"mac": MAC, "client": MAC, "state": ip_state, "expires": str(expires),
            "subnet": subnet, "hostname": hostname}


async def test_the_answer_to_our_offer_binds_the_same_record(store):
    now = int(time.time())
    offered = await offer(store, now)
    acked = await request(store, offered.ip, now + 1)
    assert (acked.kind, acked.ip, acked.state, acked.expires) == ("ok", offered.ip, "bound",
                                                                  now + 601)
    assert await store.redis.hgetall(keys.lease(offered.ip)) == contract("bound", now + 601)
    assert await store.redis.zscore(keys.pool(SUBNET), offered.ip) == now + 601


async def test_a_renewal_moves_the_expiry_and_a_new_hostname_is_written(store):
    now = int(time.time())
    ip = (await offer(store, now)).ip
    await request(store, ip, now)
    renewed = await request(store, ip, now + 100)
    assert renewed.expires == now + 700
    assert await store.redis.hgetall(keys.lease(ip)) == contract("bound", now + 700)
    await request(store, ip, now + 200, hostname="other")
    assert await store.redis.hgetall(keys.lease(ip)) == contract("bound", now + 800, "other")


async def test_a_record_missing_fields_or_from_another_subnet_is_written_whole(store):
    """A record from before client identities were kept (no ``client`` field), or one that
    names another subnet: the REQUEST writes the whole record, as before."""
    now = int(time.time())
    ip = (await offer(store, now)).ip
    await request(store, ip, now)
    await store.redis.hdel(keys.lease(ip), "client")
    await request(store, ip, now + 10)
    assert await store.redis.hgetall(keys.lease(ip)) == contract("bound", now + 610)
    await store.redis.hset(keys.lease(ip), "subnet", "elsewhere")
    await request(store, ip, now + 20)
    assert await store.redis.hgetall(keys.lease(ip)) == contract("bound", now + 620)
