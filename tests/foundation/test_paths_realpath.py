"""shared.paths.realpath (the kernel's answer through /proc/self/fd) agrees with
os.path.realpath on every kind of path the sanitiser meets."""

from __future__ import annotations

import os

import pytest

from shared.paths import realpath, resolve_under


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "sub" / "file").write_bytes(b"x")
    os.symlink(tmp_path / "real", tmp_path / "dirlink")  # a directory link, absolute
    os.symlink("sub/file", tmp_path / "real" / "rel-link")  # a relative link
    os.symlink("rel-link", tmp_path / "real" / "chain")  # a link to a link
    os.symlink(tmp_path / "nowhere", tmp_path / "real" / "dangling")
    os.symlink("loop-b", tmp_path / "real" / "loop-a")
    os.symlink("loop-a", tmp_path / "real" / "loop-b")
    os.mkfifo(tmp_path / "real" / "fifo")
    return tmp_path


@pytest.mark.parametrize("name", [
    "real", "real/sub/file", "dirlink/sub/file", "dirlink/rel-link", "dirlink/chain",
    "real/dangling", "real/loop-a", "real/missing", "real/missing/deeper",
    "real/sub/file/not-a-dir", "real/fifo", "dirlink/../real/sub",
])
def test_realpath_agrees_with_os_path_realpath(tree, name):
    assert realpath(tree / name) == os.path.realpath(tree / name)


def test_relative_paths_resolve_from_the_working_directory(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert realpath("dirlink/chain") == os.path.realpath("dirlink/chain") \
        == str(tree / "real" / "sub" / "file")


def test_a_root_reached_through_a_link_serves_its_files(tree):
    assert resolve_under(tree / "dirlink", "chain") == tree / "real" / "sub" / "file"
