"""Reservations through the SCSI engine: RESERVE/RELEASE (6) between two I_T nexuses (resets,
nexus loss), and persistent reservations (SPC-4 5.12): registration, the access each type
gives, ownership when the holder unregisters, PREEMPT, CLEAR, READ KEYS/RESERVATION/FULL
STATUS, the unit attentions they leave."""

from __future__ import annotations

import pytest
from scsikit import NEXUS_A, NEXUS_B, Initiator, cdb10, pr_in, pr_out, sense_of

from services.blockexport import scsi_cdb as op, scsi_pr as pr
from services.blockexport.scsi import LogicalUnit
from services.blockexport.storage import PlainDisk

BS = 512
RESERVE6, RELEASE6 = bytes((0x16, 0, 0, 0, 0, 0)), bytes((0x17, 0, 0, 0, 0, 0))
TUR = bytes(6)
K1, K2 = 0x1111_2222_3333_4444, 0x5555_6666_7777_8888


@pytest.fixture
def pair(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(256 * BS)
    disk = PlainDisk(str(path))
    lu = LogicalUnit(name="pr", serial="pr", size_bytes=disk.size, readonly=False)
    one = Initiator(lu, disk, NEXUS_A)
    yield one, one.as_(NEXUS_B)
    disk.close()


def reads(io) -> int:
    return io(cdb10(op.READ_10, 0, 1), expected=BS).status


def writes(io) -> int:
    return io(cdb10(op.WRITE_10, 0, 1), b"w" * BS).status


def ok(response) -> None:
    assert response.status == 0, response


def clear_attention(io) -> None:
    for _ in range(8):
        if io(TUR).status == 0:
            return
    raise AssertionError("unit attention never cleared")


def test_reserve6_between_two_nexuses(pair):
    one, two = pair
    ok(one(RESERVE6))
    ok(one(RESERVE6))  # again by the holder: fine
    assert two(RESERVE6).status == 0x18
    ok(two(RELEASE6))  # a release by another nexus does nothing
    ok(one(bytes((0x1A, 0, 0x3F, 0, 255, 0))))
    assert two(bytes((0x1A, 0, 0x3F, 0, 255, 0))).status == 0x18
    assert reads(two) == 0x18 and writes(two) == 0x18
    ok(two(bytes((0x12, 0, 0, 0, 36, 0))))  # INQUIRY is always allowed
    ok(one(RELEASE6))
    ok(two(RESERVE6))
    ok(two(RELEASE6))


def test_reserve6_released_by_reset_and_nexus_loss(pair):
    one, two = pair
    ok(one(RESERVE6))
    one.lu.reset("lun", NEXUS_A)
    assert sense_of(one(TUR)) == (0x06, (0x29, 0x03))
    clear_attention(two)
    ok(two(RESERVE6))
    one.lu.nexus_lost(NEXUS_B)
    ok(one(RESERVE6))
    ok(one(RELEASE6))


def register(io, key, old=0):
    ok(io(*pr_out(pr.REGISTER, old, key)))


def read_keys(io):
    data = io(pr_in(pr.READ_KEYS)).data_in
    length = int.from_bytes(data[4:8], "big")
    return (int.from_bytes(data[0:4], "big"),
            [int.from_bytes(data[8 + i:16 + i], "big") for i in range(0, length, 8)])


def read_reservation(io):
    data = io(pr_in(pr.READ_RESERVATION)).data_in
    if int.from_bytes(data[4:8], "big") == 0:
        return None
    return int.from_bytes(data[8:16], "big"), data[21] & 0x0F


def test_register_unregister_and_generation(pair):
    one, two = pair
    assert read_keys(one) == (0, [])
    register(one, K1)
    assert one(*pr_out(pr.REGISTER, 0, K2)).status == 0x18  # wrong current key
    register(two, K2)
    generation, keys = read_keys(one)
    assert generation == 2 and sorted(keys) == sorted([K1, K2])
    ok(one(*pr_out(pr.REGISTER_AND_IGNORE, 0, K1 + 1)))  # key ignored, replaced
    ok(one(*pr_out(pr.REGISTER, K1 + 1, 0)))  # unregister
    assert read_keys(two) == (4, [K2])
    assert sense_of(one(*pr_out(pr.REGISTER, 0, K1, flags=0x01)))[1] == (0x26, 0x00)  # APTPL
    short = bytes((0x5F, 0, 0, 0, 0)) + (20).to_bytes(4, "big") + b"\0"
    assert sense_of(one(short, bytes(20)))[1] == (0x1A, 0x00)
    assert sense_of(one(*pr_out(9)))[1] == (0x24, 0x00)


# Access of a second nexus (registered read, write; unregistered read, write) per type, as
# libiscsi's ProutReserve.Access* tests and SPC-4 table 64 say.
ACCESS = {
    pr.EXCLUSIVE_ACCESS: (0, 0, 0, 0),
    pr.WRITE_EXCLUSIVE: (1, 0, 1, 0),
    pr.EXCLUSIVE_ACCESS_RO: (1, 1, 0, 0),
    pr.WRITE_EXCLUSIVE_RO: (1, 1, 1, 0),
    pr.EXCLUSIVE_ACCESS_AR: (1, 1, 0, 0),
    pr.WRITE_EXCLUSIVE_AR: (1, 1, 1, 0),
}


@pytest.mark.parametrize("kind", sorted(ACCESS))
def test_reservation_access_by_type(pair, kind):
    one, two = pair
    register(one, K1)
    register(two, K2)
    ok(one(*pr_out(pr.RESERVE, K1, 0, kind)))
    shared = kind in pr.ALL_REGISTRANTS
    assert read_reservation(two) == (0 if shared else K1, kind)
    assert reads(one) == 0 and writes(one) == 0
    reg_read, reg_write, unreg_read, unreg_write = ACCESS[kind]
    assert (reads(two) == 0, writes(two) == 0) == (bool(reg_read), bool(reg_write))
    register(two, 0, K2)
    assert (reads(two) == 0, writes(two) == 0) == (bool(unreg_read), bool(unreg_write))
    ok(one(*pr_out(pr.RELEASE, K1, 0, kind)))
    assert read_reservation(one) is None
    register(one, 0, K1)


@pytest.mark.parametrize("kind", sorted(ACCESS))
def test_reservation_ownership_when_the_holder_unregisters(pair, kind):
    one, two = pair
    register(one, K1)
    register(two, K2)
    ok(one(*pr_out(pr.RESERVE, K1, 0, kind)))
    register(one, 0, K1)
    if kind in pr.ALL_REGISTRANTS:
        assert read_reservation(one) == (0, kind)  # the other registrant still holds it
        ok(two(*pr_out(pr.RELEASE, K2, 0, kind)))
    else:
        assert read_reservation(one) is None
        clear_attention(two)
    register(two, 0, K2)
    assert read_keys(one)[1] == []


def test_reserve_conflicts_and_release_errors(pair):
    one, two = pair
    assert one(*pr_out(pr.RESERVE, K1, 0, pr.WRITE_EXCLUSIVE)).status == 0x18  # unregistered
    register(one, K1)
    register(two, K2)
    ok(one(*pr_out(pr.RESERVE, K1, 0, pr.WRITE_EXCLUSIVE)))
    ok(one(*pr_out(pr.RESERVE, K1, 0, pr.WRITE_EXCLUSIVE)))  # same again: fine
    assert one(*pr_out(pr.RESERVE, K1, 0, pr.EXCLUSIVE_ACCESS)).status == 0x18
    assert two(*pr_out(pr.RESERVE, K2, 0, pr.WRITE_EXCLUSIVE)).status == 0x18
    ok(two(*pr_out(pr.RELEASE, K2, 0, pr.WRITE_EXCLUSIVE)))  # not the holder: nothing
    assert sense_of(one(*pr_out(pr.RELEASE, K1, 0, pr.EXCLUSIVE_ACCESS)))[1] == (0x26, 0x04)
    assert sense_of(one(*pr_out(pr.RESERVE, K1, 0, 2)))[1] == (0x24, 0x00)  # no type 2
    assert one(RESERVE6).status == 0x18  # a persistent reservation blocks RESERVE (6)


def test_preempt_removes_registrations_and_bumps_generation_once(pair):
    one, two = pair
    register(one, K1)
    register(two, K2)
    generation = read_keys(one)[0]
    ok(two(*pr_out(pr.PREEMPT, K2, K1, pr.EXCLUSIVE_ACCESS)))
    assert sense_of(one(TUR)) == (0x06, (0x2A, 0x05))  # REGISTRATIONS PREEMPTED
    clear_attention(two)
    assert read_keys(one) == (generation + 1, [K2])
    assert two(*pr_out(pr.PREEMPT, K2, 0x999, pr.EXCLUSIVE_ACCESS)).status == 0x18


def test_preempt_takes_the_reservation_over(pair):
    one, two = pair
    register(one, K1)
    register(two, K2)
    ok(one(*pr_out(pr.RESERVE, K1, 0, pr.EXCLUSIVE_ACCESS)))
    assert reads(two) == 0x18
    ok(two(*pr_out(pr.PREEMPT_AND_ABORT, K2, K1, pr.WRITE_EXCLUSIVE)))
    assert read_reservation(two) == (K2, pr.WRITE_EXCLUSIVE)
    assert one(TUR).status == 0x02  # the preempted nexus is told
    clear_attention(one)
    assert reads(one) == 0 and writes(one) == 0x18


def test_clear_and_full_status(pair):
    one, two = pair
    register(one, K1)
    register(two, K2)
    ok(one(*pr_out(pr.RESERVE, K1, 0, pr.WRITE_EXCLUSIVE_RO)))
    full = one(pr_in(pr.READ_FULL_STATUS)).data_in
    length = int.from_bytes(full[4:8], "big")
    position, seen = 8, {}
    while position < 8 + length:
        key = int.from_bytes(full[position:position + 8], "big")
        tid_length = int.from_bytes(full[position + 20:position + 24], "big")
        tid = full[position + 24:position + 24 + tid_length]
        seen[key] = (full[position + 12] & 1, full[position + 13], tid[4:].rstrip(b"\0"))
        position += 24 + tid_length
    assert seen[K1] == (1, pr.WRITE_EXCLUSIVE_RO, NEXUS_A.encode())
    assert seen[K2] == (0, 0, NEXUS_B.encode())
    assert two(*pr_out(pr.CLEAR, K1)).status == 0x18  # wrong key
    ok(two(*pr_out(pr.CLEAR, K2)))
    assert read_reservation(two) is None and read_keys(two)[1] == []
    assert sense_of(one(TUR)) == (0x06, (0x2A, 0x03))  # RESERVATIONS PREEMPTED


def test_registrations_survive_resets_and_nexus_loss(pair):
    one, two = pair
    register(one, K1)
    ok(one(*pr_out(pr.RESERVE, K1, 0, pr.EXCLUSIVE_ACCESS)))
    one.lu.reset("target_warm", NEXUS_B)
    one.lu.nexus_lost(NEXUS_A)
    clear_attention(one)
    clear_attention(two)
    assert read_reservation(two) == (K1, pr.EXCLUSIVE_ACCESS)
    assert reads(two) == 0x18
