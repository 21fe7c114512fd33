#!/usr/bin/env python3
"""Mirror sync benchmark: bootyard's sync (snapshot, checks, trace, atomic publish) against the
cron job of seed 003, a plain ``rsync -a --delete`` into a directory, from the same upstream.

Everything runs on loopback: a private Redis, an ``rsync --daemon`` serving a synthetic upstream
of BENCH_MIRROR_FILES files (default 10,000) totalling BENCH_MIRROR_MIB MiB (default 2048) in
directories of 100 files, and two destinations on the same file system. Steps, in one run:

1. first sync: bootyard (``MirrorSync.sync_one``, the service's own code path: lock, upstream
   listing, rsync into a new snapshot, metadata pass, check, trace file, publish, prune), then
   plain rsync;
2. BENCH_MIRROR_CHANGED (default 0.01) of the files get new contents (same sizes);
3. incremental sync: bootyard, then plain rsync.

Reported: wall time of each sync, bytes written to disk (the file system's used space before and
after: hard-linked unchanged files cost nothing), and the time from the end of the upstream change
to bootyard's published, checked snapshot (the incremental sync is started at once, as
``bootyard mirror sync`` does). Plain rsync publishes nothing and checks nothing.

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
    for path in paths[::step]:
        data = bytearray(path.read_bytes())
        data[8:16] = os.urandom(8)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(bytes(data))
        os.rename(tmp, path)
        changed += 1
    return changed


def used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def timed_rsync(url: str, dest: Path) -> tuple[float, int]:
    before = used(dest)
    start = time.monotonic()
    subprocess.run(["rsync", "-a", "--delete", url, str(dest) + "/"], check=True,
                   stdout=subprocess.DEVNULL)
    os.sync()
    return time.monotonic() - start, used(dest) - before


async def timed_ours(sync: MirrorSync, events: EventLog, mirror, root: Path) -> tuple[float, int]:
    before = used(root)
    start = time.monotonic()
    outcome = await sync.sync_one(mirror, "bench")
    os.sync()
    elapsed = time.monotonic() - start
    await events.flush()
    if outcome.result != "published":
        raise SystemExit(f"bench-mirror: bootyard's sync did not publish: {outcome.reason}: "
                         f"{outcome.detail}")
    return elapsed, used(root) - before


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

        first_s, first_bytes = await timed_ours(sync, events, mirror, ours_root)
        say(f"first sync, bootyard: {first_s:.2f} s, {first_bytes >> 20} MiB written")
        rsync_first_s, rsync_first_bytes = timed_rsync(daemon.url, theirs)
        say(f"first sync, rsync -a --delete: {rsync_first_s:.2f} s, "
            f"{rsync_first_bytes >> 20} MiB written")

        changed = change(paths)
        changed_at = time.monotonic()
        incr_s, incr_bytes = await timed_ours(sync, events, mirror, ours_root)
        to_publish = time.monotonic() - changed_at
        say(f"incremental ({changed} files changed), bootyard: {incr_s:.2f} s, "
            f"{incr_bytes >> 20} MiB written; upstream change to published, checked snapshot: "
            f"{to_publish:.2f} s")
        rsync_incr_s, rsync_incr_bytes = timed_rsync(daemon.url, theirs)
        say(f"incremental, rsync -a --delete: {rsync_incr_s:.2f} s, "
            f"{rsync_incr_bytes >> 20} MiB written")
        await client.aclose()
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
