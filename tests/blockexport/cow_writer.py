"""A write workload on the storage layer, for the kill -9 test (tests/blockexport/test_crash.py).

``python cow_writer.py <golden> <overlay_root> <plain> <seed> [writeback]`` writes batches of
random writes
to two hosts' overlays of one copy-on-write disk and to one plain disk, forever. Before a batch it
prints ``I <json>`` (the batch), after ``Disk.write`` returned (the writes are durable: what a
target would answer) it prints ``A <batch id>``. With ``writeback`` the writes are made as an
iSCSI target with WCE 1 makes them (``sync=False``: answered once in the kernel, which a kill -9
of the process does not lose), with a ``flush`` (SYNCHRONIZE CACHE) after one batch in five.
Sector ``s`` of write ``w`` holds ``struct.pack('<QQ', w, s)`` 32 times, so a sector that mixes
two writes is recognisable.
One batch in four is a discard (``Disk.discard``, SCSI UNMAP) of a few ranges instead: its line
has ``discards`` ([lba, count] pairs) in place of ``writes``.
"""

import json
import random
import struct
import sys

from services.blockexport.storage import PlainDisk
from services.blockexport.storage_cow import CowDisk

TARGETS = ("cow:52:54:00:00:00:01", "cow:52:54:00:00:00:02", "plain")


def sector(write_id: int, lba: int) -> bytes:
    return struct.pack("<QQ", write_id, lba) * 32


def main() -> None:
    golden, root, plain_path, seed = sys.argv[1:5]
    writeback = sys.argv[5:6] == ["writeback"]
    rng = random.Random(int(seed))
    cow = CowDisk(golden, root, "disk")
    plain = PlainDisk(plain_path)
    disks = {"plain": plain}
    for target in TARGETS[:2]:
        disks[target] = cow.view(target[4:])
    sectors = cow.size // 512
    write_id = int(seed) * 1_000_000
    batch_id = 0
    out = sys.stdout
    while True:
        target = rng.choice(TARGETS)
        batch_id += 1
        if rng.random() < 0.25:
            extents = []
            for _ in range(rng.randint(1, 3)):
                count = rng.randint(1, 40)
                extents.append((rng.randrange(0, sectors - count), count))
            out.write("I " + json.dumps({"batch": batch_id, "target": target,
                                         "discards": extents}) + "\n")
            out.flush()
            disks[target].discard([(lba * 512, count * 512) for lba, count in extents])
            out.write(f"A {batch_id}\n")
            out.flush()
            continue
        writes = []
        for _ in range(rng.randint(1, 8)):
            count = rng.randint(1, 17)
            lba = rng.randrange(0, sectors - count)
            write_id += 1
            writes.append((write_id, lba, count))
        out.write("I " + json.dumps({"batch": batch_id, "target": target,
                                     "writes": writes}) + "\n")
        out.flush()
        batch = [(lba * 512, b"".join(sector(w, lba + i) for i in range(count)))
                 for w, lba, count in writes]
        if writeback:
            disks[target].write(batch, sync=False)
            if rng.random() < 0.2:
                disks[target].flush()
        else:
            disks[target].write(batch)
        out.write(f"A {batch_id}\n")
        out.flush()


if __name__ == "__main__":
    main()
