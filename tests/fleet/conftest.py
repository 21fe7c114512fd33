"""Fixtures of the fleet tests (groups, overrides, one-shot boots, custom DHCP options): the
`bootyard` command in-process against the test's Redis, and a raw Redis client."""

from __future__ import annotations

import pytest
import redis

from cli.commands import main


@pytest.fixture
def cli(redis_url, monkeypatch, capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of ``bootyard`` on the test's Redis."""
    monkeypatch.setenv("BOOTYARD_REDIS_URL", redis_url)
    monkeypatch.delenv("BOOTYARD_CONFIG", raising=False)

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
