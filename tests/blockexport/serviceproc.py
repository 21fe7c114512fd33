"""``python -m services.blockexport`` in a lab namespace, for the service tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.netlab import stop_process, wait_for

REPO = Path(__file__).resolve().parents[2]


class BlockexportProcess:
    """``python -m services.blockexport`` inside a namespace, its log in a file."""

    def __init__(self, ns, redis_url: str, logfile: Path, **settings: str) -> None:
        self.logfile = logfile
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        env.update({"BOOTYARD_REDIS_URL": redis_url, "BOOTYARD_BLOCKEXPORT__INTERFACE": "eth0",
                    "BOOTYARD_BLOCKEXPORT__METRICS_HOST": "127.0.0.1",
                    "BOOTYARD_BLOCKEXPORT__METRICS_PORT": "0",
                    "BOOTYARD_BLOCKEXPORT__HOUSEKEEPING_INTERVAL": "0.5",
                    "PYTHONPATH": str(REPO)})
        for key, value in settings.items():
            env[f"BOOTYARD_BLOCKEXPORT__{key.upper()}"] = str(value)
        self.handle = logfile.open("w")
        self.proc = ns.popen(sys.executable, "-m", "services.blockexport", stdout=self.handle,
                             stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        wait_for(self._serving, 20, what="blockexport service to start")

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"blockexport exited: {self.log()}")
        return "event=serving" in self.log()

    def log(self) -> str:
        return self.logfile.read_text()

    def stop(self) -> None:
        stop_process(self.proc)
        self.handle.close()
