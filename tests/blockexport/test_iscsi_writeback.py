"""The write-back cache of the iSCSI logical unit (WCE 1, docs/blockexport.md "Durability and
WCE"): what the caching page says, MODE SELECT of WCE, which writes are synced (FUA, WCE 0,
SYNCHRONIZE CACHE, batches of them), and the storage layer's order of data and map syncs for an
overlay written without sync (the power-cut half of the contract; test_crash.py does kill -9)."""

from __future__ import annotations

import os

import pytest
from scsikit import NEXUS_A, NEXUS_B, Initiator, cdb10, cdb16, sense_of

from services.blockexport import scsi_cdb as op
from services.blockexport.scsi import LogicalUnit, Request, unmapped_mode
from services.blockexport.storage import PlainDisk
from services.blockexport.storage_cow import CowDisk

BS = 512
BLOCKS = 2048
MAC = "52:54:00:00:00:0a"
FUA = 0x08


class Counting:
    """A disk that counts the syncs asked of it (a real PlainDisk underneath)."""

    def __init__(self, disk: PlainDisk) -> None:
        self.disk = disk
        self.size, self.readonly, self.unmapped = disk.size, disk.readonly, disk.unmapped
        self.synced_writes = self.cached_writes = self.flushes = 0

    def read(self, offset, length):
        return self.disk.read(offset, length)

    def write(self, writes, sync=True):
        self.disk.write(writes, sync)
        if sync:
            self.synced_writes += 1
        else:
            self.cached_writes += 1

    def flush(self):
        self.flushes += 1
        self.disk.flush()


@pytest.fixture
def unit(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(BLOCKS * BS)
    disk = Counting(PlainDisk(str(path)))
    lu = LogicalUnit(name="wb", serial="wb", size_bytes=disk.size, readonly=False,
                     unmapped=unmapped_mode(disk.disk), write_cache=True)
    yield Initiator(lu, disk)
    disk.disk.close()


def caching_page(initiator: Initiator, control: int = 0) -> bytes:
    data = initiator(bytes((0x1A, 0x08, (control << 6) | 0x08, 0, 255, 0))).data_in
    return data[4:]


def test_caching_page_says_wce_and_it_is_changeable(unit, tmp_path):
    assert caching_page(unit)[2] & 0x04  # current: WCE 1
    assert caching_page(unit, 2)[2] & 0x04  # default: the export's setting
    assert caching_page(unit, 1)[2] == 0x04  # changeable: WCE only
    through = LogicalUnit(name="wt", serial="wt", size_bytes=unit.disk.size, readonly=False)
    assert not caching_page(Initiator(through, unit.disk))[2] & 0x04
    ro = LogicalUnit(name="ro", serial="ro", size_bytes=unit.disk.size, readonly=True,
                     write_cache=True)
    assert caching_page(Initiator(ro, unit.disk))[2] == 0  # nothing to cache, not changeable
    assert caching_page(Initiator(ro, unit.disk), 1)[2] == 0


def test_mode_select_turns_wce_off_and_on(unit):
    other = unit.as_(NEXUS_B)
    assert other(cdb10(op.TEST_UNIT_READY)).status == 0  # B has used the unit
    page = bytearray(caching_page(unit))
    select = bytes((0x15, 0x10, 0, 0, 4 + len(page), 0))
    page[2] &= ~0x04
    before = unit.disk.flushes
    assert unit(select, bytes(4) + bytes(page)).status == 0
    assert unit.disk.flushes == before + 1  # what was cached is made durable first
    assert not caching_page(unit)[2] & 0x04
    assert caching_page(unit, 2)[2] & 0x04  # the default stays the export's setting
    assert sense_of(other(cdb10(op.TEST_UNIT_READY))) == (0x06, (0x2A, 0x01))
    assert unit(cdb10(op.WRITE_10, 0, 1), b"a" * BS).status == 0
    assert unit.disk.synced_writes == 1 and unit.disk.cached_writes == 0
    page[2] |= 0x04
    assert unit(select, bytes(4) + bytes(page)).status == 0
    assert unit(cdb10(op.WRITE_10, 0, 1), b"b" * BS).status == 0
    assert unit.disk.cached_writes == 1


def test_writes_cached_unless_fua_and_sync_cache_flushes(unit):
    assert unit(cdb10(op.WRITE_10, 0, 1), b"a" * BS).status == 0
    assert unit(cdb16(op.WRITE_16, 8, 1), b"b" * BS).status == 0
    assert (unit.disk.cached_writes, unit.disk.synced_writes) == (2, 0)
    assert unit(cdb10(op.WRITE_10, 16, 1, flags=FUA), b"c" * BS).status == 0
    assert unit(cdb16(op.WRITE_16, 24, 1, flags=FUA), b"d" * BS).status == 0
    assert (unit.disk.cached_writes, unit.disk.synced_writes) == (2, 2)
    assert unit(cdb10(op.SYNCHRONIZE_CACHE_10, 0, 0)).status == 0
    assert unit.disk.flushes == 1
    assert unit(cdb10(op.READ_10, 0, 1), expected=BS).data_in == b"a" * BS


def request(cdb: bytes, data: bytes = b"", nexus: str = NEXUS_A) -> Request:
    return Request(cdb.ljust(16, b"\0"), 0, nexus, data, len(data) if data else 0,
                   not data, bool(data))


def test_a_batch_syncs_once_and_only_when_asked(unit):
    lu, disk = unit.lu, unit.disk
    unit(cdb10(op.TEST_UNIT_READY))
    cached = [(request(cdb10(op.WRITE_10, i * 8, 1), bytes([i]) * BS), disk) for i in range(8)]
    assert all(r.status == 0 for r in lu.execute_many(cached))
    assert (disk.cached_writes, disk.synced_writes) == (1, 0)  # one write call, no sync
    with_fua = cached[:3] + [(request(cdb10(op.WRITE_10, 99, 1, flags=FUA), b"f" * BS), disk)]
    assert all(r.status == 0 for r in lu.execute_many(with_fua))
    assert disk.synced_writes == 1  # the FUA write makes its batch durable
    syncs = [(request(cdb10(op.SYNCHRONIZE_CACHE_10)), disk)] * 5
    syncs.insert(3, (request(cdb10(op.READ_10, 0, 1)), disk))
    assert all(r.status == 0 for r in lu.execute_many(syncs))
    assert disk.flushes == 1  # nothing written between them: one fdatasync answers all
    again = [(request(cdb10(op.SYNCHRONIZE_CACHE_10)), disk), cached[0],
             (request(cdb10(op.SYNCHRONIZE_CACHE_10)), disk)]
    assert all(r.status == 0 for r in lu.execute_many(again))
    assert disk.flushes == 3  # a write in between: synced again


def test_overlay_without_sync_orders_data_before_map(tmp_path, monkeypatch):
    """A block's map bit reaches ``map`` only after its data was synced, so no power cut can
    leave the map naming a block whose data is lost; rewrites of the host's own blocks are
    not synced until flush."""
    golden = tmp_path / "golden.img"
    golden.write_bytes(os.urandom(BLOCKS * BS))
    cow = CowDisk(str(golden), str(tmp_path / "overlays"), "wb")
    view = cow.view(MAC)
    view.write([(0, b"x" * BS)])  # the overlay exists (its creation is synced)
    overlay = cow.overlay(MAC, create=False)
    calls: list[tuple[str, int]] = []
    real_pwrite, real_sync = os.pwrite, os.fdatasync
    monkeypatch.setattr(os, "pwrite", lambda fd, data, off: (calls.append(("write", fd)),
                                                              real_pwrite(fd, data, off))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(("sync", fd)),
                                                     real_sync(fd))[1])
    view.write([(BS, b"y" * BS)], sync=False)  # a rewrite of block 0: written, not synced
    assert calls == [("write", overlay.data)]
    calls.clear()
    view.write([(8 * BS, b"z" * BS), (40 * BS, b"w" * BS)], sync=False)  # two new blocks
    assert calls == [("write", overlay.data), ("write", overlay.data), ("sync", overlay.data),
                     ("write", overlay.mapfd)]  # the map is written after the data sync
    calls.clear()
    view.flush()
    assert calls == [("sync", overlay.data), ("sync", overlay.mapfd)]
    monkeypatch.undo()
    assert view.read(8 * BS, BS) == b"z" * BS and view.read(BS, BS) == b"y" * BS
    cow.close()
    again = CowDisk(str(golden), str(tmp_path / "overlays"), "wb").view(MAC)
    assert again.read(40 * BS, BS) == b"w" * BS  # the bits were in the map file
    again.cow.close()
