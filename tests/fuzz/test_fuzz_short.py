"""The short run of ``make fuzz`` (docs/benchmarks.md has the long one's figures): per protocol,
the codec under atheris (coverage-guided) and the running service fed mutated messages in a lab
namespace, then checked alive, answering a normal client (udhcpc, tftp-hpa, curl, an AoE read,
an iSCSI login and read and iscsi-inq), with no file descriptor leak, no memory growth beyond
the bound and no traceback in its log.
About half a minute per protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.parametrize("protocol", ["dhcp", "tftp", "aoe", "http", "iscsi"])
def test_fuzz_short_run(protocol, tmp_path):
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fuzz" / "run.py"), "--protocols", protocol,
         "--inputs", "30000", "--seconds", "15", "--service-inputs", "20000",
         "--service-seconds", "15", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=400)
    result = [line for line in run.stdout.splitlines() if line.startswith("RESULT fuzz")]
    assert run.returncode == 0 and result and result[-1].endswith("ok=yes"), \
        run.stdout[-3000:] + run.stderr[-3000:]
    fields = dict(item.split("=", 1) for item in result[-1].split()[2:])
    assert int(fields["codec_inputs"]) > 0 and int(fields["service_inputs"]) > 0
    assert int(fields["coverage"]) > 0
