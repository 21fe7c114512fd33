"""``bootyard doctor``'s floor: its settings, one report line per step, what the inventory
checks found (for the probes), and the one HTTP fetch every check uses (cli/doctor.py)."""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from typing import Any

from services.blockexport.settings import BlockexportSection
from services.dhcp.settings import DhcpSection
from services.http.settings import HttpSection
from services.tftp.settings import TftpSection
from shared import bootplan
from shared.settings import CommonSettings


@dataclasses.dataclass(frozen=True)
class DoctorSettings(CommonSettings):
    """The sections the doctor reads from the shared config file (BOOTYARD_CONFIG)."""
    dhcp: DhcpSection = dataclasses.field(default_factory=DhcpSection)
    tftp: TftpSection = dataclasses.field(default_factory=TftpSection)
    http: HttpSection = dataclasses.field(default_factory=HttpSection)
    blockexport: BlockexportSection = dataclasses.field(default_factory=BlockexportSection)


@dataclasses.dataclass(frozen=True)
class Step:
    area: str  # inventory, dhcp, tftp, http, host
    what: str
    ok: bool | None  # None: skipped
    detail: str
    fix: str = ""

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        text = f"{word}  {self.area:<9} {self.what}: {self.detail}"
        return text + (f"  -> fix: {self.fix}" if self.fix and self.ok is False else "")


class Report:
    def __init__(self, out) -> None:
        self.out = out
        self.steps: list[Step] = []

    def add(self, area: str, what: str, ok: bool | None, detail: str, fix: str = "") -> bool:
        step = Step(area, what, ok, detail, fix)
        self.steps.append(step)
        print(step.line(), file=self.out, flush=True)
        return bool(ok)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.steps if s.ok is False)

    def summary(self) -> int:
        passed = sum(1 for s in self.steps if s.ok)
        skipped = sum(1 for s in self.steps if s.ok is None)
        print(f"{len(self.steps)} checks: {passed} passed, {self.failed} failed, "
              f"{skipped} skipped", file=self.out)
        return 1 if self.failed else 0


def base_url(cfg: DoctorSettings, server_ip: str | None = None) -> str:
    """The HTTP service's base URL as machines are told it."""
    if cfg.http.public_url:
        return cfg.http.public_url.rstrip("/")
    if cfg.dhcp.http_base_url:
        return cfg.dhcp.http_base_url.rstrip("/")
    return f"http://{server_ip or '127.0.0.1'}:{cfg.http.port}"


@dataclasses.dataclass
class Found:
    host: Any = None
    profile: Any = None
    export: Any = None
    subnet: Any = None
    plan: bootplan.Plan | None = None
    netboots: tuple[str, ...] = ()  # the names of the enabled Apple NetBoot images


def http_fetch(url: str, method: str = "GET", limit: int = 65536) -> tuple[int, bytes, str]:
    """(status, first ``limit`` bytes of the body, Content-Length); status 0: unreachable."""
    req = urllib.request.Request(url, method=method,
                                 headers={"User-Agent": "bootyard-doctor"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read(limit) if method == "GET" else b""
            return resp.status, body, resp.headers.get("Content-Length", "?")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(limit), exc.headers.get("Content-Length", "?")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason).encode(), "?"
