"""One of our services (``python -m services.<name>``) running inside a lab namespace, its log
in a file: started, waited for until it logs ``event=serving``, stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.netlab import stop_process, wait_for

REPO = Path(__file__).resolve().parents[2]


class LabService:
    """``python -m services.<service>`` in namespace ``ns`` with ``BOOTYARD_<SECTION>__*``
    settings: the class's ``defaults``, then ``settings`` (keys in lower case)."""

    service = ""
    defaults: dict[str, str] = {}

    def __init__(self, ns, redis_url: str, logfile: Path, *,
                 extra_env: dict[str, str] | None = None, **settings: str) -> None:
        """``extra_env``: more environment (other sections' settings, e.g. BOOTYARD_BOOTSTATE__*)."""
        self.logfile = logfile
        section = self.service.upper()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        env.update({"BOOTYARD_REDIS_URL": redis_url, "PYTHONPATH": str(REPO), **(extra_env or {})})
        for key, value in {**self.defaults, **settings}.items():
            env[f"BOOTYARD_{section}__{key.upper()}"] = str(value)
        self.handle = logfile.open("w")
        self.proc = ns.popen(sys.executable, "-m", f"services.{self.service}",
                             stdout=self.handle, stderr=subprocess.STDOUT, env=env,
                             cwd=str(REPO))
        wait_for(self._serving, 20, what=f"{self.service} service to start")

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.service} exited: {self.log()}")
        return "event=serving" in self.log()

    def log(self) -> str:
        return self.logfile.read_text()

    def stop(self) -> None:
        stop_process(self.proc)
        self.handle.close()


class NamedService(LabService):
    """Any of the services by name (``NamedService("tftp", ns, url, log, workers="2")``), up
    once it logs ``event=serving`` or ``event=listening``."""

    def __init__(self, name: str, ns, redis_url: str, logfile: Path, **settings: str) -> None:
        self.service = name
        super().__init__(ns, redis_url, logfile, **settings)

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.service} exited: {self.log()}")
        return "event=serving" in self.log() or "event=listening" in self.log()
