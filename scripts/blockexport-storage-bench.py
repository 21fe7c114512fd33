"""Measure the storage layer's design choices (docs/blockexport.md, "Why this design").

    python scripts/blockexport-storage-bench.py [DIR]   (DIR: a directory on the file system to
                                                         measure; default a temporary one)

Prints, for the same random write workload:
- fdatasync per write vs one per batch (plain disk);
- overlay block size 4, 16 and 64 KiB: write rate into a fresh overlay and bytes allocated;
- the allocation map file (two syncs when a batch allocates) vs the file system's own extent map
  (SEEK_DATA/SEEK_HOLE, one sync), the latter written here only to be measured.
"""

from __future__ import annotations

import mmap
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from services.blockexport.storage import PlainDisk  # noqa: E402
from services.blockexport.storage_cow import CowDisk  # noqa: E402

DISK = 256 << 20
WRITES = 2048


def workload(seed: int, size: int, batch: int, sectors: int):
    rng = random.Random(seed)
    out = []
    for _ in range(WRITES // batch):
        out.append([(rng.randrange(0, size // 512 - sectors) * 512, os.urandom(sectors * 512))
                    for _ in range(batch)])
    return out


def timed(write, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        write(batch)
    return WRITES / (time.perf_counter() - start)


class SeekDataOverlay:
    """Overlay without a map: a block is the host's iff the sparse data file has data there."""

    def __init__(self, path, golden_fd, size, block):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, size)
        self.golden, self.block, self.size = golden_fd, block, size

    def allocated(self, index):
        offset = index * self.block
        try:
            return os.lseek(self.fd, offset, os.SEEK_DATA) == offset
        except OSError:
            return False

    def write(self, writes):
        for offset, data in writes:
            first, last = offset // self.block, (offset + len(data) - 1) // self.block
            start, stop = first * self.block, (last + 1) * self.block
            if all(self.allocated(i) for i in range(first, last + 1)):
                os.pwrite(self.fd, data, offset)
                continue
            buf = bytearray(os.pread(self.golden, stop - start, start))
            for i in range(first, last + 1):
                if self.allocated(i):
                    lo = i * self.block
                    buf[lo - start:lo - start + self.block] = os.pread(self.fd, self.block, lo)
            buf[offset - start:offset - start + len(data)] = data
            os.pwrite(self.fd, buf, start)
        os.fdatasync(self.fd)


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="bench-storage-")
    golden = os.path.join(base, "golden.img")
    with open(golden, "wb") as f:
        f.truncate(DISK)
    print(f"directory {base}; disk {DISK >> 20} MiB; {WRITES} random writes per line")
    plain_path = os.path.join(base, "plain.img")
    with open(plain_path, "wb") as f:
        f.truncate(DISK)
    plain = PlainDisk(plain_path)
    for batch in (1, 16, 64):
        rate = timed(plain.write, workload(1, DISK, batch, 2))
        print(f"plain, 1 KiB writes, fdatasync per {batch:>2} writes: {rate:8.0f} writes/s")
    for label, flags in (("buffered + fdatasync per batch", 0),
                         ("O_DIRECT + fdatasync per batch", os.O_DIRECT)):
        fd = os.open(plain_path, os.O_RDWR | flags)
        buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT needs
        rng = random.Random(3)

        def direct_batch(batch, fd=fd, buf=buf):
            for offset, _data in batch:
                os.pwrite(fd, buf, offset // 4096 * 4096)
            os.fdatasync(fd)
        rate = timed(direct_batch, [[(rng.randrange(0, DISK // 4096) * 4096, b"")
                                     for _ in range(16)] for _ in range(WRITES // 16)])
        print(f"plain, 4 KiB writes, {label}: {rate:8.0f} writes/s")
        os.close(fd)
    for label, flags in (("buffered (page cache)", 0), ("O_DIRECT", os.O_DIRECT)):
        fd = os.open(plain_path, os.O_RDONLY | flags)
        buf = mmap.mmap(-1, 4096)
        start = time.perf_counter()
        for i in range(WRITES):
            os.preadv(fd, [buf], (i % 256) * 4096)  # the same 1 MiB, hot: many hosts, one golden
        print(f"plain, 4 KiB re-reads of hot blocks, {label}: "
              f"{WRITES / (time.perf_counter() - start):8.0f} reads/s")
        os.close(fd)
    for block in (4096, 16384, 65536):
        for sectors in (2, 8):
            cow = CowDisk(golden, os.path.join(base, f"ov{block}-{sectors}"), "d", block=block)
            view = cow.view("52:54:00:00:00:01")
            rate = timed(view.write, workload(2, DISK, 16, sectors))
            (info,) = cow.overlays()
            print(f"map overlay, block {block >> 10:>2} KiB, {sectors // 2} KiB writes, batch 16:"
                  f" {rate:8.0f} writes/s, {info.allocated >> 10:7d} KiB allocated")
            cow.close()
        gfd = os.open(golden, os.O_RDONLY)
        seek = SeekDataOverlay(os.path.join(base, f"seek{block}"), gfd, DISK, block)
        rate = timed(seek.write, workload(2, DISK, 16, 2))
        allocated = os.fstat(seek.fd).st_blocks * 512
        print(f"SEEK_DATA overlay, block {block >> 10:>2} KiB, 1 KiB writes, batch 16: "
              f"{rate:8.0f} writes/s, {allocated >> 10:7d} KiB allocated")
        os.close(gfd)


if __name__ == "__main__":
    main()
