"""The boot storm (issue 19) at 100 machines: ``make bench-storm``'s clients against bootyard.

100 simulated machines (half BIOS, half UEFI, each its own MAC on its own macvlan) power on at
once in a lab namespace and boot as firmware and iPXE do: DHCP, TFTP of iPXE, iPXE's DHCP, the
per-host script, kernel and initrd over HTTP, every file checked by SHA-256, firmware-like
retries (scripts/bench/storm_client.py). bootyard runs as deployed (services as processes, Redis
with AOF). Every machine must finish, and every file's hash match."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "bench"))

import storm  # noqa: E402

pytestmark = pytest.mark.lab


def test_storm_of_100_machines_all_boot_with_every_hash_matching(tmp_path, capsys):
    out = tmp_path / "storm.json"
    code = storm.main(["--clients", "100", "--stacks", "bootyard", "--verify", "sha256",
                       "--deadline", "90", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    (run,) = json.loads(out.read_text())
    assert run["stack"] == "bootyard" and run["clients"] == 100, printed
    assert run["failed"] == 0 and run["finished"] == 100, (run["reasons"], printed)
    assert run["verify"] == "sha256" and run["all_files_verified"], printed
    assert run["files_verified"] == 100 * storm.FILES_PER_MACHINE, printed
    for stage in storm.STAGES:
        assert run["stages"][stage]["n"] == 100, (stage, printed)
    assert printed.rstrip().splitlines()[-1].startswith(
        "RESULT storm clients=100 bootyard_s="), printed
    assert printed.rstrip().endswith("failures=0"), printed
