"""Bad input never breaks the HTTP service: ranges, fast-path heads, concurrent callbacks."""

from __future__ import annotations

import asyncio

from httpkit import MAC, SECRET, make_service
from hypothesis import given, settings, strategies as st

from services.http.access import host_token
from services.http.fastpath import FastAnswers
from services.http.files import parse_ranges
from shared.cache import StaticInventory
from shared.schema import Host


@given(st.text(max_size=200), st.integers(min_value=0, max_value=10**12))
def test_parse_ranges_never_raises_and_stays_inside_the_file(header, size):
    ranges = parse_ranges(header, size)
    if ranges:
        assert all(0 <= first <= last < size for first, last in ranges)


@given(st.from_regex(r"bytes=(\d{0,6}-\d{0,6},){0,4}\d{0,6}-\d{0,6}", fullmatch=True),
       st.integers(min_value=1, max_value=10**6))
def test_parse_ranges_on_well_formed_headers(header, size):
    ranges = parse_ranges(header, size)
    assert ranges is None or all(0 <= a <= b < size for a, b in ranges)


class _Transport:
    def get_extra_info(self, name):
        return ("127.0.0.1", 8080) if name == "sockname" else ("127.0.0.1", 40000)


class _Boot:
    """Just enough of a BootService for FastAnswers, with nothing cached."""

    def __init__(self):
        from services.http.server import BootService, RenderCache

        self.cfg = type("Cfg", (), {"public_url": "", "san_server": ""})()
        self.cache = RenderCache(16)
        self.inventory = StaticInventory(hosts=[Host(mac=MAC, ip="127.0.0.1")])
        self._macs = {}
        self.mac = BootService.mac.__get__(self)
        self.stamp = lambda: (0, 0)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fast_path_never_raises_on_garbage(data):
    answers = FastAnswers(_Boot())
    request = b"GET /" + data + b"\r\n\r\n"
    assert answers(request, _Transport()) is None  # nothing cached: always the normal path


async def test_concurrent_done_callbacks_switch_exactly_once(inventory, aiohttp_client):
    await inventory.put("profile", "p", kernel="k")
    await inventory.put("host", MAC, hostname="web1", profile="p", ip="10.9.9.9")
    client = await aiohttp_client(make_service(inventory).app())
    url = f"/install/{MAC}/done?token={host_token(SECRET, MAC)}"
    replies = await asyncio.gather(*(client.post(url) for _ in range(8)))
    texts = [await r.text() for r in replies]
    assert all(r.status == 200 for r in replies)
    assert sum("recorded" in t for t in texts) == 1
    assert sum("already" in t for t in texts) == 7
    assert len(await inventory.events_of("http.install_done", MAC)) == 1
