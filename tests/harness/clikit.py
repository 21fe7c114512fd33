"""Fixtures of the CLI tests, for any test directory's conftest to import: the `bootyard`
command run in-process against the test's Redis, and a raw Redis client to look behind it."""

from __future__ import annotations

import pytest
import redis


@pytest.fixture
def cli(redis_url, monkeypatch, capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of ``bootyard`` on the test's Redis."""
    from cli.commands import main

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
