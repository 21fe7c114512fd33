"""Shared fixtures: a real redis-server, the network lab, and the slow/lab test switches.

``pytest --skip-slow`` (or BOOTYARD_SKIP_SLOW=1) skips tests marked ``slow`` on a developer's
machine; CI (CI=true) never skips them. Tests marked ``lab`` need root for network namespaces:
without root they are skipped locally and fail in CI.
"""

from __future__ import annotations

import os

import pytest

from harness.netlab import Lab
from harness.redis_server import RedisServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser):
    parser.addoption("--skip-slow", action="store_true",
                     help="skip tests marked slow (QEMU boots, load tests); CI never does")


def pytest_collection_modifyitems(config, items):
    skip_slow = config.getoption("--skip-slow") or os.environ.get("BOOTYARD_SKIP_SLOW") == "1"
    if IN_CI:
        skip_slow = False
    for item in items:
        if skip_slow and "slow" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="slow test skipped with --skip-slow"))
        if "lab" in item.keywords and os.geteuid() != 0 and not IN_CI:
            item.add_marker(pytest.mark.skip(reason="network lab needs root"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """URL of the session's Redis, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.config_set("notify-keyspace-events", "")
    client.close()
    return redis_server.url


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own, for tests that stop, kill or restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def lab():
    """A network lab torn down after the test, pass or fail."""
    with Lab() as the_lab:
        yield the_lab
