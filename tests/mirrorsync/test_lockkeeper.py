"""The lock keeper ends whenever it is stopped, and a lock lost at any phase of a sync ends that
sync cleanly: nothing published, no partial snapshot left, the failure recorded, the lock free.

The keeper's renewals are real Redis commands. On Python 3.11 ``asyncio.wait_for`` (which
redis-py wraps around every command it sends) returns the command's result and drops a
``cancel()`` that arrives between the command's completion and the waiting task's wake-up, so a
keeper stopped only by ``cancel()`` kept renewing for ever in that window and the sync awaiting
it never ended (a sync with a 0.3 s lease, renewed every 75 ms, hung once in about 30 runs under
load). The first test stops a keeper at each of the first loop steps after its start and after
each of its first renewals, the window included. The same drop can hit a sync's own task (a
mirror paused, or the service stopping, just as the sync sends a command): the last test drops a
cancellation that way, deterministically, and the sync must still publish nothing."""

from __future__ import annotations

import asyncio
import os

import pytest
from test_sync import Kit, mirror_record

from services.mirrorsync import server
from services.mirrorsync.lockkeeper import LockKeeper
from services.mirrorsync.phases import BEFORE_PUBLISH, PhaseClock
from services.mirrorsync.snapshots import Snapshots
from shared import keys
from shared.mirrors import MirrorLock
from shared.store import connect

STEPS = 60  # loop steps after a renewal at which a keeper is stopped: more than one renewal takes
ENDS_WITHIN = 30.0  # seconds a stopped keeper may take (one renewal: bounded by Redis timeouts)


async def renewed(keeper: LockKeeper, times: int) -> None:
    """Wait (loop step by loop step, at most ENDS_WITHIN s) until ``keeper`` renewed ``times``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + ENDS_WITHIN
    while keeper.renewals < times:
        assert loop.time() < end, f"the keeper renewed {keeper.renewals} times, not {times}"
        await asyncio.sleep(0)


async def test_a_keeper_stopped_at_any_step_of_its_renewals_ends(redis_url):
    client = connect(redis_url)
    lock = MirrorLock(client, "keeper", 10_000)
    try:
        assert await lock.acquire()
        for renewals in range(3):  # during its first renewal, its second, its third
            for steps in range(STEPS):
                keeper = LockKeeper(lock, every=0.0)  # renews as fast as Redis answers
                await keeper.__aenter__()
                await renewed(keeper, renewals)
                for _ in range(steps):
                    await asyncio.sleep(0)
                exiting = asyncio.ensure_future(keeper.__aexit__(None, None, None))
                done, _ = await asyncio.wait({exiting}, timeout=ENDS_WITHIN)
                if not done:
                    keeper.lost = True  # lets the loop of a keeper that ignored its stop end
                    await asyncio.wait({exiting}, timeout=ENDS_WITHIN)
                assert done, (f"a keeper stopped {steps} loop steps after its renewal "
                              f"{renewals} still renews")
                exiting.result()
                assert not keeper.lost
        assert await lock.holder() == lock.token
    finally:
        await lock.release()
        await client.aclose()


class LosingClock(PhaseClock):
    """A sync's phase clock that hands the mirror's lock to another replica (a real SET in
    Redis, as a replica does once a lease ran out) as the phase ``lose_at`` begins."""

    lose_at = ""
    redis_url = ""

    @classmethod
    def losing(cls, phase: str, redis_url: str) -> type[LosingClock]:
        return type(f"Losing{phase}", (cls,), {"lose_at": phase, "redis_url": redis_url})

    def phase(self, name: str):
        if name == self.lose_at:
            import redis
            client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            client.set(keys.mirror_lock("images"), "another-replica", px=60_000)
            client.close()
        return super().phase(name)


def images_mirror(redis_url, daemon, tmp_path):
    """An upstream tree with one file, served by the rsync daemon, and the kit syncing it
    into tmp_path/mirror: (the tree, the kit, the mirror's record)."""
    (tmp_path / "mirror").mkdir()
    tree = tmp_path / "upstream" / "images"
    tree.mkdir(parents=True)
    (tree / "one.img").write_bytes(os.urandom(4096))
    return tree, Kit(redis_url, tmp_path / "mirror"), mirror_record("images",
                                                                    daemon.url + "images/")


@pytest.mark.parametrize("phase", BEFORE_PUBLISH)
async def test_a_lock_lost_at_any_phase_publishes_nothing_and_ends(redis_url, daemon, tmp_path,
                                                                  monkeypatch, phase):
    tree, kit, mirror = images_mirror(redis_url, daemon, tmp_path)
    (tree / "two.txt").write_text("two\n")
    try:
        first = await asyncio.wait_for(kit.sync_one(mirror), 120)
        assert first.result == "published", first
        (tree / "three.txt").write_text("three\n")
        monkeypatch.setattr(server, "PhaseClock", LosingClock.losing(phase, redis_url))
        done, _ = await asyncio.wait({asyncio.ensure_future(kit.sync_one(mirror))}, timeout=120)
        assert done, f"a sync whose lock was lost at its {phase} phase did not end"
        outcome = done.pop().result()
        assert (outcome.result, outcome.reason) == ("failed", "lock_lost"), outcome
        snaps = Snapshots(tmp_path / "mirror", "images")
        assert snaps.published().name == first.snapshot
        assert not (snaps.published() / "three.txt").exists()
        assert snaps.partials() == []
        assert [p.name for p in snaps.snapshots()] == [first.snapshot]
        status = await kit.state.status("images")
        assert (status["state"], status["last_result"]) == ("failed", "lock_lost"), status
        # the other replica's lock is left as it is
        assert await kit.client.get(keys.mirror_lock("images")) == "another-replica"
    finally:
        await kit.close()


class CancelDropper:
    """What Python 3.11's ``asyncio.wait_for`` (around every redis-py command) does when a
    ``cancel()`` arrives just as a command's reply is in: it returns the reply and drops the
    cancellation (the task's ``cancelling()`` stays 1). Armed by :class:`CancellingClock` in a
    sync's task, it does that, once, to the next command that task sends (a real one)."""

    def __init__(self, client) -> None:
        self.send = client.execute_command
        self.task: asyncio.Task | None = None
        self.dropped = 0
        client.execute_command = self.execute_command

    async def execute_command(self, *args, **options):
        reply = await self.send(*args, **options)
        task = self.task
        if task is not None and task is asyncio.current_task():
            self.task = None
            task.cancel()  # the scheduler: the mirror was paused, or the service is stopping
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                self.dropped += 1  # ... and wait_for returns the reply instead
        return reply


class CancellingClock(PhaseClock):
    """Arms the test's :class:`CancelDropper` in the sync's task as the phase ``cancel_at``
    first begins."""

    cancel_at = ""
    dropper: CancelDropper | None = None

    def phase(self, name: str):
        dropper = type(self).dropper
        if name == self.cancel_at and dropper is not None:
            type(self).dropper = None
            dropper.task = asyncio.current_task()
        return super().phase(name)


@pytest.mark.parametrize("phase", ["prepare", "publish"])
async def test_a_sync_cancelled_as_a_redis_command_goes_out_never_publishes(
        redis_url, daemon, tmp_path, monkeypatch, phase):
    tree, kit, mirror = images_mirror(redis_url, daemon, tmp_path)
    try:
        first = await asyncio.wait_for(kit.sync_one(mirror), 120)
        assert first.result == "published", first
        (tree / "three.txt").write_text("three\n")
        dropper = CancelDropper(kit.client)
        clock = type(f"Cancelling{phase}", (CancellingClock,),
                     {"cancel_at": phase, "dropper": dropper})
        monkeypatch.setattr(server, "PhaseClock", clock)
        runs = rsync_runs(monkeypatch)
        sync = asyncio.ensure_future(kit.sync.sync_one(mirror))
        done, _ = await asyncio.wait({sync}, timeout=120)
        assert done, f"a sync cancelled at its {phase} phase did not end"
        assert dropper.dropped == 1, "the cancellation was not dropped as 3.11's wait_for does"
        assert sync.cancelled(), f"a cancelled sync ended as {sync.result()}"
        assert not (Snapshots(tmp_path / "mirror", "images").published() / "three.txt").exists()
        if phase == "prepare":
            assert runs == []  # rsync never started (it ran to its end before)
        await published_nothing_new(kit, tmp_path, first)
    finally:
        await kit.close()


def rsync_runs(monkeypatch, drop_cancel: bool = False, poll: float | None = None) -> list:
    """Record each rsync run of the syncs (its ``stopped``); ``drop_cancel``: the first run
    starts with a cancellation of the sync's task dropped as 3.11's ``wait_for`` drops it."""
    runs = []
    real = server.run_rsync

    async def run_rsync(argv, **options):
        if drop_cancel and not runs:
            asyncio.current_task().cancel()
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass  # dropped: cancelling() stays 1
        if poll is not None:
            options["poll"] = poll
        run = await real(argv, **options)
        runs.append(run.stopped)
        return run

    monkeypatch.setattr(server, "run_rsync", run_rsync)
    return runs


async def test_a_cancellation_dropped_while_rsync_runs_stops_rsync(redis_url, daemon, tmp_path,
                                                                   monkeypatch):
    """rsync is stopped at its next watch, not run to its end (a large copy)."""
    tree, kit, mirror = images_mirror(redis_url, daemon, tmp_path)
    try:
        first = await asyncio.wait_for(kit.sync_one(mirror), 120)
        assert first.result == "published", first
        for i in range(16):  # 64 MiB: copied in far more than one watch interval (10 ms)
            (tree / f"big{i}.img").write_bytes(os.urandom(4 << 20))
        runs = rsync_runs(monkeypatch, drop_cancel=True, poll=0.01)
        sync = asyncio.ensure_future(kit.sync.sync_one(mirror))
        done, _ = await asyncio.wait({sync}, timeout=120)
        assert done, "a sync cancelled while rsync ran did not end"
        assert sync.cancelled(), f"a cancelled sync ended as {sync.result()}"
        assert runs == ["cancelled"], runs  # stopped, and no metadata pass after it
        await published_nothing_new(kit, tmp_path, first)
    finally:
        await kit.close()


async def published_nothing_new(kit, tmp_path, first) -> None:
    """The first snapshot is still the published one, the only one, nothing partial left, the
    sync recorded as cancelled and its lock released."""
    snaps = Snapshots(tmp_path / "mirror", "images")
    assert snaps.published().name == first.snapshot
    assert snaps.partials() == []
    assert [p.name for p in snaps.snapshots()] == [first.snapshot]
    status = await kit.state.status("images")
    assert status["state"] == "failed" and "cancelled" in status["last_error"], status
    assert await kit.client.get(keys.mirror_lock("images")) is None  # released

