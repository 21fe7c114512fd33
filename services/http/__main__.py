"""``python -m services.http``: the HTTP service (boot scripts, install files, files, admin API).

This module wires the service: it checks the settings, connects to Redis, builds the inventory
cache, the event log, the :class:`BootService` and the :class:`AdminApi`, and starts their
listeners (services/http/transport.py). With ``http.workers`` above 1 this process is a
supervisor (:func:`shared.runtime.supervise`): it starts that many worker processes sharing the
boot/file port, serves their summed ``/metrics`` on ``http.metrics_port``, and worker 0 also
serves the admin API.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from pathlib import Path

from services.http import transport
from services.http.access import Access
from services.http.accounting import Accounting
from services.http.adminapi import AdminApi
from services.http.board import Board
from services.http.console import Console
from services.http.render import Renderer
from services.http.server import BootService
from services.http.settings import HttpSettings, parse_tokens
from shared import logs, metrics, runtime
from shared.audit import DirectRecorder
from shared.cache import InventoryCache
from shared.events import EventLog
from shared.leases import Leases
from shared.runtime import StartupError
from shared.store import InventoryStore, connect

log = logs.get_logger("http")


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
    if cfg.admin_enabled and not (cfg.admin_token or cfg.admin_tokens) and \
            not is_loopback(cfg.admin_host):
        raise StartupError(f"the admin API would listen on {cfg.admin_host} without a token: set "
                           "http.admin_token, or bind http.admin_host to 127.0.0.1")
    if cfg.workers > 1 and cfg.port == 0:
        raise StartupError("http.workers > 1 needs a fixed http.port (workers share it)")
    if not Path(cfg.templates_dir).is_dir():
        log.warning("templates_dir_missing", templates_dir=cfg.templates_dir,
                    effect="install files will fail to render until it exists")


async def serve(settings, stop: asyncio.Event) -> None:
    cfg = settings.http
    check_settings(cfg)
    worker = runtime.worker()
    own_metrics_port = cfg.metrics_port != cfg.port
    if cfg.workers > 1 and worker is None:
        await runtime.supervise("http", cfg.workers, stop, metrics_host=cfg.metrics_host,
                                metrics_port=cfg.metrics_port if own_metrics_port else None,
                                metrics_setting="http.metrics_port")
        return
    limits = transport.Limits(header_timeout=cfg.header_timeout, idle_timeout=cfg.idle_timeout,
                              max_connections=cfg.max_connections, max_body=cfg.max_body)
    client = connect(settings.redis.url, timeout=settings.redis.timeout)
    # the HTTP service records inventory changes made with redis-cli in the audit trail
    inventory = InventoryCache(client, service="http", on_raw=DirectRecorder(client).seen)
    events = EventLog(client, "http", known=inventory.knows_host)
    store = InventoryStore(client, settings.redis.url)
    leases = Leases(client)
    accounting = Accounting()
    boot = BootService(cfg, inventory, events, store, Renderer(cfg.templates_dir),
                       Access(cfg.token_secret, inventory, leases), accounting,
                       discovery_cfg=settings.discovery)
    fast = None
    if cfg.fast_path:
        if transport.fast_path_supported():
            fast = boot.fast_answer
        else:
            log.warning("fast_path_unavailable", reason="this aiohttp's RequestHandler "
                        "changed; serving every request through aiohttp")
    # the hosts' boot states: computed by the process serving the admin API (board.py says why)
    states = Board(events, inventory, settings.bootstate, on_event=boot.file_events.seen) \
        if worker is None or worker.index == 0 else None
    runners = []
    try:
        runner = await transport.start_listener(boot.app(), cfg.host, cfg.port, "http.port",
                                                limits=limits, fast=fast,
                                                reuse_port=worker is not None)
        runners.append(runner)
        ports = {"port": metrics.bound_port(runner)}
        if cfg.admin_enabled and (worker is None or worker.index == 0):
            api = AdminApi(store, events, cfg.admin_token, cfg.token_secret, cfg.public_url,
                           tokens=parse_tokens(cfg.admin_tokens),
                           hostnames=cfg.admin_hostnames, accounting=accounting,
                           max_body=cfg.max_body, leases=leases, board=states,
                           power=settings.power,
                           console=Console(cfg.admin_token) if cfg.console else None)
            runner = await transport.start_listener(api.app(), cfg.admin_host, cfg.admin_port,
                                                    "http.admin_port", limits=limits)
            runners.append(runner)
            ports["admin_port"] = metrics.bound_port(runner)
        if own_metrics_port and worker is None:  # a supervisor serves the workers' metrics
            with runtime.listening("http.metrics_port", cfg.metrics_host, cfg.metrics_port):
                runner = await metrics.start_metrics_server(cfg.metrics_host, cfg.metrics_port,
                                                            boot.healthy)
            runners.append(runner)
            ports["metrics_port"] = metrics.bound_port(runner)
        extra = {"worker": worker.index} if worker else {}
        log.info("listening", host=cfg.host, pid=os.getpid(), **ports, **extra)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(inventory.run(stop))
            tasks.create_task(events.run(stop))
            if states is not None:
                tasks.create_task(states.run(stop))
            await stop.wait()
            for runner in reversed(runners):
                await runner.cleanup()
            runners.clear()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        accounting.flush()
        await client.aclose()


def main(argv=None) -> int:
    return runtime.run_service("http", HttpSettings, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
