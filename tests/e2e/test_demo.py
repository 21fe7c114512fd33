"""`make demo` as the README promises it: exit 0, and a timeline with DHCP, HTTP, kernel and root
stages of the demo host (runs `python -m lab demo`, which builds and removes its own lab)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.netlab import list_namespaces
from lab.assets import REPO

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.e2e]


def test_demo_prints_the_boot_timeline_and_cleans_up():
    proc = subprocess.Popen([sys.executable, "-m", "lab", "demo"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    out = stdout
    for needle in ("dhcp.ack", "http.script", "http.file", "path=/images/vmlinuz",
                   "path=/images/root.squashfs", "lab.guest_init", "lab.live_root",
                   "lab.marker", "time each stage took", "kernel start -> /init",
                   "squashfs fetch, overlay, switch_root", "total, power-on -> marker"):
        assert needle in out, f"{needle!r} missing from the demo's output:\n{out[-3000:]}"
    # The demo removed its namespaces (named by-<its pid>-...; other processes' may exist).
    assert not [ns for ns in list_namespaces() if ns.startswith(f"by-{proc.pid}-")]
