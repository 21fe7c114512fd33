"""Helpers of the power tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import time
import urllib.request

MAC = "52:54:00:5e:00:01"


def mock_requests(bmc) -> list[dict]:
    """What the Redfish mock received (method, path, body without passwords)."""
    import json
    import ssl
    context = ssl._create_unverified_context() if bmc.address.startswith("https") else None
    with urllib.request.urlopen(f"{bmc.address}/mock/requests", timeout=10,
                                context=context) as resp:
        return json.loads(resp.read())["requests"]


def wait_vm(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
