"""The wiring of the mirror sync service: the schedule, and one sync from lock to publish.

:class:`MirrorSync` looks every ``tick`` at the inventory (an :class:`~shared.cache.InventoryView`
kept current by keyspace notifications: a mirror added, changed, paused or removed is seen within
a second), at the sync requests of ``bootyard mirror sync`` and at each mirror's due time
(:func:`~services.mirrorsync.policy.due_at`, from the status every replica shares in Redis), and
starts syncs, at most ``max_concurrent`` at once.

One sync (:meth:`MirrorSync.sync_one`): take the mirror's lock (another replica has it: skipped),
remove partial snapshots a killed sync left, check the free space, look at the top of the upstream
for ``Archive-Update-in-Progress-*``, rsync into a new snapshot (hard links to the published one)
watching the free space, check the snapshot, write the trace file, check the lock is still ours
(fencing), publish with one rename, prune old snapshots; the lock is renewed all along
(:class:`LockKeeper`).
Every sync ends in one record: a log line, the metrics, an event and the status hash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import tempfile
import time
from pathlib import Path

from services.mirrorsync import metrics as m
from services.mirrorsync.checks import check_snapshot, linked_metadata
from services.mirrorsync.policy import (
    RETRY_REASONS,
    Stats,
    archive_serial,
    classify_exit,
    due_at,
    list_argv,
    listed_names,
    metadata_argv,
    metadata_list,
    parse_stats,
    rsync_argv,
    trace_text,
    updating_markers,
)
from services.mirrorsync.settings import MirrorsyncSection
from services.mirrorsync.snapshots import (
    ADOPTED_PREFIX,
    Snapshots,
    disk_space,
    remove_tree,
    write_file_atomically,
)
from services.mirrorsync.transport import run_capture, run_rsync
from shared import keys, logs
from shared.mirrors import MirrorLock, MirrorState
from shared.records import Mirror
from shared.store import InventoryUnavailable

log = logs.get_logger("mirrorsync")


class SyncFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class Outcome:
    result: str                   # published, failed, skipped
    reason: str | None = None     # failure or skip reason
    detail: str = ""
    snapshot: str | None = None
    stats: Stats = dataclasses.field(default_factory=Stats)
    files: int = 0
    size: int = 0
    duration: float = 0.0


class MirrorSync:
    def __init__(self, cfg: MirrorsyncSection, inventory, client, events, *,
                 rand=random.random) -> None:
        self.cfg = cfg
        self.inventory = inventory
        self.client = client
        self.state = MirrorState(client)
        self.events = events
        self.rand = rand
        self.root = Path(cfg.root)
        self.host = socket.gethostname()
        self._due: dict[str, float] = {}
        self._jitter: dict[str, float] = {}
        self._seen: dict[str, Mirror] = {}
        self._running: dict[str, asyncio.Task] = {}
        self._clash: dict[str, str] = {}  # mirror -> the mirror that has its path
        self._redis_failing = False

    # ------------------------------------------------------------------------------ schedule
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
                if self._redis_failing:
                    self._redis_failing = False
                    log.info("redis_reachable_again")
            except InventoryUnavailable as exc:
                if not self._redis_failing:
                    self._redis_failing = True
                    log.error("redis_unreachable", reason=str(exc),
                              action="no new syncs until Redis answers; running ones go on")
            try:
                await asyncio.wait_for(stop.wait(), self.cfg.tick)
            except TimeoutError:
                pass
        for task in list(self._running.values()):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def tick(self) -> None:
        self._volume_metrics()
        mirrors = {mir.name: mir for mir in self.inventory.all("mirror")}
        for name in list(self._seen):
            if name not in mirrors:
                await self._forget(name)
        for name, mirror in mirrors.items():
            if self._seen.get(name) != mirror:
                await self._changed(name, mirror)
        requests = set(await self.state.requested())
        for name in sorted(requests - set(mirrors)):  # asked for, then removed
            if await self.state.take_request(name):
                log.info("sync_request_dropped", mirror=name, reason="no such mirror now")
        now = time.time()
        owners: dict[str, str] = {}
        for name in sorted(mirrors):
            mirror = mirrors[name]
            owner = owners.setdefault(mirror.path, name)
            if owner != name:  # two records, one directory: only the first (by name) is synced
                if self._clash.get(name) != owner:
                    self._clash[name] = owner
                    log.error("mirror_path_taken", mirror=name, path=mirror.path, owner=owner,
                              fix=f"give {keys.object_key('mirror', name)} another path; it is "
                              "not synced")
                continue
            self._clash.pop(name, None)
            if name in self._running or len(self._running) >= self.cfg.max_concurrent:
                continue
            asked = name in requests and await self.state.take_request(name)
            if asked:
                log.info("sync_requested", mirror=name)
            elif not mirror.enabled or self._due.get(name, 0.0) > now:
                continue
            elif not await self._still_due(mirror, now):
                continue
            self._start(mirror, "requested" if asked else "schedule")

    async def _changed(self, name: str, mirror: Mirror) -> None:
        old = self._seen.get(name)
        self._seen[name] = mirror
        self._jitter.setdefault(name, self.rand())
        self._due.pop(name, None)
        m.INTERVAL.labels(name).set(mirror.interval)
        if old is None:
            status = await self.state.status(name)
            if status.get("last_success"):
                m.LAST_SUCCESS.labels(name).set(float(status["last_success"]))
            if status.get("last_attempt"):
                m.LAST_ATTEMPT.labels(name).set(float(status["last_attempt"]))
            m.CONSECUTIVE_FAILURES.labels(name).set(int(status.get("failures") or 0))
            log.info("mirror_added", mirror=name, source=mirror.source, path=mirror.path,
                     interval=mirror.interval, enabled=mirror.enabled)
        else:
            log.info("mirror_changed", mirror=name, source=mirror.source, path=mirror.path,
                     interval=mirror.interval, enabled=mirror.enabled)
        task = self._running.get(name)
        if task and (not mirror.enabled or old is None or old.source != mirror.source
                     or old.path != mirror.path):
            log.info("sync_cancelled", mirror=name, reason="mirror paused or changed")
            task.cancel()

    async def _forget(self, name: str) -> None:
        self._seen.pop(name, None)
        self._due.pop(name, None)
        self._jitter.pop(name, None)
        task = self._running.get(name)
        if task:
            task.cancel()
        m.forget(name)
        log.info("mirror_removed", mirror=name,
                 note="its published tree and snapshots stay on the volume")

    async def _still_due(self, mirror: Mirror, now: float) -> bool:
        """Whether the mirror is due, by the status all replicas share (another replica may
        have synced it since this one last looked)."""
        status = (await self.state.statuses([mirror.name]))[mirror.name]
        if status.get("state") == "syncing":
            if status.get("lock"):  # another replica (or a dead one whose lease runs on) syncs
                self._due[mirror.name] = now + min(self.cfg.lock_ttl, mirror.interval)
                return False
            log.info("sync_interrupted", mirror=mirror.name, holder=status.get("holder"),
                     action="its replica died mid-sync and its lock expired: syncing again now")
            return True
        due = due_at(last_attempt=_float(status.get("last_attempt")),
                     last_result=status.get("last_result"),
                     failures=int(status.get("failures") or 0), interval=mirror.interval,
                     jitter=self.cfg.jitter, retry_delay=self.cfg.retry_delay,
                     rand=self._jitter.get(mirror.name, 0.0))
        self._due[mirror.name] = due
        if due > now:
            await self.state.update(mirror.name, {"next_attempt": f"{due:.0f}"})
            return False
        return True

    def _start(self, mirror: Mirror, why: str) -> None:
        task = asyncio.create_task(self.sync_one(mirror, why), name=f"sync-{mirror.name}")
        self._running[mirror.name] = task

        def done(t: asyncio.Task) -> None:
            if self._running.get(mirror.name) is t:
                del self._running[mirror.name]
            self._due.pop(mirror.name, None)
            self._jitter[mirror.name] = self.rand()
            if mirror.name not in self._seen:  # removed while it synced: drop its series again
                m.forget(mirror.name)
            if not t.cancelled() and t.exception() is not None:
                log.error("sync_crashed", mirror=mirror.name, reason=repr(t.exception()))
        task.add_done_callback(done)

    def running(self) -> set[str]:
        return set(self._running)

    def _volume_metrics(self) -> None:
        try:
            free, total = disk_space(self.root)
        except OSError:
            return
        m.VOLUME_FREE.set(free)
        m.VOLUME_SIZE.set(total)

    # ------------------------------------------------------------------------------ one sync
    async def sync_one(self, mirror: Mirror, why: str = "requested") -> Outcome:
        name = mirror.name
        lock = MirrorLock(self.client, name, int(self.cfg.lock_ttl * 1000))
        if not await lock.acquire():
            holder = await lock.holder()
            outcome = Outcome("skipped", "locked", f"another replica holds the lock ({holder})")
            m.SYNCS.labels("skipped").inc()
            self.events.emit("mirror.skipped", mirror=name, reason="locked", holder=holder)
            log.info("sync", mirror=name, result="skipped", reason="locked", holder=holder)
            return outcome
        started = time.time()
        m.LOCK_HELD.labels(name).set(1)
        m.IN_PROGRESS.labels(name).set(1)
        m.LAST_ATTEMPT.labels(name).set(started)
        snaps = Snapshots(self.root, mirror.path)
        work: list[Path] = []
        outcome = Outcome("failed")
        status: dict[str, str] = {}
        try:
            status = await self.state.status(name)
            await self.state.update(name, {"state": "syncing", "last_attempt": f"{started:.3f}",
                                           "holder": lock.token, "next_attempt": ""})
            self.events.emit("mirror.started", mirror=name, source=mirror.source, why=why)
            async with LockKeeper(lock, self.cfg.lock_ttl / 4) as keeper:
                outcome = await self._sync(mirror, lock, keeper, snaps, status, work, started)
        except SyncFailed as exc:
            outcome = Outcome("failed", exc.reason, exc.detail)
        except asyncio.CancelledError:
            outcome = Outcome("failed", "io_error", "sync cancelled (service stopping, or the "
                              "mirror was paused, changed or removed)")
            raise
        except OSError as exc:
            outcome = Outcome("failed", "disk_full" if exc.errno == 28 else "io_error",
                              f"{exc.filename or ''}: {exc.strerror or exc}")
        except InventoryUnavailable as exc:  # the lock cannot be confirmed: never publish
            outcome = Outcome("failed", "lock_lost", f"cannot confirm the lock: {exc}")
        finally:
            outcome.duration = time.time() - started
            for path in work:  # a partial or an unpublished snapshot
                if path.exists():
                    await asyncio.to_thread(remove_tree, path)
            try:
                await self._record(mirror, outcome, status, started)
            finally:
                try:
                    await lock.release()
                except InventoryUnavailable as exc:
                    log.warning("lock_not_released", mirror=name, reason=str(exc),
                                action=f"it expires after mirrorsync.lock_ttl {self.cfg.lock_ttl} s")
                finally:
                    m.LOCK_HELD.labels(name).set(0)
                    m.IN_PROGRESS.labels(name).set(0)
        return outcome

    async def _sync(self, mirror: Mirror, lock: MirrorLock, keeper: LockKeeper,
                    snaps: Snapshots, status: dict[str, str], work: list[Path],
                    started: float) -> Outcome:
        cfg = self.cfg
        name = mirror.name
        self.root.mkdir(parents=True, exist_ok=True)
        adopted = await asyncio.to_thread(snaps.adopt_directory)
        if adopted:
            log.info("adopted_directory", mirror=name, snapshot=adopted.name)
        removed = await asyncio.to_thread(snaps.clean_partials)
        if removed:
            log.info("partial_snapshots_removed", mirror=name, snapshots=",".join(removed))
        free, _total = disk_space(self.root)
        needed = cfg.min_free_bytes + int(cfg.space_factor *
                                          int(status.get("bytes_transferred") or 0))
        if free < needed:
            raise SyncFailed("disk_full", f"{free} bytes free on {self.root}, a sync needs "
                             f"{needed} (mirrorsync.min_free_bytes + space_factor x the last "
                             "sync's bytes)")
        await self._upstream_not_updating(mirror)

        published = snaps.published()
        partial = snaps.new_partial(started)
        work.append(partial)
        argv = rsync_argv(mirror, str(partial), rsync=cfg.rsync,
                          link_dest=str(published.resolve()) if published else None,
                          io_timeout=cfg.io_timeout, contimeout=cfg.contimeout)
        async def watch() -> str | None:
            if keeper.lost:
                return "lock_lost"
            if disk_space(self.root)[0] < cfg.min_free_bytes:
                return "disk_full"
            return None

        run = await run_rsync(argv, deadline=cfg.deadline, watch=watch, stall=cfg.io_timeout)
        stats = parse_stats(run.stdout)
        self._rsync_verdict(run)
        # metadata the quick check (size, mtime) took for unchanged: again, by checksum
        linked = await asyncio.to_thread(linked_metadata, partial, published)
        if linked:
            with tempfile.NamedTemporaryFile("wb", prefix=f"bootyard-{name}-",
                                             suffix=".metadata") as listing:
                listing.write(metadata_list(mirror, linked))
                listing.flush()
                meta = metadata_argv(mirror, str(partial), listing.name, rsync=cfg.rsync,
                                     io_timeout=cfg.io_timeout, contimeout=cfg.contimeout)
                remaining = max(cfg.deadline - (time.time() - started), 1.0)
                run = await run_rsync(meta, deadline=remaining, watch=watch,
                                      stall=cfg.io_timeout)
            self._rsync_verdict(run)
            more = parse_stats(run.stdout)
            stats = dataclasses.replace(
                stats, files_transferred=stats.files_transferred + more.files_transferred,
                bytes_transferred=stats.bytes_transferred + more.bytes_transferred,
                bytes_received=stats.bytes_received + more.bytes_received)
        markers = updating_markers(p.name for p in partial.iterdir())
        if markers:
            raise SyncFailed("upstream_updating", f"the upstream started an update during the "
                             f"sync ({markers[0]}); not published, retried later")
        # files shared with a snapshot this service checked are not hashed again; an adopted
        # directory (made by hand) was never checked
        checked_before = published if published and not published.name.startswith(
            ADOPTED_PREFIX) else None
        result = await asyncio.to_thread(
            check_snapshot, partial, check=mirror.check, published=checked_before,
            published_files=int(status.get("files") or 0) or None, max_shrink=cfg.max_shrink,
            excludes=mirror.exclude, keyring=mirror.keyring)
        if not result.ok:
            raise SyncFailed("check_failed", f"{result.kind} check: {result.problem}")
        if keeper.lost:
            raise SyncFailed("lock_lost", "another replica took the lock (lease expired) "
                             "during the check: nothing published")
        finished = time.time()
        master = partial / "project" / "trace" / "master"
        upstream_trace = master.read_text(errors="replace") if master.is_file() else None
        trace = trace_text(started=started, finished=finished, upstream=mirror.source,
                           serial=archive_serial(upstream_trace, finished), stats=stats,
                           creator="bootyard mirrorsync", host=self.host)
        await asyncio.to_thread(write_file_atomically,
                                partial / "project" / "trace" / cfg.trace_name, trace)
        final = snaps.finish(partial)
        work[:] = [final]
        if not await lock.renew():  # fencing: only the lock's owner publishes
            raise SyncFailed("lock_lost", "the lock is no longer ours (its lease ran out): "
                             "the checked snapshot is not published")
        snaps.publish(final)
        work.clear()
        keep = mirror.keep if mirror.keep is not None else cfg.keep
        pruned = await asyncio.to_thread(snaps.prune, keep)
        if pruned:
            log.info("snapshots_removed", mirror=name, snapshots=",".join(pruned), keep=keep)
        return Outcome("published", snapshot=final.name, stats=stats, files=result.files,
                       size=result.size)

    def _rsync_verdict(self, run) -> None:
        """Raise SyncFailed unless the rsync run ended well."""
        cfg = self.cfg
        if run.stopped == "deadline":
            raise SyncFailed("deadline", f"rsync still running after mirrorsync.deadline "
                             f"{cfg.deadline:.0f} s; stopped")
        if run.stopped == "stalled":
            raise SyncFailed("rsync_timeout", f"rsync received nothing for "
                             f"mirrorsync.io_timeout {cfg.io_timeout} s; stopped")
        if run.stopped == "lock_lost":
            raise SyncFailed("lock_lost", "another replica took the lock (lease expired): "
                             "stopped rsync, nothing published")
        if run.stopped == "disk_full":
            raise SyncFailed("disk_full", f"less than {cfg.min_free_bytes} bytes free on "
                             f"{self.root} during the sync: stopped rsync, partial removed")
        verdict = classify_exit(run.code, run.stderr)
        if not verdict.ok:
            raise SyncFailed(verdict.reason, f"{verdict.detail}: {_last_line(run.stderr)}")

    async def _upstream_not_updating(self, mirror: Mirror) -> None:
        cfg = self.cfg
        argv = list_argv(mirror, rsync=cfg.rsync, io_timeout=cfg.io_timeout,
                         contimeout=cfg.contimeout)
        code, out, err = await run_capture(argv, cfg.contimeout + cfg.io_timeout)
        verdict = classify_exit(code, err)
        if code == -9:
            raise SyncFailed("unreachable", f"listing {mirror.source}: {err}")
        if not verdict.ok:
            raise SyncFailed(verdict.reason, f"listing {mirror.source}: {verdict.detail}: "
                             f"{_last_line(err)}")
        markers = updating_markers(listed_names(out))
        if markers:
            raise SyncFailed("upstream_updating", f"{mirror.source} is being updated "
                             f"({markers[0]}); waiting, retried in mirrorsync.retry_delay")

    async def _record(self, mirror: Mirror, outcome: Outcome, status: dict[str, str],
                      started: float) -> None:
        name = mirror.name
        m.SYNCS.labels(outcome.result).inc()
        m.DURATION.labels(name).observe(outcome.duration)
        stats = outcome.stats
        fields: dict[str, object] = {"holder": "", "duration": f"{outcome.duration:.1f}"}
        if outcome.result == "published":
            m.LAST_SUCCESS.labels(name).set(started)
            m.CONSECUTIVE_FAILURES.labels(name).set(0)
            m.BYTES.labels(name).inc(stats.bytes_transferred)
            m.FILES.labels(name).inc(stats.files_transferred)
            m.PUBLISHED_BYTES.labels(name).set(outcome.size)
            m.PUBLISHED_FILES.labels(name).set(outcome.files)
            fields.update(state="idle", last_success=f"{started:.3f}", last_result="published",
                          failures="0", size=outcome.size, files=outcome.files,
                          bytes_transferred=stats.bytes_transferred,
                          files_transferred=stats.files_transferred, snapshot=outcome.snapshot,
                          last_error="")
            self.events.emit("mirror.published", mirror=name, snapshot=outcome.snapshot,
                             files=outcome.files, size=outcome.size,
                             bytes=stats.bytes_transferred, duration=f"{outcome.duration:.1f}")
            log.info("sync", mirror=name, result="published", snapshot=outcome.snapshot,
                     files=outcome.files, size=outcome.size,
                     files_transferred=stats.files_transferred,
                     bytes_transferred=stats.bytes_transferred,
                     duration_s=round(outcome.duration, 1))
        else:
            failures = int(status.get("failures") or 0) + 1
            m.FAILURES.labels(name, outcome.reason).inc()
            m.CONSECUTIVE_FAILURES.labels(name).set(failures)
            retry = outcome.reason in RETRY_REASONS
            fields.update(state="waiting" if retry else "failed", last_result=outcome.reason,
                          failures=failures, last_error=outcome.detail)
            self.events.emit("mirror.failed", mirror=name, reason=outcome.reason,
                             detail=outcome.detail, duration=f"{outcome.duration:.1f}")
            log.warning("sync", mirror=name, result="failed", reason=outcome.reason,
                        detail=outcome.detail, failures=failures,
                        duration_s=round(outcome.duration, 1),
                        next="retry after mirrorsync.retry_delay" if retry
                        else "at the next interval")
        try:
            await self.state.update(name, fields)
        except InventoryUnavailable as exc:
            log.error("status_not_written", mirror=name, reason=str(exc))


class LockKeeper:
    """Renews a held lock every ``every`` seconds for as long as a sync runs (rsync, the check,
    the publish); ``lost`` turns true when the lock is no longer ours. A failed renewal (Redis
    unreachable) is logged and tried again: the lease runs on, and the publish step asks Redis
    itself before it publishes."""

    def __init__(self, lock: MirrorLock, every: float) -> None:
        self.lock = lock
        self.every = every
        self.lost = False
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> LockKeeper:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.every)
            try:
                if not await self.lock.renew():
                    self.lost = True
                    log.warning("lock_lost", mirror=self.lock.name,
                                action="the sync stops and publishes nothing")
            except InventoryUnavailable as exc:
                log.warning("lock_renew_failed", mirror=self.lock.name, reason=str(exc))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
