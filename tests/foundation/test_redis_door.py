"""One door to Redis (issue 12 §3) and issue 13 F11.

- one module imports ``redis`` (shared/store.py) and one holds the key shapes (shared/keys.py);
- every client's connection pool is bounded: a burst of concurrent lease look-ups (the end of a
  TFTP flood) waits for a connection instead of opening one each (F11: ~100 connections stayed
  open in TFTP after a flood);
- the lease script and EventLog write the DHCP events with one layout (events.EVENT_FIELDS);
- StaticLeases answers as Leases does, for unit tests.
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
from pathlib import Path

import pytest

from shared import events, keys, lease_script, leases, store
from shared.events import EventLog
from shared.leases import LeaseRecord, Leases, StaticLeases
from shared.store import InventoryUnavailable

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("shared", "services") for p in (ROOT / d).rglob("*.py"))
KEY_SHAPE = re.compile(r"bootyard:(host|profile|subnet|export|mirror|mirrorsync|netboot|lease|leases|events)"
                       r"\b")


def _strings_that_are_not_docstrings(tree: ast.AST):
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in docstrings:
            yield node


def test_only_shared_store_imports_redis():
    importers = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "redis" or n.startswith("redis.") for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert sorted(set(importers)) == ["shared/store.py"]


def test_key_shapes_live_in_shared_keys_only():
    found = []
    for path in SOURCES:
        if path == ROOT / "shared" / "keys.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in _strings_that_are_not_docstrings(tree):
            if KEY_SHAPE.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert found == []


async def test_f11_a_burst_of_lease_lookups_does_not_grow_the_pool(private_redis):
    control = store.connect(private_redis.url)
    client = store.connect(private_redis.url)  # as TFTP and HTTP build theirs
    try:
        await control.hset(keys.lease("10.0.0.5"), mapping={
            "mac": "52:54:00:00:00:05", "state": "bound", "expires": str(int(time.time()) + 600),
            "subnet": "lab", "hostname": ""})
        before = (await control.info("clients"))["connected_clients"]
        reader = Leases(client)
        answers = await asyncio.gather(*(reader.holder("10.0.0.5") for _ in range(400)))
        assert answers == ["52:54:00:00:00:05"] * 400  # the burst waited, none failed
        opened = (await control.info("clients"))["connected_clients"] - before
        assert 1 <= opened <= store.MAX_CONNECTIONS
    finally:
        await client.aclose()
        await control.aclose()


async def test_f11_a_look_up_that_finds_every_connection_busy_waits_then_says_so(private_redis):
    client = store.connect(private_redis.url, timeout=0.2, max_connections=1)
    held = await client.connection_pool.get_connection()  # the only connection, in use
    try:
        with pytest.raises(InventoryUnavailable, match="no free Redis connection"):
            await Leases(client).holder("10.0.0.5")
    finally:
        await client.connection_pool.release(held)
    assert await Leases(client).holder("10.0.0.5") is None  # and works once one is free
    await client.aclose()


async def test_lease_script_and_eventlog_write_one_event_layout(redis_url):
    client = leases.connect(redis_url)
    lease_store = leases.LeaseStore(client)
    try:
        await lease_store.sync_pool("layout", (("198.18.6.10", "198.18.6.10"),))
        now = int(time.time())
        ev = ("eth0", "undionly.kpxe", "bios", False)
        a, b = "52:54:00:06:00:01", "52:54:00:06:00:02"
        offer = await lease_store.step(lease_store.offer_step(
            "layout", a, reserved=None, requested=None, hostname="", now=now, event=ev,
            discover="0,7"))  # and dhcp.discover, before it
        for step in (
                lease_store.request_step("layout", a, offer.ip, reserved=None, hostname="",
                                         lease_time=60, now=now, event=ev),  # dhcp.ack
                lease_store.request_step("layout", b, offer.ip, reserved=None, hostname="",
                                         lease_time=60, now=now, event=ev),  # dhcp.nak
                lease_store.offer_step("layout", b, reserved=None, requested=None,
                                       hostname="", now=now, event=ev),  # dhcp.ignored
                lease_store.decline_step("layout", b, offer.ip, now=now,
                                         event=ev),  # dhcp.decline (ignored)
                lease_store.release_step("layout", a, offer.ip, now=now,
                                         event=ev)):  # dhcp.release
            await lease_store.step(step)
        written = [data for _id, data in await client.xrange(keys.EVENTS_STREAM)]
        assert {e["kind"] for e in written} == set(lease_script.LEASE_EVENT_KINDS)
        for entry in written:
            layout = events.HEADER + events.EVENT_FIELDS[entry["kind"]]
            assert list(entry) == [name for name in layout if name in entry], entry
        # the same events through EventLog, their fields given in another order
        await client.delete(keys.EVENTS_STREAM)
        log = EventLog(client, "dhcp", known=lambda mac: False)
        for entry in written:
            fields = {k: v for k, v in entry.items() if k not in events.HEADER}
            log.emit(entry["kind"], entry["mac"], **dict(reversed(list(fields.items()))))
        await log.flush()
        again = [data for _id, data in await client.xrange(keys.EVENTS_STREAM)]
        assert [list(e) for e in again] == [list(e) for e in written]
        assert [{**e, "ts": ""} for e in again] == [{**e, "ts": ""} for e in written]
    finally:
        await lease_store.aclose()
        await client.aclose()


async def test_static_leases_answers_like_leases(redis_url):
    now = int(time.time())
    records = [LeaseRecord("10.0.0.7", "52:54:00:00:00:07", "bound", now + 60, "lab", "", ""),
               LeaseRecord("10.0.0.3", "52:54:00:00:00:03", "released", now, "lab", "h", "")]
    client = store.connect(redis_url)
    try:
        for r in records:
            await client.hset(keys.lease(r.ip), mapping={
                "mac": r.mac, "state": r.state, "expires": str(r.expires), "subnet": r.subnet,
                "hostname": r.hostname})
        real, fake = Leases(client), StaticLeases(records)
        for reader in (real, fake):
            assert await reader.holder("10.0.0.7") == "52:54:00:00:00:07"
            assert await reader.holder("10.0.0.3") is None  # released
            assert await reader.holder("10.0.0.9") is None  # no lease
            assert [r.ip for r in await reader.all()] == ["10.0.0.3", "10.0.0.7"]
            assert (await reader.lease("10.0.0.3")).client == "52:54:00:00:00:03"
    finally:
        await client.aclose()
    with pytest.raises(InventoryUnavailable):
        await StaticLeases(broken=True).holder("10.0.0.7")
