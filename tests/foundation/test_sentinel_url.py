"""``redis+sentinel://`` URLs: parsed into sentinels, service and database, refused in one line
naming what is wrong."""

from __future__ import annotations

import pytest

from shared.store import InventoryError, SentinelTarget, check_url, connect, parse_sentinel_url


def test_hosts_service_db_and_passwords():
    target = parse_sentinel_url(
        "redis+sentinel://:s3cret@10.0.0.1,10.0.0.2:26400,[fd00::3]:26379/bootyard/2"
        "?sentinel_password=sp")
    assert target == SentinelTarget([("10.0.0.1", 26379), ("10.0.0.2", 26400),
                                     ("fd00::3", 26379)], "bootyard", 2, None, "s3cret", "sp")
    assert parse_sentinel_url("redis+sentinel://u:p@h/svc") == SentinelTarget(
        [("h", 26379)], "svc", 0, "u", "p", None)


@pytest.mark.parametrize("url, words", [
    ("redis+sentinel://h1,h2/", "no Sentinel service name"),
    ("redis+sentinel://h1:99999/svc", "port '99999'"),
    ("redis+sentinel://h1/svc/x", "'svc/x' is not SERVICE or SERVICE/DB"),
    ("redis+sentinel://h1/svc?timeout=3", "unknown option 'timeout'"),
    ("redis+sentinel://:pw@/svc", "has no host"),
])
def test_bad_urls_are_named(url, words):
    with pytest.raises(InventoryError, match="Redis URL") as info:
        check_url(url)
    assert words in str(info.value)
    assert "pw" not in str(info.value).replace("***", "")  # the password never printed


async def test_client_finds_no_master_as_unavailable():
    from shared.store import InventoryUnavailable, redis_errors
    client = connect("redis+sentinel://127.0.0.1:1/bootyard/0", timeout=0.5)
    with pytest.raises(InventoryUnavailable, match="Redis unreachable"):
        with redis_errors("admin"):
            await client.ping()
    await client.aclose()
