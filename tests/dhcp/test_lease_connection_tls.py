"""The lease store over TLS (``rediss://``): redis-py makes the TLS connection, the lease store
reads its replies itself (shared/lease_wire.py ``Replies``) from the TLS transport, on asyncio's
loop and on uvloop's (the services run on uvloop)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import uvloop

from harness.redis_server import RedisServer, free_port
from shared import keys, leases
from shared.leases import LeaseStore

SUBNET = "lab"
RANGES = (("198.18.0.100", "198.18.0.103"),)
MAC = "52:54:00:00:05:01"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls-redis")
    key, cert = work / "redis.key", work / "redis.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    server = RedisServer(work / "redis", extra_args=(
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"))
    server.start()
    try:
        yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_check_hostname=false"
    finally:
        server.stop()


async def exchange(url: str, mac: str) -> None:
    client = leases.connect(url)
    store = LeaseStore(client)
    try:
        await store.sync_pool(SUBNET, RANGES)
        now = int(time.time())
        offered = await store.step(store.offer_step(SUBNET, mac, reserved=None, requested=None,
                                                    hostname="h", now=now))
        acked = await store.step(store.request_step(SUBNET, mac, offered.ip, reserved=None,
                                                    hostname="h", lease_time=600, now=now))
        assert (acked.kind, acked.state) == ("ok", "bound")
        assert (await client.hgetall(keys.lease(offered.ip)))["mac"] == mac
        await asyncio.wait_for(store.aclose(), 1.0)
    finally:
        await store.aclose()
        await client.aclose()


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_a_dora_over_tls(tls_redis, loop_factory):
    mac = f"52:54:00:00:05:{1 if loop_factory is asyncio.new_event_loop else 2:02x}"
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(exchange(tls_redis, mac))
