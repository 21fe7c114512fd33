"""How the lease function reads a batch (shared/lease_script.py): each step's fields are taken
by one pattern per op (STEP_FIELDS), and the steps of a batch share their pool keys and their
``now`` while those do not change. A batch mixing ops, subnets and times gives each step its
own subnet's pool and its own time; a step that is not an op with its fields is refused with an
error that says so."""

from __future__ import annotations

import time

import pytest

from harness.dhcpkit import lease_store
from shared import keys
from shared.lease_script import FUNCTION, RS, SEP, STEP_FIELDS
from shared.leases import LeaseStore

A, B = "lab", "lab2"
RANGE_A = (("198.18.0.100", "198.18.0.103"),)
RANGE_B = (("198.18.1.100", "198.18.1.103"),)
MACS = [f"52:54:00:00:03:{n:02x}" for n in range(1, 7)]


@pytest.fixture
async def store(redis_url):
    async with lease_store(redis_url, A, RANGE_A) as s:
        await s.sync_pool(B, RANGE_B)
        yield s


def test_every_op_packs_the_field_count_its_pattern_reads():
    s = LeaseStore(None)
    event = ("eth0", "", "", False)
    steps = [s.offer_step(A, MACS[0], reserved=None, requested=None, hostname="", now=1,
                          event=event),
             s.request_step(A, MACS[0], "198.18.0.100", reserved=None, hostname="",
                            lease_time=60, now=1),
             s.request_step(A, MACS[0], "198.18.0.100", reserved=None, hostname="a\x1fb",
                            lease_time=60, now=1, event=("eth0", "x.efi", "efi", True)),
             s.release_step(A, MACS[0], "198.18.0.100", now=1),
             s.decline_step(A, MACS[0], "198.18.0.100", now=1)]
    for step in steps:
        assert step.packed().count(SEP) + 1 == STEP_FIELDS[step.op], step.op
        assert RS not in step.packed()  # the batch's time is the batch's (_execute), not a step's
        # offer_step and request_step pack when they build (Step.text): the same text
        assert step.packed() == step._replace(text="").packed()
    assert len({op[:3] for op in STEP_FIELDS}) == len(STEP_FIELDS)  # the pattern's key


async def test_one_batch_of_two_subnets_and_two_times(store):
    now = int(time.time())
    later = now + 3600  # past every hold of `now`
    offers = await store.run([
        store.offer_step(A, MACS[0], reserved=None, requested=None, hostname="a", now=now),
        store.offer_step(B, MACS[1], reserved=None, requested=None, hostname="b", now=now),
        store.offer_step(B, MACS[2], reserved=None, requested=None, hostname="c", now=now),
        store.offer_step(A, MACS[3], reserved=None, requested=None, hostname="d", now=now),
    ])
    assert [o.kind for o in offers] == ["ok"] * 4
    assert [o.ip.rsplit(".", 2)[1] for o in offers] == ["0", "1", "1", "0"]
    assert len({o.ip for o in offers}) == 4
    for mac, o, subnet in zip(MACS, offers, (A, B, B, A)):
        assert await store.redis.hget(keys.by_client(subnet), mac) == o.ip
        assert await store.redis.zscore(keys.pool(subnet), o.ip) == now + 30
    # the same batch: a request at `now`, then an offer at `later` (every hold of `now` has
    # ended: the lowest-scored free address is taken), then a release at `now` again
    steps = [store.request_step(A, MACS[0], offers[0].ip, reserved=None, hostname="a",
                                lease_time=60, now=now),
             store.offer_step(B, MACS[4], reserved=None, requested=None, hostname="e",
                              now=later),
             store.release_step(A, MACS[3], offers[3].ip, now=now, only_offered=True)]
    acked, late, released = await store.run(steps)
    assert (acked.kind, acked.state, acked.expires) == ("ok", "bound", now + 60)
    assert (late.kind, late.state, late.expires) == ("ok", "offered", later + 30)
    assert late.ip.startswith("198.18.1.")
    assert (released.kind, released.state, released.expires) == ("ok", "released", now)
    assert await store.redis.zscore(keys.pool(A), offers[3].ip) == now


async def test_a_step_without_its_fields_is_refused_with_a_reason(store):
    await store.step(store.offer_step(A, MACS[5], reserved=None, requested=None, hostname="",
                                      now=int(time.time())))  # the library loaded
    bad = "1.000" + RS + SEP.join(["offer", A, MACS[5], MACS[5], "1"]) + RS  # five of fifteen
    with pytest.raises(Exception, match="is not an op with its fields"):
        await store.redis.execute_command("FCALL", FUNCTION, 0, bad)
    unknown = "1.000" + RS + SEP.join(["renew"] + [""] * 12) + RS
    with pytest.raises(Exception, match="is not an op with its fields"):
        await store.redis.execute_command("FCALL", FUNCTION, 0, unknown)
    timeless = SEP.join(["release", A, MACS[5], MACS[5], "1", "0", "", "", "", "x", "0"])
    with pytest.raises(Exception, match="batch without its time"):
        await store.redis.execute_command("FCALL", FUNCTION, 0, timeless)
