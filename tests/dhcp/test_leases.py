"""Lease allocation in a real redis-server: atomicity, expiry, decline, release, restarts."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.dhcpkit import lease_store
from shared import events, leases
from shared.leases import LeaseStore
from shared.store import InventoryUnavailable

SUBNET = "lab"
RANGES = (("198.18.0.100", "198.18.0.109"),)


def mac(n: int) -> str:
    return f"52:54:00:00:{n >> 8:02x}:{n & 0xff:02x}"


@pytest.fixture
async def store(redis_url):
    async with lease_store(redis_url, SUBNET, RANGES, reserved=["198.18.0.105"]) as s:
        yield s


async def dora(s: LeaseStore, m: str, now: int, reserved=None, requested=None, lease_time=600):
    offer = await s.step(s.offer_step(SUBNET, m, reserved=reserved, requested=requested,
                                      hostname="", now=now))
    if offer.kind != "ok":
        return offer, None
    ack = await s.step(s.request_step(SUBNET, m, offer.ip, reserved=reserved, hostname="h",
                                      lease_time=lease_time, now=now))
    return offer, ack


async def test_offer_then_ack_writes_contract_hash(store, redis_url):
    now = int(time.time())
    offer, ack = await dora(store, mac(1), now)
    assert offer.kind == "ok" and offer.state == "offered" and offer.expires == now + 30
    assert ack.kind == "ok" and ack.ip == offer.ip and ack.state == "bound"
    raw = await store.redis.hgetall(f"bootyard:lease:{ack.ip}")
    assert raw == {"mac": mac(1), "client": mac(1), "state": "bound", "expires": str(now + 600),
                   "subnet": SUBNET, "hostname": "h"}
    rec = await leases.Leases(store.redis).lease(ack.ip)
    assert rec.mac == mac(1) and rec.current()
    assert await leases.Leases(store.redis).lease("198.18.0.250") is None


async def test_same_client_gets_same_address_again(store):
    now = int(time.time())
    _, first = await dora(store, mac(1), now)
    again, _ = await dora(store, mac(1), now + 1)
    assert again.ip == first.ip and again.state == "bound"  # renewal of a bound lease


async def test_reserved_address_is_never_pooled(store):
    now = int(time.time())
    got = set()
    for n in range(9):  # the pool has 10 addresses, one reserved
        _, ack = await dora(store, mac(n), now)
        got.add(ack.ip)
    assert "198.18.0.105" not in got and len(got) == 9
    offer, _ = await dora(store, mac(99), now)
    assert offer.kind == "exhausted"
    offer, ack = await dora(store, mac(100), now, reserved="198.18.0.105")
    assert offer.ip == ack.ip == "198.18.0.105" and ack.kind == "ok"


async def test_reserved_client_asking_for_other_address_is_naked(store):
    now = int(time.time())
    out = await store.step(store.request_step(SUBNET, mac(1), "198.18.0.101", reserved="198.18.0.105",
                                              hostname="", lease_time=60, now=now))
    assert out.kind == "nak" and "198.18.0.105" in out.reason


async def test_request_for_address_of_another_client_naked(store):
    now = int(time.time())
    _, ack = await dora(store, mac(1), now)
    out = await store.step(store.request_step(SUBNET, mac(2), ack.ip, reserved=None, hostname="",
                                              lease_time=60, now=now))
    assert out.kind == "nak"
    out = await store.step(store.request_step(SUBNET, mac(2), "10.0.0.1", reserved=None,
                                              hostname="", lease_time=60, now=now))
    assert out.kind == "nak" and "not in a pool" in out.reason


async def test_offers_are_held_then_return(store):
    now = int(time.time())
    for n in range(9):
        offer, _ = await store.step(store.offer_step(SUBNET, mac(n), reserved=None, requested=None,
                                                     hostname="", now=now)), None
        assert offer.kind == "ok"
    full = await store.step(store.offer_step(SUBNET, mac(50), reserved=None, requested=None,
                                             hostname="", now=now + 29))
    assert full.kind == "exhausted"
    later = await store.step(store.offer_step(SUBNET, mac(50), reserved=None, requested=None,
                                              hostname="", now=now + 31))
    assert later.kind == "ok"


async def test_expired_lease_returns_to_pool_and_init_reboot(store):
    now = int(time.time())
    _, ack = await dora(store, mac(1), now, lease_time=60)
    # INIT-REBOOT after expiry by the same client: the address is still free, so it is confirmed
    again = await store.step(store.request_step(SUBNET, mac(1), ack.ip, reserved=None,
                                                hostname="", lease_time=60, now=now + 120))
    assert again.kind == "ok"
    # expired, another client may take it
    other = await store.step(store.request_step(SUBNET, mac(2), ack.ip, reserved=None,
                                                hostname="", lease_time=60, now=now + 500))
    assert other.kind == "ok"
    expired = await store.expired_since(SUBNET, now, now + 10_000)
    assert [r.mac for r in expired] == [mac(2)]


async def test_decline_quarantines(store):
    now = int(time.time())
    _, ack = await dora(store, mac(1), now)
    out = await store.step(store.decline_step(SUBNET, mac(1), ack.ip, now=now))
    assert out.kind == "ok" and out.state == "declined"
    for when in (now + 1, now + 599):
        again = await store.step(store.request_step(SUBNET, mac(1), ack.ip, reserved=None,
                                                    hostname="", lease_time=60, now=when))
        assert again.kind == "nak"
    offer = await store.step(store.offer_step(SUBNET, mac(1), reserved=None, requested=ack.ip,
                                              hostname="", now=now + 2))
    assert offer.ip != ack.ip
    raw = await store.redis.hgetall(f"bootyard:lease:{ack.ip}")
    assert raw["state"] == "declined" and raw["expires"] == str(now + 600)
    # a DECLINE from someone else does not touch a lease
    _, ack2 = await dora(store, mac(5), now)
    assert (await store.step(store.decline_step(SUBNET, mac(6), ack2.ip, now=now))).kind == "ignored"


async def test_release_frees(store):
    now = int(time.time())
    _, ack = await dora(store, mac(1), now)
    rel = await store.step(store.release_step(SUBNET, mac(1), ack.ip, now=now))
    assert rel.kind == "ok"
    assert (await store.redis.hget(f"bootyard:lease:{ack.ip}", "state")) == "released"
    assert not (await leases.Leases(store.redis).lease(ack.ip)).current()
    taken = await store.step(store.request_step(SUBNET, mac(2), ack.ip, reserved=None, hostname="",
                                                lease_time=60, now=now + 1))
    assert taken.kind == "ok"
    # release by a client that does not hold it is ignored
    assert (await store.step(store.release_step(SUBNET, mac(1), ack.ip, now=now))).kind == "ignored"


async def test_pool_usage_and_resync(store):
    now = int(time.time())
    await dora(store, mac(1), now)
    assert await store.pool_usage(SUBNET, now) == (9, 1)
    size = await store.sync_pool(SUBNET, (("198.18.0.100", "198.18.0.119"),), reserved=())
    assert size == 20 and (await store.pool_usage(SUBNET, now)) == (20, 1)


async def test_concurrent_stores_never_share_an_address(redis_url):
    """Two stores (as two processes would) race for a small pool from many clients at once."""
    clients = [leases.connect(redis_url) for _ in range(2)]
    stores = [LeaseStore(c) for c in clients]
    await stores[0].sync_pool("race", (("198.18.1.1", "198.18.1.50"),))
    now = int(time.time())

    async def worker(s: LeaseStore, base: int):
        out = []
        for batch in range(10):
            macs = [mac(base + batch * 10 + i) for i in range(10)]
            offers = await s.run([s.offer_step("race", m, reserved=None, requested=None,
                                               hostname="", now=now) for m in macs])
            reqs = [s.request_step("race", m, o.ip, reserved=None, hostname="", lease_time=600,
                                   now=now) for m, o in zip(macs, offers) if o.kind == "ok"]
            acks = await s.run(reqs) if reqs else []
            out += [(r.mac, a.ip) for r, a in zip(reqs, acks) if a.kind == "ok"]
        return out

    a, b = await asyncio.gather(worker(stores[0], 0), worker(stores[1], 1000))
    acked = a + b
    ips = [ip for _, ip in acked]
    assert len(acked) == 50 and len(set(ips)) == 50
    for m, ip in acked:
        assert (await clients[0].hget(f"bootyard:lease:{ip}", "mac")) == m
    for c in clients:
        await c.aclose()


async def test_redis_crash_loses_no_acknowledged_lease(private_redis):
    client = leases.connect(private_redis.url)
    s = LeaseStore(client)
    await s.sync_pool(SUBNET, RANGES)
    now = int(time.time())
    acked = {}
    for n in range(5):
        _, ack = await dora(s, mac(n), now)
        acked[ack.ip] = mac(n)
    private_redis.restart(crash=True)  # SIGKILL: up to a second of AOF may be gone
    with pytest.raises(InventoryUnavailable):  # the broken connection surfaces once
        await s.step(s.offer_step(SUBNET, mac(77), reserved=None, requested=None, hostname="",
                                  now=now))
    offer, ack = await dora(s, mac(77), now)  # replays the journal first
    assert ack.kind == "ok" and ack.ip not in acked
    for ip, m in acked.items():
        rec = await leases.Leases(client).lease(ip)
        assert rec is not None and rec.mac == m and rec.current()
    private_redis.restart(crash=False)
    fresh = leases.connect(private_redis.url)
    for ip, m in list(acked.items()) + [(ack.ip, mac(77))]:
        assert (await fresh.hget(f"bootyard:lease:{ip}", "mac")) == m
    await fresh.aclose()
    await client.aclose()


async def test_redis_down_raises_inventory_unavailable(private_redis):
    client = leases.connect(private_redis.url, timeout=0.5)
    s = LeaseStore(client)
    private_redis.kill()
    with pytest.raises(InventoryUnavailable):
        await s.step(s.offer_step(SUBNET, mac(1), reserved=None, requested=None, hostname="",
                                  now=1))
    await client.aclose()


async def test_journal_restores_leases_redis_lost(private_redis):
    """Redis comes back without its last writes (the AOF tail lost with the machine): the leases
    acknowledged in the last seconds are written again before the next allocation."""
    import shutil

    client = leases.connect(private_redis.url)
    s = LeaseStore(client)
    await s.sync_pool(SUBNET, RANGES)
    now = int(time.time())
    acked = {}
    for n in range(3):
        _, ack = await dora(s, mac(n), now)
        acked[ack.ip] = mac(n)
    private_redis.kill()
    shutil.rmtree(private_redis.dir / "appendonlydir", ignore_errors=True)
    private_redis.start()
    with pytest.raises(InventoryUnavailable):
        await s.step(s.offer_step(SUBNET, mac(9), reserved=None, requested=None, hostname="",
                                  now=now))
    await s.sync_pool(SUBNET, RANGES)  # the service re-syncs pools after a failure
    offer, ack = await dora(s, mac(9), now)
    assert ack.kind == "ok" and ack.ip not in acked  # no address handed out twice
    for ip, m in acked.items():
        rec = await leases.Leases(client).lease(ip)
        assert rec is not None and rec.mac == m and rec.current()
    await client.aclose()


async def test_rebuilt_pool_keeps_held_addresses(store):
    now = int(time.time())
    _, ack = await dora(store, mac(1), now)
    await store.redis.delete(f"bootyard:leases:pool:{SUBNET}")
    await store.sync_pool(SUBNET, RANGES, reserved=["198.18.0.105"])
    assert await store.redis.zscore(f"bootyard:leases:pool:{SUBNET}", ack.ip) == now + 600
    other = await store.step(store.request_step(SUBNET, mac(2), ack.ip, reserved=None,
                                                hostname="", lease_time=60, now=now))
    assert other.kind == "nak"


async def test_steps_record_their_events_atomically(store):
    now = int(time.time())
    ev = ("eth0", "undionly.kpxe", "bios", True)  # an inventory host: its own stream too
    offer = await store.step(store.offer_step(SUBNET, mac(1), reserved=None, requested=None,
                                              hostname="", now=now, event=ev))
    await store.step(store.request_step(SUBNET, mac(1), offer.ip, reserved=None, hostname="",
                                        lease_time=60, now=now, event=ev))
    await store.step(store.request_step(SUBNET, mac(2), offer.ip, reserved=None, hostname="",
                                        lease_time=60, now=now, event=ev))
    await store.step(store.offer_step(SUBNET, mac(3), reserved=None, requested=None,
                                      hostname="", now=now))  # no event asked for
    unknown = ("eth0", "", "", False)  # not in the inventory (global only), not PXE booting
    await store.step(store.offer_step(SUBNET, mac(4), reserved=None, requested=None,
                                      hostname="", now=now, event=unknown))
    host = [e[1] for e in await store.redis.xrange(f"bootyard:events:{mac(1)}")]
    assert [e["kind"] for e in host] == ["dhcp.offer", "dhcp.ack"]
    assert host[1]["ip"] == offer.ip and host[1]["boot_file"] == "undionly.kpxe"
    assert host[1]["boot_reason"] == "bios" and "service" not in host[1]  # the kind says it
    assert events.Event.from_entry("1-0", host[1]).service == "dhcp"
    assert host[1]["interface"] == "eth0" and host[1]["subnet"] == SUBNET
    nak = [e[1] for e in await store.redis.xrange(f"bootyard:events:{mac(2)}")]
    assert [e["kind"] for e in nak] == ["dhcp.nak"] and "another client" in nak[0]["reason"]
    assert await store.redis.xlen(f"bootyard:events:{mac(3)}") == 0
    assert not await store.redis.exists(f"bootyard:events:{mac(4)}")
    everything = [e[1] for e in await store.redis.xrange("bootyard:events")]
    assert [(e["kind"], e["mac"]) for e in everything] == [
        ("dhcp.offer", mac(1)), ("dhcp.ack", mac(1)), ("dhcp.nak", mac(2)),
        ("dhcp.offer", mac(4))]
    assert everything[3]["ip"] and everything[3]["interface"] == "eth0"
    assert "boot_file" not in everything[3] and "boot_reason" not in everything[3]


async def test_a_request_for_a_held_offer_is_checked_against_the_pool(store):
    now = int(time.time())
    offer = await store.step(store.offer_step(SUBNET, mac(1), reserved=None, requested=None,
                                              hostname="", now=now))
    # the operator removes the range while the offer is held (or reserves the address)
    await store.sync_pool(SUBNET, (("198.18.0.200", "198.18.0.209"),))
    request = store.request_step(SUBNET, mac(1), offer.ip, reserved=None, hostname="",
                                 lease_time=600, now=now + 1)
    nak = await store.step(request)
    assert nak.kind == "nak" and "not in a pool" in nak.reason
    # the client starts over and gets an address of what is left
    again = await store.step(store.offer_step(SUBNET, mac(1), reserved=None, requested=None,
                                              hostname="", now=now + 2))
    assert again.kind == "ok" and again.ip.startswith("198.18.0.20")
    ack = await store.step(store.request_step(SUBNET, mac(1), again.ip, reserved=None,
                                              hostname="", lease_time=600, now=now + 3))
    assert ack.kind == "ok" and ack.ip == again.ip


async def test_an_offer_made_in_one_subnet_is_not_bound_through_another(store):
    """A client heard both through a relay and directly: the REQUEST that arrives through the
    other subnet must not take the address offered in the first one."""
    await store.sync_pool("other", (("10.9.0.10", "10.9.0.19"),))
    now = int(time.time())
    offer = await store.step(store.offer_step(SUBNET, mac(1), reserved=None, requested=None,
                                              hostname="", now=now))
    wrong = await store.step(store.request_step("other", mac(1), offer.ip, reserved=None,
                                                hostname="", lease_time=600, now=now + 1))
    assert wrong.kind == "nak" and "not in a pool of subnet other" in wrong.reason
    record = await store.redis.hgetall(f"bootyard:lease:{offer.ip}")
    assert record["subnet"] == SUBNET and record["state"] == "offered"
    right = await store.step(store.request_step(SUBNET, mac(1), offer.ip, reserved=None,
                                                hostname="", lease_time=600, now=now + 1))
    assert right.kind == "ok" and right.state == "bound"
