"""The storage layer: plain disks, per-host copy-on-write overlays (isolation, thinness, merge of
partial blocks, persistence, reset), and the golden image never written."""

from __future__ import annotations

import hashlib
import os

import pytest

from services.blockexport.storage import PlainDisk, StorageError, check_writes
from services.blockexport.storage_cow import CowDisk

A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


@pytest.fixture
def golden(tmp_path):
    path = tmp_path / "golden.img"
    path.write_bytes(os.urandom(64 * 4096))
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plain_disk_reads_and_writes(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(8192) + b"x" * 100)  # a trailing part sector is not part of the disk
    disk = PlainDisk(str(path))
    assert disk.size == 8192 and disk.sectors == 16
    disk.write([(512, b"a" * 512), (1024, b"b" * 1024)])
    assert disk.read(512, 1536) == b"a" * 512 + b"b" * 1024
    disk.close()
    assert path.read_bytes()[512:2048] == b"a" * 512 + b"b" * 1024


def test_plain_read_only(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    os.chmod(path, 0o444)
    disk = PlainDisk(str(path), readonly=True)
    with pytest.raises(OSError, match="read-only"):
        disk.write([(0, bytes(512))])


def test_missing_backing_names_the_path(tmp_path):
    with pytest.raises(StorageError, match=r"cannot open backing .*nope.img: No such file"):
        PlainDisk(str(tmp_path / "nope.img"))
    with pytest.raises(StorageError, match="cannot open golden image"):
        CowDisk(str(tmp_path / "nope.img"), str(tmp_path), "x")


def test_hosts_see_their_own_writes_and_golden_elsewhere(golden, tmp_path):
    before = digest(golden)
    original = golden.read_bytes()
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "root")
    a, b = cow.view(A), cow.view(B)
    assert a.read(0, 8192) == original[:8192]
    assert not (tmp_path / "ov" / "root").exists()  # reading makes no overlay
    a.write([(4096 + 512, b"A" * 1024)])  # inside one block: the rest of it stays golden
    b.write([(0, b"B" * 512), (3 * 4096 - 512, b"C" * 4096 + b"D" * 512)])  # spans blocks
    want_a = bytearray(original)
    want_a[4608:5632] = b"A" * 1024
    assert a.read(0, len(original)) == bytes(want_a)
    want_b = bytearray(original)
    want_b[0:512] = b"B" * 512
    want_b[3 * 4096 - 512:4 * 4096] = b"C" * 4096 + b"D" * 512
    assert b.read(0, len(original)) == bytes(want_b)
    assert digest(golden) == before
    cow.close()
    again = CowDisk(str(golden), str(tmp_path / "ov"), "root")  # what is on disk, reopened
    assert again.view(A).read(0, len(original)) == bytes(want_a)
    assert again.view(B).read(0, len(original)) == bytes(want_b)
    assert {o.mac: o.blocks for o in again.overlays()} == {A: 1, B: 3}


def test_overlay_is_thin(golden, tmp_path):
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # a 1 GiB golden image (sparse itself)
    cow = CowDisk(str(big), str(tmp_path / "ov"), "big")
    cow.view(A).write([(512 << 20, b"z" * 4096)])
    (info,) = cow.overlays()
    assert info.mac == A and info.blocks == 1
    assert info.allocated < 256 * 1024, f"overlay takes {info.allocated} bytes for one block"


def test_rewrites_of_a_block_keep_earlier_writes(golden, tmp_path):
    original = golden.read_bytes()
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "root", block=65536)
    a = cow.view(A)
    a.write([(512, b"1" * 512)])
    a.write([(1024, b"2" * 512), (512, b"3" * 512)])  # later writes in a batch win
    got = a.read(0, 4096)
    assert got == original[:512] + b"3" * 512 + b"2" * 512 + original[1536:4096]


def test_reset_starts_from_golden_again(golden, tmp_path):
    original = golden.read_bytes()
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "root")
    cow.view(A).write([(0, b"x" * 512)])
    assert cow.reset(A) is True
    assert cow.reset(A) is False
    assert cow.view(A).read(0, 512) == original[:512]
    assert cow.overlays() == []


def test_an_overlay_for_another_golden_size_is_refused(golden, tmp_path):
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "root")
    cow.view(A).write([(0, b"x" * 512)])
    cow.close()
    with open(golden, "ab") as f:
        f.write(bytes(4096))
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "root")
    with pytest.raises(StorageError, match="golden image changed"):
        cow.view(A).read(0, 512)


def test_a_half_built_overlay_is_cleared_at_start(golden, tmp_path):
    leftover = tmp_path / "ov" / "root" / "52-54-00-00-00-0a.new"
    leftover.mkdir(parents=True)
    (leftover / "data").write_bytes(b"junk")
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "root")
    assert not leftover.exists()
    assert cow.view(A).read(0, 512) == golden.read_bytes()[:512]


def test_check_writes():
    class D:
        size = 4096
    check_writes(D(), [(0, bytes(512)), (3584, bytes(512))])
    for bad in [(1, bytes(512)), (0, bytes(100)), (3584, bytes(1024))]:
        with pytest.raises(ValueError):
            check_writes(D(), [bad])


def test_overlay_discard_matches_a_block_by_block_model(tmp_path):
    """Discards of random extents (inside one map byte, across many, to the end of a disk whose
    last block is partial) drop exactly the blocks they cover whole; the others keep the
    host's data; the map on disk says the same after a reopen."""
    import random

    rng = random.Random(7)
    size = 300 * 4096 + 1024  # the last overlay block is a partial one
    golden_path = tmp_path / "golden.img"
    golden_path.write_bytes(rng.randbytes(size))
    golden = golden_path.read_bytes()
    cow = CowDisk(str(golden_path), str(tmp_path / "ov"), "d")
    view = cow.view(A)
    image = bytearray(golden)
    for _ in range(40):
        sectors = rng.randint(1, 64)
        offset = rng.randrange(0, size // 512 - sectors) * 512
        data = rng.randbytes(sectors * 512)
        view.write([(offset, data)])
        image[offset:offset + len(data)] = data
    nblocks = -(-size // 4096)
    for _ in range(30):
        offset = rng.randrange(0, size // 512) * 512
        length = rng.choice((512, 4096, 8192, rng.randrange(1, 120) * 4096,
                             size - offset)) if offset < size else 512
        length = min(length, size - offset)
        view.discard([(offset, length)])
        end = offset + length
        first = -(-offset // 4096)
        last = nblocks if end == size else end // 4096
        for index in range(first, last):
            lo, hi = index * 4096, min((index + 1) * 4096, size)
            image[lo:hi] = golden[lo:hi]
        assert view.read(0, size) == bytes(image)
    cow.close()
    reopened = CowDisk(str(golden_path), str(tmp_path / "ov"), "d")
    assert reopened.view(A).read(0, size) == bytes(image)
    reopened.close()


def test_holes_punch_zero_and_allocation(tmp_path):
    from services.blockexport.storage_holes import file_allocation, punch_hole, write_zeros

    path = tmp_path / "h.img"
    path.write_bytes(b"d" * (64 * 4096))
    fd = os.open(path, os.O_RDWR)
    try:
        punch_hole(fd, 8 * 4096, 16 * 4096)
        write_zeros(fd, 40 * 4096, 3 * 4096 + 512)
        data = os.pread(fd, 64 * 4096, 0)
        assert data[:8 * 4096] == b"d" * 8 * 4096 and data[8 * 4096:24 * 4096] == bytes(
            16 * 4096)
        assert data[40 * 4096:43 * 4096 + 512] == bytes(3 * 4096 + 512)
        assert data[43 * 4096 + 512:] == b"d" * (64 * 4096 - 43 * 4096 - 512)
        runs = file_allocation(fd, 0, 64 * 4096)
        assert runs[:3] == [(0, 8 * 4096, True), (8 * 4096, 16 * 4096, False),
                            (24 * 4096, 40 * 4096, True)]  # zeros written stay allocated
    finally:
        os.close(fd)
