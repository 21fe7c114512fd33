"""``python -m services.mirrorsync`` as a process: the schedule follows the inventory live, the
CLI asks for a sync and shows the status, /metrics shows freshness, and a replica killed with
SIGKILL mid-sync leaves nothing behind that the next one does not clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from repokit import REPO, AptRepo, free_port

from harness.netlab import wait_for
from services.mirrorsync.snapshots import Snapshots
from shared import keys

pytestmark = pytest.mark.slow  # service processes, several seconds each


class Service:
    def __init__(self, tmp: Path, redis_url: str, name: str = "mirrorsync", **settings) -> None:
        self.root = tmp / "mirror"
        self.root.mkdir(exist_ok=True)
        self.metrics_port = free_port()
        self.log = tmp / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        values = {"root": self.root, "metrics_host": "127.0.0.1",
                  "metrics_port": self.metrics_port, "tick": 0.2, "lock_ttl": 2,
                  "min_free_bytes": 0, "retry_delay": 1, "io_timeout": 20, "contimeout": 5,
                  **settings}
        self.env.update({f"BOOTYARD_MIRRORSYNC__{k.upper()}": str(v) for k, v in values.items()})
        self.env.update(BOOTYARD_REDIS_URL=redis_url, PYTHONPATH=str(REPO))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "services.mirrorsync"], cwd=REPO,
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))
        wait_for(self.healthy, 20, what=f"mirrorsync healthy (log: {self.log})")

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mirrorsync exited: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz",
                                        timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} in /metrics")


def bootyard(redis_url: str, *args: str, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "cli", "--redis-url", redis_url, *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if check and done.returncode != 0:
        raise AssertionError(f"bootyard {' '.join(args)}: {done.stderr}")
    return done.stdout + done.stderr


def status(redis_url: str, name: str) -> dict[str, str]:
    import redis
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hgetall(keys.mirror_status(name))
    finally:
        client.close()


def test_mirrors_follow_the_inventory_and_the_cli(redis_url, tmp_path, daemon, gpg_key):
    repo = AptRepo(tmp_path / "upstream" / "debian", gpg_key)
    repo.add_package("hello")
    repo.index()
    service = Service(tmp_path, redis_url)
    service.start()
    try:
        # a mirror added with the CLI is synced without a restart (never synced: due now)
        bootyard(redis_url, "mirror", "add", "debian", "--source", daemon.url + "debian/",
                 "--path", "debian", "--interval", "3600")
        wait_for(lambda: status(redis_url, "debian").get("last_result") == "published", 60,
                 what="first publish")
        wait_for(lambda: "next_attempt" in status(redis_url, "debian"), 10,
                 what="next sync scheduled")
        first = status(redis_url, "debian")
        assert first["state"] == "idle" and float(first["next_attempt"]) >= \
            float(first["last_attempt"]) + 3600
        shown = bootyard(redis_url, "mirror", "status")
        assert shown.splitlines()[0].split() == ["MIRROR", "STATE", "LAST_SUCCESS",
                                                 "LAST_ATTEMPT", "DURATION", "SIZE", "FILES",
                                                 "LAST_ERROR"]
        assert shown.splitlines()[1].split()[:2] == ["debian", "idle"]
        metrics = service.metrics()
        assert metric(metrics, 'bootyard_mirrorsync_last_success_timestamp_seconds'
                      '{mirror="debian"}') == pytest.approx(float(first["last_success"]))
        assert metric(metrics, 'bootyard_mirrorsync_syncs_total{result="published"}') == 1
        assert metric(metrics, 'bootyard_mirrorsync_interval_seconds{mirror="debian"}') == 3600
        assert metric(metrics, "bootyard_mirrorsync_volume_size_bytes") > 0
        # paused, then asked for a sync now: it runs before its interval
        bootyard(redis_url, "mirror", "set", "debian", "--enabled", "no")
        repo.add_package("second")
        repo.index()
        out = bootyard(redis_url, "mirror", "sync", "debian")
        assert "asked for a sync of mirror debian (the mirror is paused" in out
        wait_for(lambda: status(redis_url, "debian").get("last_attempt") !=
                 first["last_attempt"] and status(redis_url, "debian").get("state") == "idle",
                 60, what="requested sync")
        snaps = Snapshots(service.root, "debian")
        assert (snaps.published() / "pool/main/s/second/second_1.0_all.deb").is_file()
        events = bootyard(redis_url, "events", "--mirror", "debian")
        assert [next(w for w in line.split() if w.startswith("mirror."))
                for line in events.splitlines()] == [
            "mirror.started", "mirror.published", "mirror.started", "mirror.published"]
        # a sync of a mirror that is not in the inventory is refused with its key
        out = bootyard(redis_url, "mirror", "sync", "nosuch", check=False)
        assert "no mirror nosuch (key bootyard:mirror:nosuch)" in out
        # removed: the service forgets it (its tree stays on the volume)
        bootyard(redis_url, "mirror", "rm", "debian")
        wait_for(lambda: 'mirror="debian"' not in service.metrics(), 10,
                 what="removed mirror's series dropped")
        assert snaps.published() is not None
    finally:
        service.stop()


def rsync_writing_into(partial: Path) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"rsync") and \
                    any(str(partial).encode() in a for a in cmdline):
                found.append(int(pid))
    return found


def test_a_replica_killed_mid_sync_is_recovered_by_the_next(redis_url, tmp_path, daemon):
    images = tmp_path / "upstream" / "images"
    images.mkdir(parents=True)
    (images / "big.img").write_bytes(os.urandom(4 << 20))
    first = Service(tmp_path, redis_url, name="first")
    first.start()
    bootyard(redis_url, "mirror", "add", "images", "--source", daemon.url + "images/",
             "--path", "images", "--bwlimit", "128")
    snaps = Snapshots(first.root, "images")

    def partial_growing():
        return any(p.stat().st_size > 32 << 10 for part in snaps.partials()
                   for p in part.rglob("*") if p.is_file())
    wait_for(partial_growing, 60, what="rsync copying into a partial snapshot")
    partial = snaps.partials()[0]
    assert rsync_writing_into(partial)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # its rsync dies with it (PR_SET_PDEATHSIG): nothing writes into the partial any more
    wait_for(lambda: not rsync_writing_into(partial), 10, what="orphan rsync gone")
    import redis
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    # the dead replica's lock lives until its lease (lock_ttl) runs out
    assert status(redis_url, "images")["state"] == "syncing"
    wait_for(lambda: not client.exists(keys.mirror_lock("images")), 10, what="lease expired")
    assert bootyard(redis_url, "mirror", "status", "images").splitlines()[1].split()[:2] == \
        ["images", "interrupted"]
    bootyard(redis_url, "mirror", "set", "images", "--bwlimit", "0")
    second = Service(tmp_path, redis_url, name="second")
    second.start()
    try:
        wait_for(lambda: status(redis_url, "images").get("last_result") == "published", 60,
                 what="publish by the next replica")
        assert snaps.partials() == [] and not partial.exists()
        assert snaps.published().joinpath("big.img").read_bytes() == \
            (images / "big.img").read_bytes()
        log = second.log.read_text()
        assert "sync_interrupted" in log and "partial_snapshots_removed" in log
        assert client.get(keys.mirror_lock("images")) is None
    finally:
        second.stop()
        client.close()


def test_two_replicas_side_by_side_publish_each_sync_once(redis_url, tmp_path, daemon):
    images = tmp_path / "upstream" / "images"
    images.mkdir(parents=True)
    (images / "a.img").write_bytes(os.urandom(1 << 20))
    replicas = [Service(tmp_path, redis_url, name=f"replica{i}") for i in (1, 2)]
    for replica in replicas:
        replica.start()
    try:
        bootyard(redis_url, "mirror", "add", "images", "--source", daemon.url + "images/",
                 "--path", "images", "--bwlimit", "2000")
        wait_for(lambda: status(redis_url, "images").get("last_result") == "published", 60,
                 what="first publish")
        (images / "b.img").write_bytes(os.urandom(1 << 20))
        bootyard(redis_url, "mirror", "sync", "images")
        wait_for(lambda: (Snapshots(tmp_path / "mirror", "images").published() / "b.img")
                 .exists() and status(redis_url, "images").get("state") == "idle", 60,
                 what="second publish")
        events = bootyard(redis_url, "events", "--mirror", "images")
        kinds = [next(w for w in line.split() if w.startswith("mirror."))
                 for line in events.splitlines()]
        assert kinds.count("mirror.published") == 2 and "mirror.failed" not in kinds
        snaps = Snapshots(tmp_path / "mirror", "images")
        assert len(snaps.snapshots()) == 2 and snaps.partials() == []
        published = sum(metric(r.metrics(), 'bootyard_mirrorsync_syncs_total{result="published"}')
                        for r in replicas)
        assert published == 2
    finally:
        for replica in replicas:
            replica.stop()


def test_a_mirror_paused_mid_sync_stops_its_rsync(redis_url, tmp_path, daemon):
    images = tmp_path / "upstream" / "images"
    images.mkdir(parents=True)
    (images / "big.img").write_bytes(os.urandom(4 << 20))
    service = Service(tmp_path, redis_url)
    service.start()
    try:
        bootyard(redis_url, "mirror", "add", "images", "--source", daemon.url + "images/",
                 "--path", "images", "--bwlimit", "128")
        snaps = Snapshots(service.root, "images")
        wait_for(lambda: snaps.partials() and rsync_writing_into(snaps.partials()[0]), 30,
                 what="sync running")
        partial = snaps.partials()[0]
        bootyard(redis_url, "mirror", "set", "images", "--enabled", "no")
        wait_for(lambda: status(redis_url, "images").get("state") == "failed", 30,
                 what="sync cancelled")
        assert "cancelled" in status(redis_url, "images")["last_error"]
        assert not partial.exists() and not rsync_writing_into(partial)
        assert snaps.published() is None
    finally:
        service.stop()
