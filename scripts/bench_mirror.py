#!/usr/bin/env python3
"""Mirror sync benchmark: bootyard's sync (snapshot, checks, trace, atomic publish) against the
cron job of seed 003, a plain ``rsync -a --delete`` into a directory, from the same upstream.

Everything runs on loopback: a private Redis, an ``rsync --daemon`` serving a synthetic upstream
of BENCH_MIRROR_FILES files (default 10,000) totalling BENCH_MIRROR_MIB MiB (default 2048) in
directories of 100 files, and two destinations on the same file system. Steps, in one run:

1. first sync: bootyard (``MirrorSync.sync_one``, the service's own code path: lock, rsync into
   a new snapshot (stopped at once by an upstream update marker), metadata pass, check, trace file,
   publish; after the publish, prune and the clone that is the next sync's base), then plain
   rsync;
2. BENCH_MIRROR_ROUNDS (default 3) times: another BENCH_MIRROR_CHANGED (default 0.01) of the
   files get new contents (same sizes), then an incremental sync by bootyard, then by plain
   rsync.

Reported: for bootyard the time from the call to the publish (the rename that makes the new,
checked snapshot the served one: what an operator waits for) with each phase's time, and apart
from it the work done after the publish under the mirror's lock (prune, the clone of the next
base); for plain rsync the time until it exits; for both how much the disk use grew (the file
system's used space before and after: hard-linked unchanged files cost nothing) and the
``sync(2)`` after each run (not in either timed figure; a ``sync(2)`` before each run starts both
with no dirty pages); the time from the end of the upstream change to bootyard's published,
checked snapshot (the incremental sync is started at once, as ``bootyard mirror sync`` does).
The incremental figures of the RESULT line are medians over the rounds. Plain rsync publishes
nothing and checks nothing.

Last line: ``RESULT mirror first_s=<ours> rsync_first_s=<theirs> incr_s=<ours>
rsync_incr_s=<theirs> ratio_incr=<ours/theirs>``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "mirrorsync")]

from repokit import RsyncDaemon  # noqa: E402

from harness.redis_server import RedisServer  # noqa: E402
from services.mirrorsync.server import MirrorSync  # noqa: E402
from services.mirrorsync.settings import MirrorsyncSection  # noqa: E402
from shared.events import EventLog  # noqa: E402
from shared.schema import KINDS  # noqa: E402
from shared.store import connect  # noqa: E402
from shared.validation import parse_record  # noqa: E402

FILES = int(os.environ.get("BENCH_MIRROR_FILES", "10000"))
MIB = float(os.environ.get("BENCH_MIRROR_MIB", "2048"))
CHANGED = float(os.environ.get("BENCH_MIRROR_CHANGED", "0.01"))
ROUNDS = int(os.environ.get("BENCH_MIRROR_ROUNDS", "3"))
PER_DIR = 100


def say(text: str) -> None:
    print(f"bench-mirror: {text}", flush=True)


def make_upstream(root: Path) -> list[Path]:
    size = int(MIB * (1 << 20) / FILES)
    paths = []
    chunk = os.urandom(1 << 20)
    for i in range(FILES):
        directory = root / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{i:06d}.bin"
        with open(path, "wb") as f:
            f.write(i.to_bytes(8, "big"))
            left = size - 8
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        paths.append(path)
    return paths


def change(paths: list[Path]) -> int:
    step = max(int(1 / CHANGED), 1) if CHANGED > 0 else len(paths) + 1
    changed = 0
    offset = change.rounds % step  # another 1% each round
    change.rounds += 1
    for path in paths[offset::step]:
        data = bytearray(path.read_bytes())
        data[8:16] = os.urandom(8)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(bytes(data))
        os.rename(tmp, path)
        changed += 1
    return changed


change.rounds = 0


def used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def flushed() -> float:
    """Seconds ``sync(2)`` took: dirty pages written out (not part of either timed figure)."""
    start = time.monotonic()
    os.sync()
    return time.monotonic() - start


def timed_rsync(url: str, dest: Path) -> tuple[float, int, float]:
    """(seconds until rsync exits, bytes written, seconds of the sync(2) after it)."""
    os.sync()
    before = used(dest)
    start = time.monotonic()
    subprocess.run(["rsync", "-a", "--delete", url, str(dest) + "/"], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    flush = flushed()
    return elapsed, used(dest) - before, flush


async def timed_ours(sync: MirrorSync, events: EventLog, mirror, root: Path) -> dict:
    """The sync's figures: ``to_publish`` (seconds from the call to the publish's rename: the
    figure compared with plain rsync), ``total`` (until sync_one returns: also the prune and the
    clone after the publish), ``phases``, ``written`` bytes, ``flush`` (the sync(2) after)."""
    os.sync()
    before = used(root)
    start = time.time()
    outcome = await sync.sync_one(mirror, "bench")
    total = time.time() - start
    flush = flushed()
    await events.flush()
    if outcome.result != "published":
        raise SystemExit(f"bench-mirror: bootyard's sync did not publish: {outcome.reason}: "
                         f"{outcome.detail}")
    return {"to_publish": outcome.published_at - start, "total": total,
            "published_at": outcome.published_at,
            "phases": dict(outcome.phases), "written": used(root) - before, "flush": flush}


def phases_text(phases: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in phases.items())


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


async def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bootyard-bench-mirror-"))
    redis = RedisServer(work / "redis")
    redis.start()
    daemon = RsyncDaemon(work / "rsyncd", work / "upstream")
    try:
        say(f"upstream: {FILES} files, {MIB:.0f} MiB, {CHANGED:.1%} changed between syncs")
        paths = make_upstream(work / "upstream")
        subprocess.run(["tar", "cf", "/dev/null", "-C", str(work), "upstream"], check=True)
        daemon.start()
        ours_root, theirs = work / "mirror", work / "plain"
        ours_root.mkdir()
        theirs.mkdir()
        client = connect(redis.url)
        events = EventLog(client, "mirrorsync")
        cfg = MirrorsyncSection(root=str(ours_root), min_free_bytes=0)
        sync = MirrorSync(cfg, inventory=None, client=client, events=events, rand=lambda: 0.0)
        mirror, problems = parse_record(KINDS["mirror"], "bench",
                                        {"source": daemon.url, "path": "bench"})
        assert mirror is not None, problems

        ours = await timed_ours(sync, events, mirror, ours_root)
        first_s = ours["to_publish"]
        say(f"first sync, bootyard: {first_s:.2f} s to publish, disk use "
            f"+{ours['written'] >> 20} MiB; after the publish {ours['total'] - first_s:.2f} s "
            f"more (prune, clone of the next base); sync(2) after: {ours['flush']:.2f} s; phases: "
            f"{phases_text(ours['phases'])}")
        rsync_first_s, rsync_first_bytes, flush = timed_rsync(daemon.url, theirs)
        say(f"first sync, rsync -a --delete: {rsync_first_s:.2f} s, "
            f"disk use +{rsync_first_bytes >> 20} MiB; sync(2) after: {flush:.2f} s")

        incr, rsync_incr, incr_synced, rsync_incr_synced = [], [], [], []
        for round_no in range(1, ROUNDS + 1):
            changed = change(paths)
            changed_at = time.time()
            ours = await timed_ours(sync, events, mirror, ours_root)
            to_publish = ours["published_at"] - changed_at
            incr.append(ours["to_publish"])
            incr_synced.append(ours["to_publish"] + ours["flush"])
            say(f"incremental {round_no}/{ROUNDS} ({changed} files changed), bootyard: "
                f"{ours['to_publish']:.2f} s to publish (upstream change to published, checked "
                f"snapshot: {to_publish:.2f} s, a sync(2) of the upstream's writes first), "
                f"disk use +{ours['written'] >> 20} MiB; after the "
                f"publish, off the measured path: {ours['total'] - ours['to_publish']:.2f} s "
                f"(prune, clone); sync(2) after: {ours['flush']:.2f} s; phases: "
                f"{phases_text(ours['phases'])}")
            elapsed, written, flush = timed_rsync(daemon.url, theirs)
            rsync_incr.append(elapsed)
            rsync_incr_synced.append(elapsed + flush)
            say(f"incremental {round_no}/{ROUNDS}, rsync -a --delete: {elapsed:.2f} s, "
                f"disk use +{written >> 20} MiB; sync(2) after: {flush:.2f} s")
        await client.aclose()
        incr_s, rsync_incr_s = median(incr), median(rsync_incr)
        say(f"incremental medians of {ROUNDS}: bootyard {incr_s:.2f} s to publish, rsync "
            f"{rsync_incr_s:.2f} s")
        say(f"with the sync(2) after each run counted (as this bench did before; "
            f"bootyard's also writes out the clone made after the publish): bootyard "
            f"{median(incr_synced):.2f} s, rsync {median(rsync_incr_synced):.2f} s, ratio "
            f"{median(incr_synced) / max(median(rsync_incr_synced), 1e-9):.2f}")
        ratio = incr_s / rsync_incr_s if rsync_incr_s else float("inf")
        print(f"RESULT mirror first_s={first_s:.2f} rsync_first_s={rsync_first_s:.2f} "
              f"incr_s={incr_s:.2f} rsync_incr_s={rsync_incr_s:.2f} ratio_incr={ratio:.2f}",
              flush=True)
        return 0
    finally:
        daemon.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
