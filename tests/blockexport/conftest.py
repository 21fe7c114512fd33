"""Fixtures of the block export tests: the service in a lab namespace (serviceproc.py), a Redis
on a Unix socket both reach (tests/harness/dhcpkit.py)."""

from __future__ import annotations

import pytest
from serviceproc import BlockexportProcess

from harness.dhcpkit import unix_redis  # noqa: F401 - a fixture


@pytest.fixture
def blockexport_process():
    started: list[BlockexportProcess] = []

    def start(ns, redis_url, logfile, **settings) -> BlockexportProcess:
        proc = BlockexportProcess(ns, redis_url, logfile, **settings)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
