"""The wiring of the mirror sync service: the schedule, and one sync from lock to publish.

:class:`MirrorSync` looks every ``tick`` at the inventory (an :class:`~shared.cache.InventoryView`
kept current by keyspace notifications: a mirror added, changed, paused or removed is seen within
a second), at the sync requests of ``bootyard mirror sync`` and at each mirror's due time
(:func:`~services.mirrorsync.policy.due_at`, from the status every replica shares in Redis), and
starts syncs, at most ``max_concurrent`` at once.

One sync (:meth:`MirrorSync.sync_one`): take the mirror's lock (another replica has it: skipped),
remove partial snapshots a killed sync left, check the free space, rsync into a new snapshot (the
clone of the published one made after the last publish, else an empty directory with hard links
to the published one) watching the free space and rsync's output for an
``Archive-Update-in-Progress-*`` file at the upstream's top, copy again the metadata rsync kept
whose checksum differs, check the snapshot, write the trace file, check the lock is still ours (fencing), publish with
one rename; record it; then, off the path to the publish, prune old snapshots and clone the new
one as the next base. The lock is renewed all along (:class:`LockKeeper`).
Every sync ends in one record: a log line, the metrics, an event and the status hash, with the
time of each phase (:mod:`services.mirrorsync.phases`).
A sync whose task was asked to cancel (mirror paused, changed or removed; the service stopping)
never publishes, even when the cancellation was dropped by the Redis client (Python 3.11's
``asyncio.wait_for`` returns a command's reply instead, as for the :class:`LockKeeper`): it
checks ``cancelling()`` before rsync, while rsync runs and after the fencing, and ends cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import tempfile
import time
from pathlib import Path

from services.mirrorsync import itemized, metrics as m
from services.mirrorsync.checks import check_snapshot
from services.mirrorsync.lockkeeper import LockKeeper
from services.mirrorsync.phases import AFTER_PUBLISH, BEFORE_PUBLISH, PhaseClock
from services.mirrorsync.policy import (
    RETRY_REASONS,
    UPDATE_MARKER,
    Stats,
    archive_serial,
    classify_exit,
    due_at,
    is_metadata,
    marker_in_output,
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
    find_files,
    remove_tree,
    write_file_atomically,
)
from services.mirrorsync.transport import run_rsync
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
    duration: float = 0.0         # from the sync's start to its publish (or failure)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)  # PhaseClock.times
    published_at: float | None = None  # time.time() of the publish's rename


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
        # mirror -> (its prepared clone, the metadata files in it), from the clone's walk
        self._clone_metadata: dict[str, tuple[str, list[str] | None]] = {}
        # mirror -> the index hashes of the check that let its published snapshot through
        self._index_hashes: dict[str, tuple[str, dict]] = {}
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
        clock = PhaseClock()
        m.LOCK_HELD.labels(name).set(1)
        m.IN_PROGRESS.labels(name).set(1)
        m.LAST_ATTEMPT.labels(name).set(started)
        snaps = Snapshots(self.root, mirror.path)
        work: list[Path] = []
        outcome = Outcome("failed")
        status: dict[str, str] = {}
        recorded = False  # a published sync is recorded at once, before its prune and clone
        try:
            with clock.phase("prepare"):
                status = await self.state.status(name)
                await self.state.update(name, {"state": "syncing",
                                               "last_attempt": f"{started:.3f}",
                                               "holder": lock.token, "next_attempt": ""})
            self.events.emit("mirror.started", mirror=name, source=mirror.source, why=why)
            async with LockKeeper(lock, self.cfg.lock_ttl / 4) as keeper:
                outcome = await self._sync(mirror, lock, keeper, snaps, status, work, started,
                                           clock)
                outcome.duration = time.time() - started
                outcome.phases = clock.times
                await self._record(mirror, outcome, status, started)
                recorded = True
                await self._after_publish(mirror, snaps, outcome, clock, keeper)
        except SyncFailed as exc:
            outcome = Outcome("failed", exc.reason, exc.detail)
        except asyncio.CancelledError:
            if not recorded:
                outcome = Outcome("failed", "io_error", "sync cancelled (service stopping, or "
                                  "the mirror was paused, changed or removed)")
            raise
        except OSError as exc:
            outcome = Outcome("failed", "disk_full" if exc.errno == 28 else "io_error",
                              f"{exc.filename or ''}: {exc.strerror or exc}")
        except InventoryUnavailable as exc:  # the lock cannot be confirmed: never publish
            outcome = Outcome("failed", "lock_lost", f"cannot confirm the lock: {exc}")
        finally:
            try:
                if not recorded:
                    outcome.duration = time.time() - started
                    outcome.phases = clock.times
                    for path in work:  # a partial or an unpublished snapshot
                        if path.exists():
                            await asyncio.to_thread(remove_tree, path)
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
                    started: float, clock: PhaseClock) -> Outcome:
        cfg = self.cfg
        name = mirror.name
        with clock.phase("prepare"):
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
                                 f"{needed} (mirrorsync.min_free_bytes + space_factor x the "
                                 "last sync's bytes)")
            published = snaps.published()
            # the clone of the published snapshot made after the last publish, else an empty
            # directory that rsync fills with hard links to the published snapshot itself
            base = snaps.prepared(published)
            cloned_as, clone_metadata = self._clone_metadata.pop(name, (None, None))
            if base is None or cloned_as != str(base):
                clone_metadata = None
            partial = snaps.new_partial(started, base=base)
            work.append(partial)
        argv = rsync_argv(mirror, str(partial), rsync=cfg.rsync,
                          link_dest=str(published.resolve()) if published and not base else None,
                          io_timeout=cfg.io_timeout, contimeout=cfg.contimeout)

        async def watch() -> str | None:
            if asyncio.current_task().cancelling():
                return "cancelled"
            if keeper.lost:
                return "lock_lost"
            if disk_space(self.root)[0] < cfg.min_free_bytes:
                return "disk_full"
            return None

        _end_if_cancelled(name, "before rsync", "rsync not started")
        with clock.phase("rsync"):
            # an Archive-Update-in-Progress-* file at the upstream's top (rsync copies the top's
            # files first, and always that one) stops the copy as soon as rsync lists it
            run = await run_rsync(argv, deadline=cfg.deadline, watch=watch,
                                  stall=cfg.io_timeout, stop_on=marker_in_output)
        if run.stopped and run.stopped.startswith(UPDATE_MARKER):
            raise SyncFailed("upstream_updating", f"{mirror.source} is being updated "
                             f"({run.stopped}); not copied, retried in mirrorsync.retry_delay")
        self._rsync_verdict(run, name)
        stats = parse_stats(run.stdout)
        items = None if run.truncated else itemized.parse(run.stdout)
        if base is not None and items and items.changed_in_place:
            log.warning("attributes_changed_in_place", mirror=name,
                        files=len(items.changed_in_place), first=items.changed_in_place[0],
                        note="rsync changed a kept file's attributes (not its contents): the "
                        "published snapshot shares that file; see mirrorsync ATTRIBUTES")
        with clock.phase("metadata"):
            stats = await self._metadata_pass(mirror, partial, items, stats, watch, started,
                                              published, clone_metadata)
        with clock.phase("check"):
            markers = updating_markers(p.name for p in partial.iterdir())
            if markers:
                raise SyncFailed("upstream_updating", f"the upstream started an update during "
                                 f"the sync ({markers[0]}); not published, retried later")
            # files shared with a snapshot this service checked are not hashed again; an
            # adopted directory (made by hand) was never checked
            checked_before = published if published and not published.name.startswith(
                ADOPTED_PREFIX) else None
            known = self._index_hashes.get(name)  # index hashes of the published one's check
            result = await asyncio.to_thread(
                check_snapshot, partial, check=mirror.check, published=checked_before,
                published_files=int(status.get("files") or 0) or None,
                max_shrink=cfg.max_shrink, excludes=mirror.exclude, keyring=mirror.keyring,
                counted=(stats.regular_files, stats.total_bytes),
                hashes=known[1] if known and known[0] == str(checked_before) else None)
            if not result.ok:
                raise SyncFailed("check_failed", f"{result.kind} check: {result.problem}")
            if keeper.lost:
                raise SyncFailed("lock_lost", "another replica took the lock (lease expired) "
                                 "during the check: nothing published")
        with clock.phase("publish"):
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
            _end_if_cancelled(name, "before the publish",
                              "not published; the snapshot is removed")
            snaps.publish(final)
            work.clear()
            self._index_hashes[name] = (str(final), result.hashes)
        return Outcome("published", snapshot=final.name, stats=stats, files=result.files,
                       size=result.size, published_at=time.time())

    async def _metadata_pass(self, mirror: Mirror, partial: Path, items: itemized.Itemized | None,
                             stats: Stats, watch, started: float, published: Path | None,
                             clone_metadata: list[str] | None) -> Stats:
        """Repository metadata the copy kept (rsync's quick check, size and mtime, took it for
        unchanged: the base's file or a hard link to the published one), copied again if its
        checksum differs. Which files those are: the metadata the clone had (listed when it was
        made) or, without that list, a walk of the snapshot, less what came over the wire
        (``items``; None when rsync's output was too long to keep: then every metadata file
        of the snapshot). Returns the two runs' figures together (``total_bytes`` with the new sizes)."""
        cfg = self.cfg
        if published is None:  # a first sync: everything came over the wire
            return stats
        if clone_metadata is not None and items is not None:
            candidates = set(clone_metadata) - items.deleted
            candidates.update(n for n in items.listed if is_metadata(n.rsplit("/", 1)[-1]))
        else:
            candidates = set(await asyncio.to_thread(find_files, partial, is_metadata))
        kept = sorted(candidates - (items.transferred if items is not None else set()))
        if not kept:
            return stats
        sizes = {}
        for rel in kept:
            try:
                sizes[rel] = (partial / rel).stat().st_size
            except FileNotFoundError:
                continue
        with tempfile.NamedTemporaryFile("wb", prefix=f"bootyard-{mirror.name}-",
                                         suffix=".metadata") as listing:
            listing.write(metadata_list(mirror, sorted(sizes)))
            listing.flush()
            meta = metadata_argv(mirror, str(partial), listing.name, rsync=cfg.rsync,
                                 io_timeout=cfg.io_timeout, contimeout=cfg.contimeout)
            remaining = max(cfg.deadline - (time.time() - started), 1.0)
            run = await run_rsync(meta, deadline=remaining, watch=watch, stall=cfg.io_timeout)
        self._rsync_verdict(run, mirror.name)
        total = stats.total_bytes
        for rel in itemized.parse(run.stdout).transferred:  # its new size in the total
            total += (partial / rel).stat().st_size - sizes.get(rel, 0)
        more = parse_stats(run.stdout)
        return dataclasses.replace(
            stats, files_transferred=stats.files_transferred + more.files_transferred,
            bytes_transferred=stats.bytes_transferred + more.bytes_transferred,
            bytes_received=stats.bytes_received + more.bytes_received, total_bytes=total)

    async def _after_publish(self, mirror: Mirror, snaps: Snapshots, outcome: Outcome,
                             clock: PhaseClock, keeper: LockKeeper) -> None:
        """Off the path to the publish, still under the lock: old snapshots beyond ``keep``
        removed, and the new published snapshot cloned as the next sync's base. A failure here
        is logged; the next sync then copies into an empty directory (``--link-dest``). With
        the lock lost (another replica may sync the mirror now) neither is done."""
        name = mirror.name
        keep = mirror.keep if mirror.keep is not None else self.cfg.keep
        if keeper.lost:
            log.warning("after_publish_skipped", mirror=name, reason="the lock was lost",
                        action="no prune, no clone: the next sync copies into an empty directory")
            return
        try:
            with clock.phase("prune"):
                pruned = await asyncio.to_thread(snaps.prune, keep)
            if pruned:
                log.info("snapshots_removed", mirror=name, snapshots=",".join(pruned), keep=keep)
            with clock.phase("clone"):
                clone, found = await asyncio.to_thread(
                    snaps.prepare_next, snaps.dir / outcome.snapshot, is_metadata)
            self._clone_metadata[name] = (str(clone), found)
        except OSError as exc:
            log.warning("after_publish_failed", mirror=name,
                        reason=f"{exc.filename or ''}: {exc.strerror or exc}",
                        action="the next sync copies into an empty directory instead of a clone")
        for phase in AFTER_PUBLISH:
            if phase in clock.times:
                m.PHASE_DURATION.labels(phase).observe(clock.times[phase])
        log.info("sync_after_publish", mirror=name, snapshot=outcome.snapshot,
                 phases=clock.text())

    def _rsync_verdict(self, run, name: str) -> None:
        """Raise SyncFailed (or CancelledError) unless the rsync run ended well."""
        cfg = self.cfg
        if run.stopped == "cancelled":
            _end_if_cancelled(name, "during rsync", "rsync stopped; the partial is removed")
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

    async def _record(self, mirror: Mirror, outcome: Outcome, status: dict[str, str],
                      started: float) -> None:
        name = mirror.name
        m.SYNCS.labels(outcome.result).inc()
        m.DURATION.labels(name).observe(outcome.duration)
        stats = outcome.stats
        phases = " ".join(f"{p}={outcome.phases[p]:.3f}" for p in BEFORE_PUBLISH
                          if p in outcome.phases)
        for phase in BEFORE_PUBLISH:
            if phase in outcome.phases:
                m.PHASE_DURATION.labels(phase).observe(outcome.phases[phase])
        fields: dict[str, object] = {"holder": "", "duration": f"{outcome.duration:.1f}",
                                     "phases": phases}
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
                             bytes=stats.bytes_transferred, duration=f"{outcome.duration:.1f}",
                             phases=phases)
            log.info("sync", mirror=name, result="published", snapshot=outcome.snapshot,
                     files=outcome.files, size=outcome.size,
                     files_transferred=stats.files_transferred,
                     bytes_transferred=stats.bytes_transferred,
                     duration_s=round(outcome.duration, 3), phases=phases)
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
                        duration_s=round(outcome.duration, 3), phases=phases,
                        next="retry after mirrorsync.retry_delay" if retry
                        else "at the next interval")
        try:
            await self.state.update(name, fields)
        except InventoryUnavailable as exc:
            log.error("status_not_written", mirror=name, reason=str(exc))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _end_if_cancelled(mirror: str, where: str, action: str) -> None:
    """End the sync if its task was asked to cancel and redis-py dropped the cancellation."""
    if asyncio.current_task().cancelling():
        log.warning("sync_cancelled", mirror=mirror, where=where, action=action,
                    reason="cancelled as a Redis command went out (the client dropped the "
                    "cancellation)")
        raise asyncio.CancelledError(f"cancelled {where}")

