"""Syncs with real parts on loopback: a real Redis, an ``rsync --daemon`` serving upstream trees the
tests build (an apt repository made with dpkg-deb and apt-ftparchive, signed with a throwaway gpg
key; a yum repository made with rpmbuild and createrepo_c), bootyard's HTTP service serving the
published mirror, and the distributions' own clients (apt-get, dnf) reading it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from repokit import AptClient, AptRepo, HttpService, RsyncDaemon, build_yum_repo

from harness.waiting import wait_until
from services.mirrorsync import metrics as mirror_metrics
from services.mirrorsync.server import MirrorSync
from services.mirrorsync.settings import MirrorsyncSection
from services.mirrorsync.snapshots import Snapshots
from shared import keys
from shared.events import EventLog
from shared.mirrors import MirrorState
from shared.schema import KINDS
from shared.store import connect
from shared.validation import parse_record


def mirror_record(name: str, source: str, **fields):
    raw = {"source": source, "path": name, **{k: str(v) for k, v in fields.items()}}
    record, problems = parse_record(KINDS["mirror"], name, raw)
    assert record is not None, problems
    return record


class Kit:
    """One replica's MirrorSync on a real Redis, with the test's mirror root."""

    def __init__(self, redis_url: str, root, **settings) -> None:
        self.client = connect(redis_url)
        self.events = EventLog(self.client, "mirrorsync")
        settings = {"min_free_bytes": 0, "io_timeout": 30, "contimeout": 5, "lock_ttl": 10.0,
                    **settings}
        cfg = MirrorsyncSection(root=str(root), **settings)
        self.sync = MirrorSync(cfg, inventory=None, client=self.client, events=self.events,
                               rand=lambda: 0.0)
        self.state = MirrorState(self.client)
        self.names: set[str] = set()

    async def sync_one(self, mirror):
        self.names.add(mirror.name)
        outcome = await self.sync.sync_one(mirror)
        await self.events.flush()
        return outcome

    async def close(self):
        for name in self.names:  # this process's registry: leave no test mirror's series behind
            mirror_metrics.forget(name)
        await self.client.aclose()


@pytest.fixture
async def kit(redis_url, tmp_path):
    (tmp_path / "mirror").mkdir()
    k = Kit(redis_url, tmp_path / "mirror")
    yield k
    await k.close()


@pytest.fixture
def apt(tmp_path, gpg_key):
    repo = AptRepo(tmp_path / "upstream" / "debian", gpg_key)
    repo.add_package("hello", "1.0")
    repo.add_package("world", "2.0", payload=20000)
    repo.index()
    return repo


@pytest.fixture
def http(tmp_path, redis_url):
    service = HttpService(tmp_path, redis_url, tmp_path / "mirror")
    (tmp_path / "mirror").mkdir(exist_ok=True)
    service.start()
    yield service
    service.stop()


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


async def events_of(kit: Kit, name: str) -> list[tuple[str, dict]]:
    return [(e.kind, e.fields) for e in await kit.events.read(count=1000)
            if e.fields.get("mirror") == name]


async def test_apt_mirror_is_published_checked_and_read_by_apt_get(kit, apt, daemon, http,
                                                                  tmp_path, gpg_key):
    mirror = mirror_record("debian", daemon.url + "debian/", keyring=gpg_key.public)
    outcome = await kit.sync_one(mirror)
    assert (outcome.result, outcome.reason) == ("published", None), outcome.detail
    root = tmp_path / "mirror"
    snaps = Snapshots(root, "debian")
    first = snaps.published()
    assert first.name == outcome.snapshot
    trace = (root / "debian" / "project" / "trace" / "bootyard").read_text()
    assert f"Upstream-mirror: 127.0.0.1:{daemon.port}" in trace

    client = AptClient(tmp_path / "apt-client", apt.sources_line(f"{http.url}/mirror/debian"))
    update = client.apt_get("update")
    assert "InRelease" in update.stdout and "NO_PUBKEY" not in update.stderr
    client.apt_get("download", "hello", "world")
    got = client.home / "download" / "world_2.0_all.deb"
    assert sha256(got) == sha256(apt.root / "pool/main/w/world/world_2.0_all.deb")

    status = await kit.state.status("debian")
    assert status["state"] == "idle" and status["last_result"] == "published"
    assert int(status["files"]) == outcome.files > 4 and status["snapshot"] == first.name
    kinds = [k for k, _ in await events_of(kit, "debian")]
    assert kinds == ["mirror.started", "mirror.published"]

    # the upstream changes: a package added, one removed; the next publish shows both, and
    # unchanged files are hard links to the previous snapshot (a sync costs the changed bytes)
    apt.add_package("newpkg", "3.0")
    apt.remove_package("world")
    apt.index()
    outcome = await kit.sync_one(mirror)
    assert outcome.result == "published", outcome.detail
    second = snaps.published()
    assert second != first
    hello = "pool/main/h/hello/hello_1.0_all.deb"
    assert os.stat(first / hello).st_ino == os.stat(second / hello).st_ino
    assert not (second / "pool/main/w/world").exists()
    assert outcome.stats.files_transferred < 10
    client.apt_get("update")
    client.apt_get("download", "newpkg")
    assert client.apt_get("download", "world", check=False).returncode != 0


async def test_the_signature_is_what_apt_checks(kit, apt, daemon, http, tmp_path, gpg_key):
    # the mirror is the upstream's bytes: a client with another key refuses it
    await kit.sync_one(mirror_record("debian", daemon.url + "debian/"))
    other = tmp_path / "other.gpg"
    other.write_bytes(b"")
    line = apt.sources_line(f"{http.url}/mirror/debian").replace(str(gpg_key.public), str(other))
    client = AptClient(tmp_path / "apt-other", line)
    done = client.apt_get("update", check=False)
    assert "not signed" in done.stderr or "NO_PUBKEY" in done.stderr or \
        "signatures couldn't be verified" in done.stderr, done.stderr


async def test_a_half_updated_upstream_is_not_published_then_published_once_whole(
        kit, apt, daemon, tmp_path):
    mirror = mirror_record("debian", daemon.url + "debian/")
    assert (await kit.sync_one(mirror)).result == "published"
    snaps = Snapshots(tmp_path / "mirror", "debian")
    published = snaps.published()
    # the upstream is caught mid-update: new indices and InRelease, the new package not there yet
    deb = apt.add_package("late", "1.0")
    apt.index()
    hidden = tmp_path / "hidden.deb"
    os.rename(deb, hidden)
    outcome = await kit.sync_one(mirror)
    assert (outcome.result, outcome.reason) == ("failed", "check_failed")
    assert "pool/main/l/late/late_1.0_all.deb: listed in" in outcome.detail
    assert snaps.published() == published and snaps.partials() == []
    assert len(snaps.snapshots()) == 1
    status = await kit.state.status("debian")
    assert status["state"] == "waiting" and status["failures"] == "1"
    assert status["last_error"] == outcome.detail
    assert ("mirror.failed", {"reason": "check_failed", "detail": outcome.detail}) in [
        (k, {f: v for f, v in fields.items() if f in ("reason", "detail")})
        for k, fields in await events_of(kit, "debian")]
    # the upstream finishes its update: the next sync publishes
    os.rename(hidden, deb)
    outcome = await kit.sync_one(mirror)
    assert outcome.result == "published", outcome.detail
    assert (snaps.published() / "pool/main/l/late/late_1.0_all.deb").is_file()
    assert (await kit.state.status("debian"))["failures"] == "0"


async def test_an_upstream_being_updated_is_waited_for(kit, apt, daemon, tmp_path):
    marker = apt.root / "Archive-Update-in-Progress-upstream.example"
    marker.write_text("")
    mirror = mirror_record("debian", daemon.url + "debian/")
    outcome = await kit.sync_one(mirror)
    assert (outcome.result, outcome.reason) == ("failed", "upstream_updating")
    assert "Archive-Update-in-Progress-upstream.example" in outcome.detail
    snaps = Snapshots(tmp_path / "mirror", "debian")
    assert snaps.published() is None and snaps.partials() == [] and snaps.snapshots() == []
    marker.unlink()
    assert (await kit.sync_one(mirror)).result == "published"


def big_upstream(tmp_path, size: int) -> None:
    tree = tmp_path / "upstream" / "images"
    tree.mkdir(parents=True, exist_ok=True)
    with open(tree / "big.img", "wb") as f:
        f.write(os.urandom(size))
    (tree / "small.txt").write_text("small\n")


async def _wait_for_partial_bytes(snaps: Snapshots, minimum: int) -> None:
    def grown():
        for partial in snaps.partials():
            for dirpath, _d, names in os.walk(partial):
                for name in names:
                    try:
                        if os.stat(os.path.join(dirpath, name)).st_size >= minimum:
                            return True
                    except FileNotFoundError:
                        pass
        return False
    await wait_until(grown, 30, "rsync has written part of the big file")


async def test_the_daemon_killed_mid_transfer_publishes_nothing(kit, daemon, tmp_path):
    big_upstream(tmp_path, 4 << 20)
    first = mirror_record("images", daemon.url + "images/")
    assert (await kit.sync_one(first)).result == "published"
    snaps = Snapshots(tmp_path / "mirror", "images")
    published = snaps.published()
    big_upstream(tmp_path, 4 << 20)  # new contents, sent slowly
    slow = mirror_record("images", daemon.url + "images/", bwlimit=256)
    task = asyncio.create_task(kit.sync_one(slow))
    await _wait_for_partial_bytes(snaps, 64 << 10)
    daemon.kill()
    outcome = await task
    assert outcome.result == "failed"
    assert outcome.reason in ("unreachable", "rsync_error", "rsync_partial"), outcome
    assert snaps.published() == published and snaps.partials() == []
    assert await kit.client.get(keys.mirror_lock("images")) is None


async def test_an_rsync_stalled_past_its_timeout_is_stopped(redis_url, daemon, tmp_path):
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror", io_timeout=2)
    try:
        big_upstream(tmp_path, 4 << 20)
        mirror = mirror_record("images", daemon.url + "images/", bwlimit=256)
        snaps = Snapshots(tmp_path / "mirror", "images")
        task = asyncio.create_task(kit.sync_one(mirror))
        await _wait_for_partial_bytes(snaps, 64 << 10)
        os.killpg(daemon.proc.pid, signal.SIGSTOP)  # the upstream hangs: no more data
        try:
            outcome = await asyncio.wait_for(task, 60)
        finally:
            os.killpg(daemon.proc.pid, signal.SIGCONT)
        assert (outcome.result, outcome.reason) == ("failed", "rsync_timeout"), outcome
        assert snaps.published() is None and snaps.partials() == []
    finally:
        await kit.close()


async def test_the_overall_deadline_stops_rsync(redis_url, daemon, tmp_path):
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror", deadline=1.0)
    try:
        big_upstream(tmp_path, 4 << 20)
        mirror = mirror_record("images", daemon.url + "images/", bwlimit=64)
        outcome = await kit.sync_one(mirror)
        assert (outcome.result, outcome.reason) == ("failed", "deadline"), outcome
        assert Snapshots(tmp_path / "mirror", "images").partials() == []
    finally:
        await kit.close()


async def test_two_replicas_racing_publish_once(redis_url, daemon, tmp_path, apt):
    (tmp_path / "mirror").mkdir()
    a = Kit(redis_url, tmp_path / "mirror")
    b = Kit(redis_url, tmp_path / "mirror")
    try:
        mirror = mirror_record("debian", daemon.url + "debian/", bwlimit=2000)
        outcomes = await asyncio.gather(a.sync_one(mirror), b.sync_one(mirror))
        results = sorted((o.result, o.reason) for o in outcomes)
        assert results == [("published", None), ("skipped", "locked")]
        snaps = Snapshots(tmp_path / "mirror", "debian")
        assert len(snaps.snapshots()) == 1 and snaps.partials() == []
        kinds = [k for k, _ in await events_of(a, "debian")]
        assert sorted(kinds) == ["mirror.published", "mirror.skipped", "mirror.started"]
    finally:
        await a.close()
        await b.close()


async def test_a_holder_that_lost_its_lock_does_not_publish(redis_url, daemon, tmp_path):
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror", lock_ttl=0.4)
    try:
        big_upstream(tmp_path, 1 << 20)
        mirror = mirror_record("images", daemon.url + "images/", bwlimit=512)
        snaps = Snapshots(tmp_path / "mirror", "images")
        task = asyncio.create_task(kit.sync_one(mirror))
        await _wait_for_partial_bytes(snaps, 32 << 10)
        # its lease ran out (a long pause) and another replica took the lock
        await kit.client.set(keys.mirror_lock("images"), "other-replica:1:abc", px=60000)
        outcome = await task
        assert (outcome.result, outcome.reason) == ("failed", "lock_lost"), outcome
        assert snaps.published() is None and snaps.snapshots() == [] and snaps.partials() == []
        assert await kit.client.get(keys.mirror_lock("images")) == "other-replica:1:abc"
    finally:
        await kit.close()


@pytest.mark.slow
@pytest.mark.parametrize("upstream_change", ["changed", "removed"])
async def test_a_download_across_a_publish_gets_the_whole_old_file(kit, daemon, http, tmp_path,
                                                                   upstream_change):
    size = 48 << 20
    big_upstream(tmp_path, size)
    mirror = mirror_record("images", daemon.url + "images/", keep=0)
    assert (await kit.sync_one(mirror)).result == "published"
    snaps = Snapshots(tmp_path / "mirror", "images")
    old = snaps.published()
    old_sha = sha256(old / "big.img")
    response = urllib.request.urlopen(f"{http.url}/mirror/images/big.img", timeout=30)
    digest = hashlib.sha256(response.read(1 << 20))
    if upstream_change == "changed":
        big_upstream(tmp_path, size)  # new bytes upstream
    else:
        os.unlink(tmp_path / "upstream" / "images" / "big.img")
    assert (await kit.sync_one(mirror)).result == "published"
    assert snaps.published() != old and not old.exists()  # keep=0: the old snapshot is gone
    while chunk := await asyncio.to_thread(response.read, 1 << 20):
        digest.update(chunk)
    response.close()
    assert digest.hexdigest() == old_sha
    if upstream_change == "changed":
        with urllib.request.urlopen(f"{http.url}/mirror/images/big.img", timeout=30) as fresh:
            assert hashlib.sha256(fresh.read()).hexdigest() == \
                sha256(snaps.published() / "big.img")
    else:
        assert not (snaps.published() / "big.img").exists()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{http.url}/mirror/images/big.img", timeout=30)
        assert refused.value.code == 404


async def test_yum_mirror_is_read_by_dnf(kit, daemon, http, tmp_path):
    build_yum_repo(tmp_path / "upstream" / "el", tmp_path / "rpmwork",
                   {"alpha": "1.0", "beta": "2.0"})
    outcome = await kit.sync_one(mirror_record("el", daemon.url + "el/"))
    assert outcome.result == "published", outcome.detail
    root = tmp_path / "dnfroot"
    (root / "etc" / "yum.repos.d").mkdir(parents=True)
    conf = root / "dnf.conf"
    conf.write_text(f"[main]\nreposdir={root}/etc/yum.repos.d\ncachedir={root}/cache\n"
                    f"gpgcheck=0\n[bootyard]\nname=bootyard\nbaseurl={http.url}/mirror/el/\n"
                    "enabled=1\n")
    dnf = ["dnf", "-y", "-q", "--config", str(conf), f"--installroot={root}",
           "--releasever=1", "--disablerepo=*", "--enablerepo=bootyard"]
    done = subprocess.run([*dnf, "makecache"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*dnf, "download", f"--destdir={root}/dl", "beta"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rpm = next((root / "dl").glob("beta-*.rpm"))
    assert sha256(rpm) == sha256(next((tmp_path / "upstream/el/Packages").glob("beta-*.rpm")))


@pytest.mark.lab
async def test_a_full_volume_leaves_the_published_tree_untouched(redis_url, daemon, tmp_path):
    volume = tmp_path / "mirror"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "bootyard-test", str(volume)],
                   check=True)
    kit = Kit(redis_url, volume)
    try:
        big_upstream(tmp_path, 5 << 20)
        mirror = mirror_record("images", daemon.url + "images/")
        assert (await kit.sync_one(mirror)).result == "published"
        snaps = Snapshots(volume, "images")
        published = snaps.published()
        before = sha256(published / "big.img")
        big_upstream(tmp_path, 9 << 20)  # 5 MiB published + 9 MiB new > 12 MiB
        outcome = await kit.sync_one(mirror)
        assert (outcome.result, outcome.reason) == ("failed", "disk_full"), outcome
        assert snaps.published() == published and snaps.partials() == []
        assert sha256(published / "big.img") == before
    finally:
        await kit.close()
        subprocess.run(["umount", "-l", str(volume)], check=False)
        shutil.rmtree(volume, ignore_errors=True)


async def test_the_schedule_syncs_a_local_directory_and_refuses_a_shared_path(redis_url, tmp_path):
    from shared.cache import StaticInventory

    source = tmp_path / "local-upstream"
    (source / "iso").mkdir(parents=True)
    (source / "iso" / "boot.iso").write_bytes(b"x" * 1000)
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror")
    first = mirror_record("isos", str(source))
    second = parse_record(KINDS["mirror"], "other", {"source": str(source), "path": "isos"})[0]
    kit.sync.inventory = StaticInventory(mirrors=[first, second])
    kit.names |= {"isos", "other"}
    try:
        await kit.sync.tick()
        assert kit.sync.running() == {"isos"}
        await asyncio.gather(*kit.sync._running.values())
        await kit.events.flush()
        snaps = Snapshots(tmp_path / "mirror", "isos")
        assert (snaps.published() / "iso" / "boot.iso").read_bytes() == b"x" * 1000
        assert (await kit.state.status("isos"))["last_result"] == "published"
        assert await kit.state.status("other") == {}
        await kit.sync.tick()  # published just now: not due again before its interval
        assert kit.sync.running() == set()
    finally:
        await kit.close()


async def test_an_index_rewritten_with_the_same_size_and_mtime_is_copied(kit, apt, daemon,
                                                                         tmp_path):
    # rsync's quick check (size, mtime) would hard-link the published InRelease: the metadata
    # pass compares metadata by checksum
    mirror = mirror_record("debian", daemon.url + "debian/")
    assert (await kit.sync_one(mirror)).result == "published"
    inrelease = apt.root / "dists/stable/InRelease"
    st = inrelease.stat()
    text = inrelease.read_bytes()
    changed = text.replace(b"Origin: bootyard-test", b"Origin: bootyard-tesT")
    assert changed != text and len(changed) == len(text)
    inrelease.write_bytes(changed)
    os.utime(inrelease, ns=(st.st_atime_ns, st.st_mtime_ns))
    outcome = await kit.sync_one(mirror)
    assert outcome.result == "published"
    published = Snapshots(tmp_path / "mirror", "debian").published()
    assert (published / "dists/stable/InRelease").read_bytes() == changed


async def test_a_check_longer_than_the_lease_still_publishes(redis_url, daemon, tmp_path,
                                                             monkeypatch):
    # the lock is renewed for the whole sync, not only while rsync runs: checking a big first
    # sync takes minutes, far longer than one lease
    from services.mirrorsync import server

    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror", lock_ttl=0.3)
    real_check = server.check_snapshot
    ttls = []

    def slow_check(*args, **kwargs):
        import redis
        client = redis.Redis.from_url(redis_url)
        start = time.monotonic()
        while time.monotonic() - start < 1.5:  # five leases
            ttls.append(client.pttl(keys.mirror_lock("images")))
            time.sleep(0.05)
        client.close()
        return real_check(*args, **kwargs)

    monkeypatch.setattr(server, "check_snapshot", slow_check)
    try:
        big_upstream(tmp_path, 1000)
        outcome = await kit.sync_one(mirror_record("images", daemon.url + "images/"))
        assert (outcome.result, outcome.reason) == ("published", None), outcome
        assert min(ttls) > 0  # the lock never lapsed during the check
    finally:
        await kit.close()


async def test_a_mirror_kept_by_hand_is_adopted_but_not_trusted(kit, apt, daemon, tmp_path):
    # the cron job's old tree becomes the first snapshot (its files are hard-linked, not fetched
    # again), but it was never checked: a package damaged in it (same size and mtime, so rsync's
    # quick check keeps it) is found by its hash
    by_hand = tmp_path / "mirror" / "debian"
    shutil.copytree(apt.root, by_hand)  # copy2: sizes and mtimes as upstream
    deb = by_hand / "pool/main/w/world/world_2.0_all.deb"
    st = deb.stat()
    data = bytearray(deb.read_bytes())
    data[-1] ^= 0xFF
    deb.write_bytes(bytes(data))
    os.utime(deb, ns=(st.st_atime_ns, st.st_mtime_ns))
    mirror = mirror_record("debian", daemon.url + "debian/")
    outcome = await kit.sync_one(mirror)
    assert (outcome.result, outcome.reason) == ("failed", "check_failed"), outcome
    assert "pool/main/w/world/world_2.0_all.deb: sha256" in outcome.detail
    snaps = Snapshots(tmp_path / "mirror", "debian")
    assert snaps.published().name.startswith("adopted-") and by_hand.is_symlink()
    os.unlink(snaps.published() / "pool/main/w/world/world_2.0_all.deb")  # the operator's fix
    outcome = await kit.sync_one(mirror)
    assert outcome.result == "published", outcome
    assert sha256(snaps.published() / "pool/main/w/world/world_2.0_all.deb") == \
        sha256(apt.root / "pool/main/w/world/world_2.0_all.deb")


@pytest.mark.lab
async def test_a_sync_across_a_lab_network(redis_url, tmp_path, gpg_key, lab):
    # the upstream's rsync daemon in the lab's server namespace, rsync in a client namespace
    # (through a wrapper given as mirrorsync.rsync), across the lab's bridge
    segment = lab.segment(clients=1, client_addresses=True)
    client = segment.clients[0]
    repo = AptRepo(tmp_path / "upstream" / "debian", gpg_key)
    repo.add_package("hello", payload=200_000)
    repo.add_package("world", payload=300_000)
    repo.index()
    daemon = RsyncDaemon(tmp_path / "rsyncd", tmp_path / "upstream", ns=segment.server,
                         address=segment.address(1), port=8873)
    daemon.start()
    wrapper = tmp_path / "rsync-in-client-ns"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {client.name} rsync \"$@\"\n")
    wrapper.chmod(0o755)
    (tmp_path / "mirror").mkdir()
    kit = Kit(redis_url, tmp_path / "mirror", rsync=str(wrapper))
    try:
        outcome = await kit.sync_one(mirror_record("debian", daemon.url + "debian/",
                                                   keyring=gpg_key.public))
        assert (outcome.result, outcome.reason) == ("published", None), outcome
        published = Snapshots(tmp_path / "mirror", "debian").published()
        assert sha256(published / "pool/main/w/world/world_1.0_all.deb") == \
            sha256(repo.root / "pool/main/w/world/world_1.0_all.deb")
        assert f"Upstream-mirror: {segment.address(1)}:8873" in \
            (published / "project/trace/bootyard").read_text()
    finally:
        daemon.stop()
        await kit.close()
