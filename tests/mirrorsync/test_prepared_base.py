"""The next sync's base prepared after a publish (a hard-link clone of the published snapshot),
what one rsync run's itemized output tells the sync, and where a sync's time goes."""

from __future__ import annotations

import hashlib
import os

from repokit import AptRepo
from test_sync import Kit, mirror_record

from services.mirrorsync import itemized, metrics as mirror_metrics
from services.mirrorsync.checks import count_files
from services.mirrorsync.phases import AFTER_PUBLISH, BEFORE_PUBLISH
from services.mirrorsync.snapshots import NEXT, Snapshots, clone_tree


def tree_state(root) -> dict[str, tuple]:
    """Every name under ``root`` with its inode, mode, mtime, size and content hash."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            state[os.path.relpath(path, root)] = (st.st_ino, st.st_mode, st.st_mtime_ns,
                                                  st.st_size, digest)
    return state


def upstream_tree(root) -> None:
    for d in ("a", "b", "keep"):
        (root / d).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            (root / d / f"f{i}.bin").write_bytes(f"{d}{i}".encode() * 1000)
    (root / "link").symlink_to("a/f0.bin")


def histogram_count(phase: str) -> float:
    for metric in mirror_metrics.PHASE_DURATION.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels.get("phase") == phase:
                return sample.value
    return 0.0


async def test_the_next_sync_writes_into_a_clone_and_never_touches_the_published_tree(
        redis_url, tmp_path, daemon):
    up = tmp_path / "upstream" / "files"
    upstream_tree(up)
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror")
    try:
        mirror = mirror_record("files", daemon.url + "files/")
        before = {p: histogram_count(p) for p in BEFORE_PUBLISH + AFTER_PUBLISH}
        first = await kit.sync_one(mirror)
        assert first.result == "published", first
        snaps = Snapshots(tmp_path / "mirror", "files")
        published = snaps.published()
        clone = snaps.dir / (published.name + NEXT)
        assert snaps.prepared(published) == clone
        assert os.stat(clone / "a/f1.bin").st_ino == os.stat(published / "a/f1.bin").st_ino
        assert os.lstat(clone / "link").st_ino != os.lstat(published / "link").st_ino  # copied
        assert snaps.snapshots() == [published]  # a clone is not a snapshot (never pruned)
        # where the time went: every phase, in the outcome, the status and the metric
        assert set(first.phases) == set(BEFORE_PUBLISH + AFTER_PUBLISH)
        assert first.published_at is not None
        assert sum(first.phases[p] for p in BEFORE_PUBLISH) <= first.duration
        status = await kit.state.status("files")
        assert [f.split("=")[0] for f in status["phases"].split()] == list(BEFORE_PUBLISH)
        assert all(histogram_count(p) == before[p] + 1 for p in before)

        # upstream changes: new contents, a file removed, a file added, a mode changed alone,
        # a time changed alone, the symlink pointed elsewhere
        (up / "a/f1.bin").write_bytes(b"new contents" * 500)
        os.unlink(up / "b/f2.bin")
        (up / "b/new.bin").write_bytes(b"added")
        os.chmod(up / "keep/f0.bin", 0o600)
        os.utime(up / "keep/f1.bin", (1_000_000_000, 1_000_000_000))
        os.unlink(up / "link")
        (up / "link").symlink_to("b/f0.bin")
        old_state = tree_state(published)
        clone_ino = os.stat(clone).st_ino
        second = await kit.sync_one(mirror)
        assert second.result == "published", second
        new = snaps.published()
        assert new != published and tree_state(published) == old_state  # not one bit changed
        assert os.stat(new).st_ino == clone_ino and not clone.exists()  # the clone, renamed
        assert snaps.prepared(new).name == new.name + NEXT  # and the next one is ready
        assert (new / "a/f1.bin").read_bytes() == b"new contents" * 500
        assert not (new / "b/f2.bin").exists() and (new / "b/new.bin").read_bytes() == b"added"
        assert os.readlink(new / "link") == "b/f0.bin"
        assert os.stat(new / "keep/f1.bin").st_mtime == 1_000_000_000
        assert os.stat(new / "keep/f2.bin").st_ino == os.stat(published / "keep/f2.bin").st_ino
        assert os.stat(new / "keep/f0.bin").st_mode & 0o777 == 0o644  # ftpsync's fixed modes
        assert second.stats.files_transferred == 3  # a/f1, b/new, keep/f1 (its time)
        # the file count comes from rsync's --stats: the same as a walk (before the trace file;
        # rsync's size counts a symbolic link's target length too)
        files, size = count_files(new)
        trace = (new / "project/trace/bootyard").stat().st_size
        assert (second.files, second.size) == (files - 1, size - trace + len("b/f0.bin"))
    finally:
        await kit.close()


async def test_a_name_newly_excluded_is_removed_from_the_next_snapshot(redis_url, tmp_path,
                                                                      daemon):
    up = tmp_path / "upstream" / "files"
    upstream_tree(up)
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror")
    try:
        assert (await kit.sync_one(mirror_record("files", daemon.url + "files/"))).result == \
            "published"
        outcome = await kit.sync_one(mirror_record("files", daemon.url + "files/",
                                                   exclude="/b/"))
        assert outcome.result == "published", outcome
        new = Snapshots(tmp_path / "mirror", "files").published()
        assert not (new / "b").exists() and (new / "a/f0.bin").is_file()
        assert outcome.files == 10
    finally:
        await kit.close()


async def test_a_clone_cut_short_is_removed_and_the_sync_goes_on(redis_url, tmp_path, daemon):
    up = tmp_path / "upstream" / "files"
    upstream_tree(up)
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror")
    try:
        mirror = mirror_record("files", daemon.url + "files/")
        assert (await kit.sync_one(mirror)).result == "published"
        snaps = Snapshots(tmp_path / "mirror", "files")
        published = snaps.published()
        clone = snaps.prepared(published)
        # as if the service was killed while it cloned: only <id>.next.partial, half made
        os.rename(clone, clone.with_name(clone.name + ".partial"))
        os.unlink(clone.with_name(clone.name + ".partial") / "a/f0.bin")
        (up / "a/f3.bin").write_bytes(b"changed")
        outcome = await kit.sync_one(mirror)
        assert outcome.result == "published", outcome
        new = snaps.published()
        assert snaps.partials() == [] and (new / "a/f0.bin").is_file()
        assert os.stat(new / "a/f0.bin").st_ino == os.stat(published / "a/f0.bin").st_ino
        assert (new / "a/f3.bin").read_bytes() == b"changed"
    finally:
        await kit.close()


def test_clone_tree_links_files_and_copies_the_rest(tmp_path):
    src = tmp_path / "src"
    upstream_tree(src)
    os.chmod(src / "b", 0o750)
    clone_tree(src, tmp_path / "dst")
    dst = tmp_path / "dst"
    assert os.stat(dst / "a/f0.bin").st_ino == os.stat(src / "a/f0.bin").st_ino
    assert os.stat(dst / "b").st_ino != os.stat(src / "b").st_ino
    assert os.stat(dst / "b").st_mode & 0o777 == 0o750
    assert os.readlink(dst / "link") == "a/f0.bin" and \
        os.lstat(dst / "link").st_ino != os.lstat(src / "link").st_ino


def test_itemized_output_read():
    out = "\n".join([
        "created directory /m/x.partial",
        "*deleting   0 b/gone.bin",
        "*deleting   0 old/",
        ".d..t...... 4096 ./",
        ">f+++++++++ 7 b/new.bin",
        ">f.st...... 100 a/changed.bin",
        "cf...p..... 5 c/copied",
        ".f...p..... 6 c/chmodded",
        "cL+++++++++ 8 link",
        ">f+++++++++ 3 with\\#012newline",
        "",
        "Number of files: 5 (reg: 4)",
        "Total file size: 999 bytes",
    ])
    got = itemized.parse(out)
    assert got.deleted == {"b/gone.bin", "old"}
    assert got.transferred == {"b/new.bin", "a/changed.bin", "with\nnewline"}
    assert got.listed == {"c/copied": 5, "c/chmodded": 6}
    assert got.changed_in_place == ["c/chmodded"]
    assert itemized.unescape("a\\#303\\#251") == "a\u00e9"


async def test_an_upstream_being_updated_stops_the_copy_as_rsync_lists_it(redis_url, tmp_path,
                                                                          daemon):
    # the marker at the top is copied first, whatever the filters: the run stops there, before
    # the big file (at 256 KiB/s it would take 16 s), and nothing is published
    up = tmp_path / "upstream" / "files"
    up.mkdir(parents=True)
    (up / "big.img").write_bytes(os.urandom(4 << 20))
    (up / "Archive-Update-in-Progress-upstream.example").write_text("")
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror")
    try:
        outcome = await kit.sync_one(mirror_record("files", daemon.url + "files/", bwlimit=256,
                                                   exclude="*.example"))
        assert (outcome.result, outcome.reason) == ("failed", "upstream_updating"), outcome
        assert "(Archive-Update-in-Progress-upstream.example); not copied" in outcome.detail
        snaps = Snapshots(tmp_path / "mirror", "files")
        assert snaps.published() is None and snaps.partials() == []
    finally:
        await kit.close()


async def test_metadata_kept_by_the_quick_check_is_compared_by_checksum_after_a_restart(
        redis_url, tmp_path, daemon, gpg_key):
    # a restarted service does not know the clone's metadata files: it finds them by a walk
    repo = AptRepo(tmp_path / "upstream" / "debian", gpg_key)
    repo.add_package("hello", "1.0")
    repo.index()
    (tmp_path / "mirror").mkdir()
    mirror = mirror_record("debian", daemon.url + "debian/")
    for restarted in (False, True):
        kit = Kit(redis_url, tmp_path / "mirror")
        try:
            assert (await kit.sync_one(mirror)).result == "published"
            if restarted:
                await kit.close()
                kit = Kit(redis_url, tmp_path / "mirror")
            inrelease = repo.root / "dists/stable/InRelease"
            st = inrelease.stat()
            text = inrelease.read_bytes()
            changed = text.replace(b"Origin: bootyard-tes", b"Origin: bootyard-TES") \
                if b"Origin: bootyard-tes" in text else text.replace(b"Origin: bootyard-TES",
                                                                    b"Origin: bootyard-tes")
            assert changed != text and len(changed) == len(text)
            inrelease.write_bytes(changed)
            os.utime(inrelease, ns=(st.st_atime_ns, st.st_mtime_ns))
            outcome = await kit.sync_one(mirror)
            assert outcome.result == "published", outcome
            published = Snapshots(tmp_path / "mirror", "debian").published()
            assert (published / "dists/stable/InRelease").read_bytes() == changed
            assert outcome.stats.files_transferred == 1
        finally:
            await kit.close()


async def test_a_long_rsync_output_is_kept_head_and_tail(monkeypatch):
    # the first sync of a big mirror itemizes every file: only the start and the end (--stats)
    # are kept, and the sync knows the middle is missing
    from services.mirrorsync import transport

    monkeypatch.setattr(transport, "STDOUT_KEPT", 100_000)
    monkeypatch.setattr(transport, "STDOUT_TAIL", 1_000)
    seen = []

    def stop_on(piece: bytes):
        seen.append(len(piece))
        return None

    run = await transport.run_rsync(
        ["sh", "-c", "seq 1 200000; echo 'Total file size: 5 bytes'"], deadline=60,
        stop_on=stop_on)
    assert run.code == 0 and run.truncated and run.stopped is None
    assert run.stdout.startswith("1\n2\n") and run.stdout.endswith("Total file size: 5 bytes\n")
    assert len(run.stdout) <= 100_000 + 1_001 and sum(seen) >= 1_288_895  # all seen
    short = await transport.run_rsync(["sh", "-c", "echo one"], deadline=60, stop_on=stop_on)
    assert (short.stdout, short.truncated) == ("one\n", False)
