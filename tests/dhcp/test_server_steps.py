"""The DHCP server builds its DISCOVER's and REQUEST's lease steps itself (services/dhcp/server.py
offer_step and request_step, compiled with the packet path: docs/benchmarks.md, DHCP, ninth
round): each must be exactly the Step LeaseStore builds, packed text included, for every kind
of argument (no event, a pool client's, an inventory host's; a client identity; a reserved
or requested address; a field holding a separator, which goes the store's way)."""

from __future__ import annotations

import itertools

from services.dhcp import server
from shared.lease_script import RS, SEP, STEP_FIELDS
from shared.leases import LeaseStore, Step

EVENTS = [None, ("eth0", "", "", False), ("eth1", "undionly.kpxe", "bios", True),
          ("eth0", "a\x1fb", "x", True)]
CLIENTS = ["", "52:54:00:00:00:01", "ff:00:01:02"]
MAC = "52:54:00:00:00:01"


def _same(built: Step, reference: Step) -> None:
    assert type(built) is Step
    assert tuple(built) == tuple(reference)
    assert built.packed() == reference._replace(text="").packed()
    assert built.text.count(SEP) + 1 == STEP_FIELDS[built.op] and RS not in built.text


def test_offer_steps_are_the_stores():
    store = LeaseStore(None, offer_hold=45)
    for event, client, reserved, requested, hostname, discover in itertools.product(
            EVENTS, CLIENTS, (None, "10.0.0.9"), (None, "10.0.0.7"), ("", "pc\x1e1"),
            (None, "", "0,7")):
        for now in (1_700_000_000, 1_700_000_001, 1_700_000_000):
            args = ("lab", MAC, reserved, requested, hostname, now, event, client, discover,
                    "7")
            _same(server.offer_step(store, *args), store.offer_step(*args))


def test_request_steps_are_the_stores():
    store = LeaseStore(None)
    for event, client, reserved, hostname, lease_time in itertools.product(
            EVENTS, CLIENTS, (None, "10.0.0.9"), ("", "pc", "p\x1fc"), (600, 86400)):
        args = ("lab", MAC, "10.0.0.9", reserved, hostname, lease_time, 1_700_000_000, event,
                client)
        _same(server.request_step(store, *args), store.request_step(*args))


def test_the_numbers_texts_are_bounded():
    store = LeaseStore(None)
    for now in range(1_700_000_000, 1_700_001_000):
        step = server.request_step(store, "lab", MAC, "10.0.0.9", None, "", 600, now, None, "")
        assert step.args[0] == str(now + 600)
    assert len(server._NUMBER_TEXTS) <= 257
