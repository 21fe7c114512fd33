"""For the tests of the compiled hot paths (shared/native.py): a clean environment and the
package's own tests run again in a child process (on the other build, or on a copy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def env(**extra: str) -> dict[str, str]:
    """This environment without any BOOTYARD_* variable, plus ``extra``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    out.update(extra)
    return out


def run_tests(root: Path, tests: list[str], **extra: str) -> None:
    """``tests`` pass in a child pytest with ``root`` as the import path (none skipped)."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *tests], capture_output=True, text=True, cwd=root, timeout=600,
                         env=env(PYTHONPATH=str(root), **extra))
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
