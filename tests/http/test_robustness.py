"""Bad input never breaks the HTTP service: ranges, fast-path heads, concurrent callbacks."""

from __future__ import annotations

import asyncio

from httpkit import MAC, SECRET, make_service
from hypothesis import given, settings, strategies as st

from services.http.access import Access, host_token
from services.http.files import parse_ranges
from services.http.render import Renderer
from services.http.server import BootService
from services.http.settings import HttpSection
from services.http.transport import parse_head
from shared.cache import StaticInventory
from shared.records import Host


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
    if ranges:  # in file order, apart: together never more than the file
        assert all(b1 + 1 < a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:]))
        assert sum(b - a + 1 for a, b in ranges) <= size


async def test_f7_overlapping_ranges_send_the_file_once(inventory, http):
    data = bytes(range(256)) * 4096  # 1 MiB
    (inventory.tmp / "images" / "initrd.img").write_bytes(data)
    resp = await http.get("/images/initrd.img",
                          headers={"Range": "bytes=" + ",".join(["0-"] * 64)})
    body = await resp.read()
    assert resp.status == 206 and len(body) == len(data) and body == data
    assert resp.headers["Content-Range"] == f"bytes 0-{len(data) - 1}/{len(data)}"
    # overlapping pieces are merged; pieces apart stay apart, in file order
    resp = await http.get("/images/initrd.img",
                          headers={"Range": "bytes=500-999,0-99,50-599,-10"})
    body = await resp.read()
    assert resp.status == 206 and resp.headers["Content-Type"].startswith("multipart/byteranges")
    size = len(data)
    assert body.count(b"Content-Range: ") == 2
    assert body.index(f"Content-Range: bytes 0-999/{size}".encode()) < \
        body.index(f"Content-Range: bytes {size - 10}-{size - 1}/{size}".encode())


def _boot() -> BootService:
    """A BootService over a fixed inventory, with nothing cached."""
    inventory = StaticInventory(hosts=[Host(mac=MAC, ip="127.0.0.1")])
    return BootService(HttpSection(token_secret=SECRET), inventory, None, None,
                       Renderer("templates"), Access(SECRET, inventory, None))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fast_path_never_raises_on_garbage(data):
    boot = _boot()
    request = b"GET /" + data + b"\r\n\r\n"
    parsed = parse_head(request)
    if parsed is not None:  # nothing cached: always the normal path
        assert boot.fast_answer(parsed[0], parsed[1], "127.0.0.1", ("127.0.0.1", 8080),
                                0.0) is None


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
