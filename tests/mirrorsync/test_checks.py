"""The check before a publish, on real repositories: apt (dpkg-deb, apt-ftparchive, a signed
InRelease), yum (rpmbuild, createrepo_c) and plain trees."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest
from repokit import AptRepo, GpgKey, build_yum_repo

from services.mirrorsync.checks import (
    check_snapshot,
    detect,
    excluded,
    release_entries,
    release_text,
)


@pytest.fixture
def apt(tmp_path, gpg_key):
    repo = AptRepo(tmp_path / "apt", gpg_key)
    repo.add_package("hello", "1.0")
    repo.add_package("world", "2.0", payload=5000)
    repo.index()
    return repo


def test_a_whole_apt_repository_passes(apt):
    result = check_snapshot(apt.root)
    assert (result.kind, result.problem) == ("apt", None)
    assert result.verified >= 4  # Packages, Packages.gz and both .deb files were hashed
    text = release_text(apt.root / "dists/stable/InRelease")
    assert "main/binary-amd64/Packages.gz" in release_entries(text)
    assert "BEGIN PGP" not in text


def test_component_release_files_are_indices_not_suites(apt):
    # Debian's layout: main/binary-amd64/Release (Archive, Component, Architecture; no hashes),
    # listed with its hash by the suite's InRelease
    (apt.root / "dists/stable/main/binary-amd64/Release").write_text(
        "Archive: stable\nOrigin: bootyard-test\nComponent: main\nArchitecture: amd64\n")
    apt.release()
    assert "main/binary-amd64/Release" in release_entries(
        release_text(apt.root / "dists/stable/InRelease"))
    assert check_snapshot(apt.root).ok
    (apt.root / "dists/stable/main/binary-amd64/Release").write_text("Component: other\n")
    assert check_snapshot(apt.root).problem.startswith(
        "dists/stable/main/binary-amd64/Release: size ")


def test_with_a_keyring_the_inrelease_signature_must_verify(apt, gpg_key, tmp_path):
    assert check_snapshot(apt.root, keyring=str(gpg_key.public)).ok
    other = GpgKey(tmp_path / "other-gnupg")
    try:
        problem = check_snapshot(apt.root, keyring=str(other.public)).problem
    finally:
        other.close()
    assert problem.startswith("dists/stable/InRelease: signature not verified with "
                              f"{other.public}: ")
    # a Release without InRelease or Release.gpg cannot be verified
    apt.index(sign=False)
    os.unlink(apt.root / "dists/stable/InRelease")
    assert check_snapshot(apt.root).ok
    assert check_snapshot(apt.root, keyring=str(gpg_key.public)).problem == (
        "dists/stable: no InRelease and no Release.gpg to verify with the mirror's keyring")


def test_a_package_the_index_lists_but_missing_fails(apt):
    os.unlink(apt.root / "pool/main/w/world/world_2.0_all.deb")
    result = check_snapshot(apt.root)
    assert result.problem == ("pool/main/w/world/world_2.0_all.deb: listed in "
                              "dists/stable/main/binary-amd64/Packages but missing")


def test_a_package_with_other_bytes_of_the_same_size_fails(apt):
    deb = apt.root / "pool/main/h/hello/hello_1.0_all.deb"
    data = bytearray(deb.read_bytes())
    data[-1] ^= 0xFF
    deb.write_bytes(bytes(data))
    assert "hello_1.0_all.deb: sha256" in check_snapshot(apt.root).problem


def test_an_inrelease_listing_an_index_not_there_yet_fails(apt):
    # the upstream caught half-updated: a new component's index is in InRelease, not on disk
    contrib = apt.root / "dists/stable/contrib/binary-amd64"
    contrib.mkdir(parents=True)
    (contrib / "Packages").write_text("")
    apt.release()
    shutil.rmtree(apt.root / "dists/stable/contrib")
    problem = check_snapshot(apt.root).problem
    assert problem.startswith("dists/stable/InRelease lists contrib/binary-amd64/Packages but "
                              "no form of it is present")
    # ... unless the mirror leaves that component out on purpose
    assert check_snapshot(apt.root, excludes=("/dists/stable/contrib/",)).ok


def test_an_index_newer_than_its_inrelease_fails(apt):
    apt.add_package("late", "1.0")
    apt.index(sign=False, write_packages=True)  # Packages and Release new, InRelease old
    problem = check_snapshot(apt.root).problem
    assert problem.startswith("dists/stable/main/binary-amd64/Packages")
    assert "dists/stable/InRelease says" in problem


def test_only_one_compressed_form_of_an_index_is_enough(apt):
    os.unlink(apt.root / "dists/stable/main/binary-amd64/Packages")
    assert check_snapshot(apt.root).ok


def test_files_shared_with_the_published_snapshot_are_not_hashed_again(apt, tmp_path):
    new = tmp_path / "new"
    shutil.copytree(apt.root, new, copy_function=os.link)  # as --link-dest leaves it
    first = check_snapshot(apt.root)
    again = check_snapshot(new, published=apt.root)
    assert again.ok and again.verified == first.verified - 2  # the two .deb files
    # a file that is not the published one's inode is hashed, and a bad one is caught
    deb = new / "pool/main/h/hello/hello_1.0_all.deb"
    data = bytearray(deb.read_bytes())
    os.unlink(deb)
    data[-1] ^= 0xFF
    deb.write_bytes(bytes(data))
    assert "hello_1.0_all.deb: sha256" in check_snapshot(new, published=apt.root).problem


def test_index_files_shared_with_the_published_snapshot_reuse_its_hashes(apt, tmp_path):
    new = tmp_path / "new"
    shutil.copytree(apt.root, new, copy_function=os.link)  # as the clone leaves it
    first = check_snapshot(apt.root)
    assert first.hashes  # the index files' hashes, for the next check
    again = check_snapshot(new, published=apt.root, hashes=first.hashes)
    assert again.ok and again.verified == 0 and again.hashes == first.hashes
    # an index with new bytes (a new inode) is hashed, and must still match its Release
    packages = new / "dists/stable/main/binary-amd64/Packages"
    data = packages.read_bytes()
    os.unlink(packages)
    packages.write_bytes(data.replace(b"Package: hello", b"Package: hellO"))
    result = check_snapshot(new, published=apt.root, hashes=first.hashes)
    assert "main/binary-amd64/Packages: size" in result.problem or \
        "main/binary-amd64/Packages: sha256" in result.problem
    # a new InRelease listing another hash for an unchanged index (the published one's inode)
    # is caught with the known hash
    os.unlink(packages)
    os.link(apt.root / "dists/stable/main/binary-amd64/Packages", packages)
    inrelease = new / "dists/stable/InRelease"
    text = inrelease.read_text()
    _size, _algo, digest = release_entries(release_text(inrelease))["main/binary-amd64/Packages"]
    os.unlink(inrelease)
    inrelease.write_text(text.replace(digest, "0" * len(digest)))
    result = check_snapshot(new, published=apt.root, hashes=first.hashes)
    assert f"main/binary-amd64/Packages: sha256 {digest}" in result.problem
    assert result.verified == 0  # the known hash, not hashed again


def test_packages_index_in_gzip_only_is_read(apt):
    binary = apt.root / "dists/stable/main/binary-amd64"
    assert gzip.decompress((binary / "Packages.gz").read_bytes()) == (binary / "Packages").read_bytes()
    os.unlink(apt.root / "pool/main/h/hello/hello_1.0_all.deb")
    os.unlink(binary / "Packages")
    assert "hello_1.0_all.deb: listed in dists/stable/main/binary-amd64/Packages.gz" in \
        check_snapshot(apt.root).problem


@pytest.fixture(scope="module")
def yum_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("yum") / "repo"
    build_yum_repo(root, root.parent, {"alpha": "1.0", "beta": "2.0"})
    return root


@pytest.fixture
def yum(yum_template, tmp_path):
    root = tmp_path / "yum"
    shutil.copytree(yum_template, root)
    return root


def test_a_whole_yum_repository_passes(yum):
    result = check_snapshot(yum)
    assert (detect(yum), result.kind, result.problem) == ("yum", "yum", None)
    assert result.verified >= 3


def test_a_yum_package_missing_fails(yum):
    rpm = next((yum / "Packages").glob("beta-*.rpm"))
    os.unlink(rpm)
    assert check_snapshot(yum).problem == (f"Packages/{rpm.name}: listed in "
                                           f"{_primary(yum)} but missing")


def test_yum_metadata_not_matching_repomd_fails(yum):
    primary = yum / _primary(yum)
    data = bytearray(primary.read_bytes())
    data[-5] ^= 0xFF
    primary.write_bytes(bytes(data))
    assert check_snapshot(yum).problem.startswith(f"{_primary(yum)}: sha256 ")


def _primary(root):
    return next(p for p in (root / "repodata").iterdir()
                if p.name.endswith("primary.xml.gz")).relative_to(root).as_posix()


def test_a_plain_tree_is_checked_by_its_file_count(tmp_path):
    tree = tmp_path / "images"
    tree.mkdir()
    assert check_snapshot(tree).problem.startswith("the snapshot has no files")
    for i in range(10):
        (tree / f"f{i}").write_text("x")
    assert check_snapshot(tree).ok
    assert check_snapshot(tree, published_files=30).problem.startswith(
        "the snapshot has 10 files, the published one 30")
    assert check_snapshot(tree, published_files=15).ok


def test_exclude_patterns_as_rsync_reads_them():
    assert excluded("dists/sid/main/binary-amd64/Packages", ("/dists/sid/",))
    assert not excluded("dists/stable/main/binary-amd64/Packages", ("/dists/sid/",))
    assert excluded("dists/stable/main/binary-arm64/Packages", ("binary-arm64/",))
    assert excluded("dists/stable/main/Contents-amd64.gz", ("Contents-*",))
    assert excluded("dists/stable/main/binary-arm64/Packages", ("main/binary-arm64/",))
    assert not excluded("dists/stable/main/binary-amd64/Packages", ("*.iso",))
