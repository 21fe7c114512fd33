"""Helpers for the HTTP service tests: the inventory wrapper and the service as a process
(fixtures are in conftest.py; this module has a unique name so other areas' conftest modules
never shadow it)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.netlab import stop_process
from services.http.access import Access
from services.http.render import Renderer
from services.http.server import BootService
from shared.leases import Leases
from shared.schema import KINDS

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789"
MAC = "52:54:00:12:34:56"


class Inventory:
    """The inventory a test builds, and the running service pieces around it."""

    def __init__(self, client, store, cache, events, cfg, tmp: Path) -> None:
        self.client, self.store, self.cache, self.events = client, store, cache, events
        self.cfg, self.tmp = cfg, tmp

    async def put(self, kind_name: str, ident: str, **fields) -> None:
        await self.store.write(KINDS[kind_name], ident, {k: str(v) for k, v in fields.items()},
                               mode="replace")
        await self.cache.refresh()

    async def events_of(self, kind: str | None = None, mac: str | None = None) -> list:
        await self.events.flush()
        found = await self.events.read(mac, count=1000)
        return [e for e in found if kind is None or e.kind == kind]




def make_service(inv: Inventory, **overrides) -> BootService:
    cfg = dataclasses.replace(inv.cfg, **overrides)
    return BootService(cfg, inv.cache, inv.events, inv.store, Renderer(cfg.templates_dir),
                       Access(cfg.token_secret, inv.cache, Leases(inv.client)))




# ---------------------------------------------------------------- the service as a real process

ADMIN_TOKEN = "admin-token-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``python -m services.http`` on loopback with its own directories and ports."""

    def __init__(self, tmp: Path, redis_url: str, **settings) -> None:
        self.tmp = tmp
        self.port, self.admin_port, self.metrics_port = free_port(), free_port(), free_port()
        self.images = tmp / "images"
        self.templates = tmp / "templates"
        self.images.mkdir(exist_ok=True)
        (tmp / "mirror").mkdir(exist_ok=True)
        if not self.templates.exists():
            shutil.copytree(REPO / "templates", self.templates)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        self.env.update({
            "BOOTYARD_REDIS_URL": redis_url,
            "BOOTYARD_HTTP__HOST": "127.0.0.1", "BOOTYARD_HTTP__PORT": str(self.port),
            "BOOTYARD_HTTP__ADMIN_PORT": str(self.admin_port),
            "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_HTTP__METRICS_PORT": str(self.metrics_port),
            "BOOTYARD_HTTP__TOKEN_SECRET": SECRET, "BOOTYARD_HTTP__ADMIN_TOKEN": ADMIN_TOKEN,
            "BOOTYARD_HTTP__IMAGES_ROOT": str(self.images),
            "BOOTYARD_HTTP__MIRROR_ROOT": str(tmp / "mirror"),
            "BOOTYARD_HTTP__TEMPLATES_DIR": str(self.templates),
            "BOOTYARD_HTTP__SAN_SERVER": "10.0.0.1",
        })
        self.env.update({f"BOOTYARD_HTTP__{k.upper()}": str(v) for k, v in settings.items()})
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "http.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "services.http"], cwd=REPO,
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"http service exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"http service did not become healthy: {self.log.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc)

