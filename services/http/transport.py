"""Listeners and processes: the boot/file listener (optionally several worker processes sharing
the port with SO_REUSEPORT), the admin API listener and the metrics listener.

``serve(settings, stop)`` refuses to start (StartupError) when the settings are unsafe: no
``http.token_secret``, or an admin API without ``http.admin_token`` on a non-loopback address.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from services.http import fastpath
from services.http.access import Access
from services.http.adminapi import AdminApi
from services.http.fastpath import FastAppRunner
from services.http.render import Renderer
from services.http.server import BootService
from shared import logs, metrics
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.runtime import StartupError
from shared.store import InventoryStore, connect

log = logs.get_logger("http")
WORKER_ENV = "BY_HTTP_WORKER"  # set in worker processes (not a BOOTYARD_ setting)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(cfg) -> None:
    """Refuse unsafe or impossible settings before anything binds."""
    if not cfg.token_secret:
        raise StartupError("http.token_secret is empty: set it (BOOTYARD_HTTP__TOKEN_SECRET) to a "
                           "long random string, e.g. the output of `openssl rand -hex 32`; "
                           "per-host install tokens are derived from it")
    if cfg.admin_enabled and not cfg.admin_token and not is_loopback(cfg.admin_host):
        raise StartupError(f"the admin API would listen on {cfg.admin_host} without a token: set "
                           "http.admin_token, or bind http.admin_host to 127.0.0.1")
    if cfg.workers > 1 and cfg.port == 0:
        raise StartupError("http.workers > 1 needs a fixed http.port (workers share it)")
    if not Path(cfg.templates_dir).is_dir():
        log.warning("templates_dir_missing", templates_dir=cfg.templates_dir,
                    effect="install files will fail to render until it exists")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_workers(count: int) -> list[subprocess.Popen]:
    """Start ``count`` more processes serving the boot listener on the same port."""
    env = dict(os.environ)
    env[WORKER_ENV] = "1"
    env["BOOTYARD_HTTP__WORKERS"] = "1"
    argv = [sys.executable, "-m", "services.http", *sys.argv[1:]]
    return [subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent) for _ in range(count)]


async def _start_site(app: web.Application, host: str, port: int, *, reuse_port: bool = False,
                      fast=None) -> tuple[web.AppRunner, int]:
    runner = FastAppRunner(app, fast, access_log=None, handle_signals=False,
                           shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return runner, metrics.bound_port(runner)


async def serve(settings, stop: asyncio.Event) -> None:
    cfg = settings.http
    check_settings(cfg)
    worker = os.environ.get(WORKER_ENV) == "1"
    multi = worker or cfg.workers > 1
    client = connect(settings.redis.url, timeout=settings.redis.timeout)
    inventory = InventoryCache(client, service="http")
    events = EventLog(client, "http", known=inventory.knows_host)
    store = InventoryStore(client, settings.redis.url)
    leases = Leases(client)
    renderer = Renderer(cfg.templates_dir)
    boot = BootService(cfg, inventory, events, store, renderer,
                       Access(cfg.token_secret, inventory, leases))
    runners: list[web.AppRunner] = []
    children: list[subprocess.Popen] = []
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(inventory.run(stop))
            tasks.create_task(events.run(stop))
            fast = fastpath.FastAnswers(boot) if cfg.fast_path and fastpath.supported() else None
            if cfg.fast_path and fast is None:
                log.warning("fast_path_unavailable", reason="this aiohttp's RequestHandler "
                            "changed; serving every request through aiohttp")
            runner, port = await _start_site(boot.app(), cfg.host, cfg.port, reuse_port=multi,
                                             fast=fast)
            runners.append(runner)
            ports = {"port": port}
            if not worker:
                if cfg.admin_enabled:
                    api = AdminApi(store, events, cfg.admin_token, cfg.token_secret,
                                   cfg.public_url, leases=leases)
                    runner, ports["admin_port"] = await _start_site(
                        api.app(), cfg.admin_host, cfg.admin_port)
                    runners.append(runner)
                if cfg.metrics_port != cfg.port:
                    runner = await metrics.start_metrics_server(
                        cfg.metrics_host, cfg.metrics_port, boot.healthy)
                    runners.append(runner)
                    ports["metrics_port"] = metrics.bound_port(runner)
                if cfg.workers > 1:
                    children = start_workers(cfg.workers - 1)
            log.info("listening", host=cfg.host, worker=worker, workers=cfg.workers,
                     pid=os.getpid(), **ports)
            await stop.wait()
            for child in children:
                child.terminate()
            for runner in runners:
                await runner.cleanup()
            runners.clear()
    finally:
        for runner in runners:
            await runner.cleanup()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
        await client.aclose()
