"""The inventory cache follows Redis: changes by anyone, invalid records, outages."""

import asyncio
import subprocess

import pytest

from harness.redis_server import RedisServer
from harness.waiting import wait_until
from shared import metrics
from shared.cache import BrokenInventory, InventoryCache, StaticInventory
from shared.records import Host, Subnet
from shared.store import InventoryUnavailable, connect

MAC = "52:54:00:12:34:56"
KEY = f"bootyard:host:{MAC}"


class Running:
    def __init__(self, url, **kwargs):
        self.client = connect(url)
        self.cache = InventoryCache(self.client, **kwargs)
        self.stop = asyncio.Event()

    async def __aenter__(self):
        self.task = asyncio.create_task(self.cache.run(self.stop))
        await self.cache.wait_ready(10)
        return self.cache

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 5)
        await self.client.aclose()


def redis_cli(port, *args):
    subprocess.run(["redis-cli", "-p", str(port), *args], check=True, capture_output=True)


async def test_raw_redis_cli_change_is_seen_within_one_second(redis_server, redis_url):
    redis_cli(redis_server.port, "HSET", KEY, "ip", "198.18.5.21", "hostname", "web1")
    async with Running(redis_url) as cache:
        assert cache.mode == "notifications"
        assert cache.host(MAC).hostname == "web1"
        assert cache.host_by_ip("198.18.5.21").mac == MAC
        version = cache.version
        redis_cli(redis_server.port, "HSET", KEY, "ip", "198.18.5.22")
        await wait_until(lambda: cache.host(MAC).ip == "198.18.5.22", timeout=1.0)
        assert cache.host_by_ip("198.18.5.21") is None
        assert cache.host_by_ip("198.18.5.22").mac == MAC
        assert cache.version > version
        redis_cli(redis_server.port, "DEL", KEY)
        await wait_until(lambda: cache.host(MAC) is None, timeout=1.0)
        redis_cli(redis_server.port, "HSET", "bootyard:host:52:54:00:00:00:07", "hostname", "new")
        await wait_until(lambda: cache.host("52:54:00:00:00:07") is not None, timeout=1.0)


async def test_invalid_record_keeps_last_good_version_and_is_counted(redis_server, redis_url,
                                                                     caplog):
    redis_cli(redis_server.port, "HSET", KEY, "ip", "198.18.5.21")
    before = metrics.INVALID_RECORDS.labels("host")._value.get()
    async with Running(redis_url) as cache:
        redis_cli(redis_server.port, "HSET", KEY, "ip", "999.1.1.1", "hostname", "later")
        await wait_until(lambda: metrics.INVALID_RECORDS.labels("host")._value.get() > before, 1.0)
        assert cache.host(MAC).ip == "198.18.5.21"  # the last good version
        redis_cli(redis_server.port, "HSET", "bootyard:host:52:54:00:00:00:08", "ip", "300.0.0.1")
        await wait_until(
            lambda: metrics.INVALID_RECORDS.labels("host")._value.get() > before + 1, 1.0)
        assert cache.host("52:54:00:00:00:08") is None  # never good: unknown
        redis_cli(redis_server.port, "HSET", KEY, "ip", "198.18.5.30")
        await wait_until(lambda: cache.host(MAC).ip == "198.18.5.30", 1.0)
        assert cache.host(MAC).hostname == "later"


async def test_log_line_names_key_field_value_and_reason(redis_server, redis_url, capsys):
    from shared import logs
    logs.configure("kv", "info")
    redis_cli(redis_server.port, "HSET", KEY, "ip", "999.1.1.1")
    async with Running(redis_url):
        pass
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if "inventory_invalid_record" in l)
    assert f"key={KEY}" in line and "field=ip" in line and "value=999.1.1.1" in line
    assert "action=\"treated as unknown\"" in line


async def test_subnet_lookups(redis_server, redis_url):
    redis_cli(redis_server.port, "HSET", "bootyard:subnet:a", "network", "198.18.0.0/16")
    redis_cli(redis_server.port, "HSET", "bootyard:subnet:b", "network", "198.18.5.0/24",
              "relays", "198.19.0.1")
    async with Running(redis_url) as cache:
        assert cache.subnet_containing("198.18.5.9").name == "b"  # most specific
        assert cache.subnet_containing("198.18.7.9").name == "a"
        assert cache.subnet_for_relay("198.19.0.1").name == "b"
        assert cache.subnet_containing("10.0.0.1") is None


async def test_survives_a_redis_restart_and_catches_up(private_redis):
    redis_cli(private_redis.port, "HSET", KEY, "hostname", "before")
    async with Running(private_redis.url) as cache:
        private_redis.kill()
        await wait_until(lambda: metrics.REDIS_UP._value.get() == 0, 5, "the outage noticed")
        assert cache.host(MAC).hostname == "before"  # still answered from memory
        private_redis.start()
        redis_cli(private_redis.port, "HSET", KEY, "hostname", "after")
        await wait_until(lambda: cache.host(MAC) and cache.host(MAC).hostname == "after", 15)
        assert metrics.REDIS_UP._value.get() == 1


async def test_falls_back_to_polling_when_config_is_disabled(tmp_path):
    server = RedisServer(tmp_path, extra_args=("--rename-command", "CONFIG", ""))
    server.start()
    try:
        async with Running(server.url, poll_interval=0.2) as cache:
            assert cache.mode == "polling"
            redis_cli(server.port, "HSET", KEY, "hostname", "polled")
            await wait_until(lambda: cache.host(MAC) is not None, 1.0)
    finally:
        server.kill()


def test_doubles():
    static = StaticInventory(hosts=[Host(mac=MAC, ip="10.0.0.5")],
                             subnets=[Subnet(name="lab", network=__import__("ipaddress")
                                             .IPv4Network("10.0.0.0/24"))])
    assert static.host(MAC).ip == "10.0.0.5" and static.host_by_ip("10.0.0.5").mac == MAC
    assert static.subnet_containing("10.0.0.9").name == "lab"
    assert StaticInventory().host(MAC) is None
    with pytest.raises(InventoryUnavailable):
        BrokenInventory().host(MAC)


async def test_unix_socket_redis_for_namespaced_services(tmp_path):
    server = RedisServer(tmp_path, unix_socket=True)
    server.start()
    try:
        assert server.url.startswith("unix://")
        async with Running(server.url) as cache:
            client = connect(server.url)
            await client.hset(KEY, mapping={"hostname": "over-unix"})
            await client.aclose()
            await wait_until(lambda: cache.host(MAC) is not None, 1.0)
    finally:
        server.kill()


def test_one_notification_pattern_covers_every_kind_and_no_lease_key(redis_server, redis_url):
    """The cache subscribes to one glob (notification_pattern) instead of one per kind: Redis's
    own matcher (SCAN MATCH uses the one PSUBSCRIBE uses) finds every kind's keys with it, and
    none of the keys the DHCP service writes per packet (their notifications are matched
    against every subscribed pattern: the fewer, the cheaper)."""
    import redis

    from shared import keys
    from shared.cache import notification_pattern
    from shared.schema import KINDS

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    objects = {keys.object_key(name, "x1") for name in KINDS}
    per_packet = {keys.lease("10.0.0.5"), keys.pool("lab"), keys.BY_CLIENT_PREFIX + "lab",
                  keys.ATTEMPT_PREFIX + MAC, keys.EVENTS_STREAM, keys.host_events(MAC)}
    for key in objects | per_packet:
        client.hset(key, "f", "v")
    found = set(client.scan_iter(match=notification_pattern(), count=1000))
    assert found == objects
    client.close()
