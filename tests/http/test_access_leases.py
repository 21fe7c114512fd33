"""Access by lease through the leases interface, with its in-memory double (no Redis)."""

from __future__ import annotations

import time

import pytest

from services.http.access import Access
from shared.cache import StaticInventory
from shared.leases import LeaseRecord, StaticLeases
from shared.store import InventoryUnavailable

MAC, OTHER = "52:54:00:00:00:09", "52:54:00:00:00:0a"


async def test_the_address_leased_to_the_mac_is_allowed():
    now = int(time.time())
    leases = StaticLeases([LeaseRecord("10.0.0.9", MAC, "bound", now + 60, "lab", ""),
                           LeaseRecord("10.0.0.8", MAC, "released", now, "lab", "")])
    access = Access("secret", StaticInventory(), leases)
    assert await access.allowed(MAC, "10.0.0.9", None) == "lease"
    assert await access.allowed(OTHER, "10.0.0.9", None) is None  # leased to another MAC
    assert await access.allowed(MAC, "10.0.0.8", None) is None  # released
    assert await access.allowed(MAC, "10.0.0.7", None) is None  # no lease


async def test_leases_unreachable_is_not_a_refusal():
    access = Access("secret", StaticInventory(), StaticLeases(broken=True))
    with pytest.raises(InventoryUnavailable):
        await access.allowed(MAC, "10.0.0.9", None)
