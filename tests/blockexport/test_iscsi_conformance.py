"""libiscsi's conformance suite (Debian's iscsi-test-cu 1.19.0) against the block export
service on loopback: every test passes or is skipped for a reason docs/blockexport.md gives
("iscsi-test-cu results"); a new skip or any failure fails this test."""

from __future__ import annotations

import re
import subprocess

import pytest
from iscsiclient import LoopbackService

IQN = "iqn.2026-12.org.example:conformance"
IQN_RO = "iqn.2026-12.org.example:conformance-ro"
SIZE = 64 << 20

# Skipped by iscsi-test-cu --dataloss --test=ALL against a writable plain export, by reason
# (the same list is in docs/blockexport.md).
SKIPS = {
    "not removable": {f"PreventAllow.{t}" for t in (
        "Simple", "Eject", "ITNexusLoss", "Logout", "WarmReset", "ColdReset", "LUNReset",
        "2ITNexuses")} | {"StartStopUnit.Simple"},
    "no EXTENDED COPY": {f"ExtendedCopy.{t}" for t in (
        "Simple", "ParamHdr", "DescrLimits", "DescrType", "ValidTgtDescr", "ValidSegDescr")}
    | {"ReceiveCopyResults.CopyStatus", "ReceiveCopyResults.OpParams"},
    "no WRITE ATOMIC": {f"WriteAtomic16.{t}" for t in (
        "Simple", "BeyondEol", "ZeroBlocks", "WriteProtect", "DpoFua", "VPD")},
    "no --allow-sanitize (and no SANITIZE)": {f"Sanitize.{t}" for t in (
        "BlockErase", "BlockEraseReserved", "CryptoErase", "CryptoEraseReserved",
        "ExitFailureMode", "InvalidServiceAction", "Overwrite", "OverwriteReserved",
        "Readonly", "Reservations", "Reset")},
    "LBPPB 1": {"CompareAndWrite.InvalidDataOutSize", "WriteSame10.InvalidDataOutSize",
                "WriteSame10.UnmapUnaligned", "WriteSame16.InvalidDataOutSize",
                "WriteSame16.UnmapUnaligned"},
    "writable export": {"ReadOnly.ReadOnlySBC"},
    "one URL": {f"MultipathIO.{t}" for t in ("Simple", "Reset", "CompareAndWrite",
                                              "CompareAndWriteAsync")},
    "no TARGET COLD RESET": {"Reserve6.TargetColdReset"},
}


def results(output: str) -> tuple[dict[str, str], set[str]]:
    """(test -> passed/FAILED, tests that said [SKIPPED]) from iscsi-test-cu's output."""
    outcome: dict[str, str] = {}
    skipped: set[str] = set()
    suite = current = ""
    for line in output.splitlines():
        found = re.match(r"Suite: (\S+)", line)
        if found:
            suite = found.group(1)
        found = re.search(r"Test: (\S+) \.\.\.", line)
        if found:
            current = f"{suite}.{found.group(1)}"
            outcome[current] = "running"
        if current and "[SKIPPED]" in line:
            skipped.add(current)
        for word in ("passed", "FAILED"):
            if re.search(rf"(^|\.\.\.|\s){word}\s*$", line) and current:
                outcome[current] = word
    return outcome, skipped


def run_suite(url: str, *extra: str) -> str:
    done = subprocess.run(["iscsi-test-cu", "--dataloss", *extra, url], capture_output=True,
                          text=True, timeout=900)
    return done.stdout + done.stderr


@pytest.fixture
def service(unix_redis, tmp_path):
    plain, golden = tmp_path / "plain.img", tmp_path / "ro.img"
    for path in (plain, golden):
        with open(path, "wb") as handle:
            handle.truncate(SIZE)
    r = unix_redis.client()
    r.hset("bootyard:export:conformance", mapping={"kind": "iscsi", "backing": str(plain),
                                                    "iqn": IQN})
    r.hset("bootyard:export:conformance-ro", mapping={"kind": "iscsi", "backing": str(golden),
                                                       "iqn": IQN_RO, "readonly": "yes"})
    svc = LoopbackService(unix_redis.url, tmp_path / "be.log",
                          overlay_root=str(tmp_path / "overlays"))
    yield svc
    svc.stop()


def test_iscsi_test_cu_all(service):
    output = run_suite(f"iscsi://127.0.0.1:{service.port}/{IQN}/0", "--test=ALL")
    outcome, skipped = results(output)
    assert len(outcome) == 230, output[-2000:]
    failed = sorted(t for t, word in outcome.items() if word != "passed")
    assert not failed, f"failed: {failed}\n{output[-4000:]}"
    expected = set().union(*SKIPS.values())
    assert skipped == expected, (f"new skips: {sorted(skipped - expected)}; "
                                 f"no longer skipped: {sorted(expected - skipped)}")


def test_iscsi_test_cu_read_only(service):
    output = run_suite(f"iscsi://127.0.0.1:{service.port}/{IQN_RO}/0", "--test=SCSI.ReadOnly")
    outcome, skipped = results(output)
    assert outcome == {"ReadOnly.ReadOnlySBC": "passed"} and not skipped, output[-2000:]
