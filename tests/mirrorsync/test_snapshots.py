"""Snapshots on the mirror volume: publish by one rename, prune, partials, adoption."""

from __future__ import annotations

import os

from services.mirrorsync.snapshots import Snapshots, write_file_atomically


def make(snaps: Snapshots, when: float, content: str):
    partial = snaps.new_partial(when)
    (partial / "file").write_text(content)
    return snaps.finish(partial)


def test_publish_is_a_relative_symlink_swapped_by_rename(tmp_path):
    snaps = Snapshots(tmp_path, "debian")
    assert snaps.published() is None
    first = make(snaps, 1_000_000_000, "one")
    snaps.publish(first)
    assert os.readlink(tmp_path / "debian") == ".snapshots/debian/20010909T014640Z"
    assert (tmp_path / "debian" / "file").read_text() == "one"
    with open(tmp_path / "debian" / "file") as reader:  # a download in progress
        ino = os.stat(tmp_path / "debian").st_ino
        second = make(snaps, 1_000_000_060, "two")
        snaps.publish(second)
        assert os.stat(tmp_path / "debian").st_ino != ino
        assert (tmp_path / "debian" / "file").read_text() == "two"
        assert reader.read() == "one"
    assert snaps.published() == second
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".debian.link")]


def test_two_snapshots_in_one_second_get_distinct_names(tmp_path):
    snaps = Snapshots(tmp_path, "x")
    a, b = make(snaps, 5, "a"), make(snaps, 5, "b")
    assert a != b and b.name == a.name + "-2"


def test_prune_keeps_the_newest_and_never_the_published(tmp_path):
    snaps = Snapshots(tmp_path, "x")
    made = [make(snaps, 1000 + 60 * i, str(i)) for i in range(5)]
    snaps.publish(made[1])  # an operator rolled back to an old one
    removed = snaps.prune(keep=2)
    assert removed == [made[0].name, made[2].name]
    assert snaps.snapshots() == [made[1], made[3], made[4]]
    assert snaps.prune(keep=0) == [made[3].name, made[4].name]
    assert snaps.snapshots() == [made[1]] and snaps.published() == made[1]


def test_partials_are_found_and_removed(tmp_path):
    snaps = Snapshots(tmp_path, "x")
    partial = snaps.new_partial(1000)
    (partial / "sub").mkdir()
    (partial / "sub" / "f").write_text("half")
    os.chmod(partial / "sub", 0o500)  # rsync copies read-only directories too
    assert snaps.snapshots() == [] and snaps.partials() == [partial]
    assert snaps.clean_partials() == [partial.name]
    assert not partial.exists()


def test_a_mirror_kept_by_hand_is_adopted_as_the_first_snapshot(tmp_path):
    (tmp_path / "centos").mkdir()
    (tmp_path / "centos" / "repomd").write_text("old")
    snaps = Snapshots(tmp_path, "centos")
    adopted = snaps.adopt_directory()
    assert adopted.name.startswith("adopted-") and snaps.published() == adopted
    assert (tmp_path / "centos").is_symlink()
    assert (tmp_path / "centos" / "repomd").read_text() == "old"
    assert snaps.adopt_directory() is None


def test_the_trace_file_never_writes_into_a_hard_linked_file(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "trace").write_text("old trace")
    os.link(old / "trace", new / "trace")
    write_file_atomically(new / "trace", "new trace")
    assert (old / "trace").read_text() == "old trace"
    assert (new / "trace").read_text() == "new trace"
