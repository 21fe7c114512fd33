"""A DISCOVER's and a REQUEST's lease step is packed when the store builds it, in one f-string
per op (LeaseStore.offer_step/request_step, the DHCP per-packet path): the text is the general
packer's (leases._packed, which every other op uses) for the same fields, with and without an
event, a known host's event, a client identity, and with separators inside a field (which both
drop)."""

from __future__ import annotations

import itertools

from shared import leases
from shared.lease_script import RS, SEP
from shared.leases import LeaseStore

EVENTS = (None, ("eth0", "", "", False), ("eth1", "ipxe.efi", "uefi-http", True))
NAMES = ("", "node7", f"a{SEP}b", f"c{RS}d")


def general(step: leases.Step) -> str:
    return leases._packed(step.op, step.subnet, step.mac, step.client, step.now, step.event,
                          step.args)


def test_offer_steps_pack_as_the_general_packer():
    store = LeaseStore(None)
    cases = itertools.product(EVENTS, NAMES, ("", "01:52:54:00:00:00:01"), (None, "7,9"),
                              (None, "198.18.0.9"), (None, "198.18.0.100"))
    count = 0
    for event, name, client, discover, reserved, requested in cases:
        step = store.offer_step("lab", "52:54:00:00:00:01", reserved, requested, name,
                                1733488800, event, client, discover, "7")
        assert step.text == general(step), (event, name, client, discover)
        assert step.text.count(SEP) == 14 and RS not in step.text
        count += 1
    assert count == 3 * 4 * 2 * 2 * 2 * 2


def test_request_steps_pack_as_the_general_packer():
    store = LeaseStore(None)
    for event, name, client, reserved in itertools.product(
            EVENTS, NAMES, ("", "ff:00:00:00:01"), (None, "198.18.0.9")):
        step = store.request_step("lab", "52:54:00:00:00:02", "198.18.0.101", reserved, name,
                                  3600, 1733488800, event, client)
        assert step.text == general(step), (event, name, client, reserved)
        assert step.text.count(SEP) == 12 and RS not in step.text
        assert step.args[0] == str(1733488800 + 3600)


def test_the_packed_header_is_the_lease_functions():
    """The nine header fields the lease function reads (lease_script.py), in order."""
    step = LeaseStore(None).request_step("lab", "52:54:00:00:00:03", "198.18.0.102", None,
                                         "h", 60, 100, ("eth0", "boot.efi", "uefi", True), "")
    assert step.text.split(SEP) == ["request", "lab", "52:54:00:00:00:03", "52:54:00:00:00:03",
                                    "100", "2", "eth0", "boot.efi", "uefi", "160", "", "198.18.0.102",
                                    "h"]
