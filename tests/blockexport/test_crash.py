"""The durability contract under kill -9: a writer process (tests/blockexport/cow_writer.py) is
killed at a random point of a write workload, 60 times; after each kill every write it had been
told was durable reads back exactly, every other sector holds either its previous content or one
of the writes in flight (never a mix of two writes inside one sector), and the golden image's
checksum is unchanged. Every fifth round one host's overlay is reset first, so kills also land
while an overlay is being created. A quarter of the batches are discards (SCSI UNMAP): an
answered one reads back as zeros on the plain disk and as golden on an overlay (the 4 KiB
blocks it covers whole; the others keep their data); one in flight leaves each sector as it was
or as discarded."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.blockexport.storage import PlainDisk
from services.blockexport.storage_cow import CowDisk

ROUNDS = 60
DISK = 1 << 20  # 1 MiB: 2,048 sectors
WRITER = Path(__file__).with_name("cow_writer.py")
REPO = Path(__file__).parents[2]


def sector(write_id: int, lba: int) -> bytes:
    return (write_id.to_bytes(8, "little") + lba.to_bytes(8, "little")) * 32


class Reader(threading.Thread):
    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.issued: dict[int, dict] = {}
        self.acked: list[int] = []
        self.cond = threading.Condition()

    def run(self) -> None:
        for line in self.stream:
            kind, _, rest = line.strip().partition(" ")
            with self.cond:
                if kind == "I":
                    batch = json.loads(rest)
                    self.issued[batch["batch"]] = batch
                elif kind == "A":
                    self.acked.append(int(rest))
                self.cond.notify_all()

    def wait_acks(self, count: int, timeout: float = 20.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.acked) >= count, timeout), \
                f"writer acknowledged {len(self.acked)} batches, waited for {count}"


OVERLAY_BLOCK = 8  # sectors in a 4 KiB overlay block


def discarded(batch: dict, golden: bytes) -> dict[int, bytes]:
    """What each sector a discard batch changes reads back as once it is done."""
    out: dict[int, bytes] = {}
    for lba, count in batch["discards"]:
        if batch["target"] == "plain":
            out.update((s, bytes(512)) for s in range(lba, lba + count))
            continue
        first = -(-lba // OVERLAY_BLOCK)
        last = (lba + count) // OVERLAY_BLOCK
        for s in range(first * OVERLAY_BLOCK, last * OVERLAY_BLOCK):
            out[s] = golden[s * 512:(s + 1) * 512]
    return out


def check_round(images: dict[str, bytearray], disks: dict, reader: Reader,
                golden: bytes) -> None:
    acked = set(reader.acked)
    for target, image in images.items():
        allowed: dict[int, set[bytes]] = {}
        expected = bytearray(image)
        for batch_id in sorted(reader.issued):
            batch = reader.issued[batch_id]
            if batch["target"] != target:
                continue
            if "discards" in batch:
                for s, data in discarded(batch, golden).items():
                    if batch_id in acked:
                        expected[s * 512:(s + 1) * 512] = data
                        allowed.pop(s, None)
                    else:
                        allowed.setdefault(s, set()).add(data)
                continue
            for write_id, lba, count in batch["writes"]:
                for s in range(lba, lba + count):
                    data = sector(write_id, s)
                    if batch_id in acked:
                        expected[s * 512:(s + 1) * 512] = data
                        allowed.pop(s, None)  # an answered later write supersedes
                    else:
                        allowed.setdefault(s, set()).add(data)
        actual = disks[target].read(0, DISK)
        for s in range(DISK // 512):
            got = actual[s * 512:(s + 1) * 512]
            want = bytes(expected[s * 512:(s + 1) * 512])
            assert got == want or got in allowed.get(s, ()), (
                f"{target} sector {s}: neither its last answered write nor one in flight "
                f"(first 16 bytes {got[:16].hex()}, want {want[:16].hex()})")
        image[:] = actual  # the next round starts from what is there now


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "writeback"])
def test_kill_9_at_random_points(tmp_path, mode):
    """``writeback``: the writes of an iSCSI export with WCE 1 (``sync=False``), answered
    once in the kernel: a kill -9 must lose none of them either, and the overlay's map must
    stay consistent with its data."""
    rng = random.Random(20261205)
    rounds = ROUNDS if mode == "sync" else ROUNDS // 2
    golden = tmp_path / "golden.img"
    golden.write_bytes(rng.randbytes(DISK))
    golden_bytes = golden.read_bytes()
    golden_sum = hashlib.sha256(golden_bytes).hexdigest()
    plain = tmp_path / "plain.img"
    plain.write_bytes(rng.randbytes(DISK))
    root = tmp_path / "overlays"
    images = {"cow:52:54:00:00:00:01": bytearray(golden.read_bytes()),
              "cow:52:54:00:00:00:02": bytearray(golden.read_bytes()),
              "plain": bytearray(plain.read_bytes())}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    total_acked = 0
    for round_no in range(rounds):
        if round_no % 5 == 4:
            cow = CowDisk(str(golden), str(root), "disk")
            cow.reset("52:54:00:00:00:02")
            cow.close()
            images["cow:52:54:00:00:00:02"][:] = golden.read_bytes()
        proc = subprocess.Popen([sys.executable, str(WRITER), str(golden), str(root), str(plain),
                                 str(round_no + 1), mode], stdout=subprocess.PIPE, text=True,
                                env=env)
        reader = Reader(proc.stdout)
        reader.start()
        try:
            reader.wait_acks(rng.randint(0, 12))
            time.sleep(rng.uniform(0, 0.004))  # a random point of the workload, not a wait
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            reader.join(timeout=10)
        assert proc.returncode == -signal.SIGKILL, f"round {round_no}: writer ended by itself"
        total_acked += len(reader.acked)
        cow = CowDisk(str(golden), str(root), "disk")
        disks = {"plain": PlainDisk(str(plain)),
                 "cow:52:54:00:00:00:01": cow.view("52:54:00:00:00:01"),
                 "cow:52:54:00:00:00:02": cow.view("52:54:00:00:00:02")}
        try:
            check_round(images, disks, reader, golden_bytes)
        finally:
            cow.close()
            disks["plain"].close()
        assert hashlib.sha256(golden.read_bytes()).hexdigest() == golden_sum, \
            f"round {round_no}: the golden image changed"
    assert total_acked >= rounds * 3, f"only {total_acked} batches answered over {rounds} rounds"
