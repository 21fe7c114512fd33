"""Waiting on a condition in async tests (instead of sleeping and hoping)."""

from __future__ import annotations

import asyncio
import inspect
import time


async def wait_until(predicate, timeout: float = 5.0, what: str = "condition",
                     interval: float = 0.01) -> float:
    """Poll ``predicate()`` (a plain or an async function) until it is truthy; return the seconds
    it took, or raise AssertionError naming ``what`` after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(interval)
