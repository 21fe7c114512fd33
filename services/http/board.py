"""Every inventory host's boot state, kept current in the HTTP service (docs/console.md).

Why here: the boot state is computed from the event streams, and the HTTP service is the one
that already reads them continuously (the admin API's live stream) and answers operators (the
admin API, the console). One process computes it, the one serving the admin API (the only one,
or worker 0): it loads each host's recent events once (one pipelined read), then follows the
global stream; the metrics ``bootyard_boot_hosts`` and ``bootyard_boot_stuck_hosts`` are set
from it every :data:`REFRESH` seconds, and ``GET /api/v1/states`` reads it without touching
Redis (``GET /api/v1/hosts/<mac>/state`` reads that host's stream first: one read, current to the
event a client has just seen).

A host's state is recomputed only when it has new events, or while it is progressing (time
alone can make it stuck): finished, stuck and idle hosts stay so until their next event. The
metrics' refresh recomputes a progressing host without new events only once its stage's time
(``bootstate`` settings) has run out, the one way time alone changes its state: a rack booting at
once is a thousand progressing hosts, each with a new event every second or so. The API's answers
recompute every progressing host (its current stage's time runs until now).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from services.http import metrics as m
from shared import bootstate, logs
from shared.addresses import normalise_mac
from shared.bootstate import BootState, Expected
from shared.events import Event, EventLog
from shared.store import InventoryUnavailable, NotFound

log = logs.get_logger("http.board")
PER_HOST = 200  # events kept per host (a boot is a few dozen)
REFRESH = 5.0  # seconds between metric updates


class Board:
    def __init__(self, events: EventLog, inventory, expected: Expected | None = None, *,
                 clock: Callable[[], float] = time.time,
                 on_event: Callable[[Event], None] | None = None) -> None:
        """``on_event``: also handed every event followed from the global stream (the file
        events' lease holders, services/http/fileevents.py)."""
        self._log = events
        self._on_event = on_event
        self._inventory = inventory
        self.expected = expected or Expected()
        self._clock = clock
        self._events: dict[str, collections.deque[Event]] = {}
        self._states: dict[str, BootState] = {}
        self._dirty: set[str] = set()
        self.loaded = asyncio.Event()

    # -- reading the streams -------------------------------------------------------------------
    async def load(self) -> str:
        """Every host's recent events; returns the global stream id to follow on from."""
        cursor = (await self._log.history(None, count=1)).cursor
        macs = [h.mac for h in self._inventory.hosts()]
        found = await self._log.read_hosts(macs, count=PER_HOST)
        self._events = {mac: collections.deque(evs, maxlen=PER_HOST)
                        for mac, evs in found.items()}
        self._states.clear()
        self._dirty = set(self._events)
        self.loaded.set()
        return cursor

    def add(self, event: Event) -> None:
        """One new event (from the global stream): kept if its MAC is an inventory host."""
        mac = event.mac
        if mac is None or self._inventory.host(mac) is None:
            return
        kept = self._events.get(mac)
        if kept is None:
            kept = self._events[mac] = collections.deque(maxlen=PER_HOST)
        # an event read by load() from the host's stream and again from the global stream
        key = (event.ts, event.kind, event.fields)
        if any((e.ts, e.kind, e.fields) == key for e in itertools.islice(reversed(kept), 20)):
            return
        kept.append(event)
        self._dirty.add(mac)

    async def run(self, stop: asyncio.Event) -> None:
        """Load, follow and refresh until ``stop``; Redis down: retried every few seconds."""
        refresher = asyncio.ensure_future(self._refresh_loop(stop))
        try:
            while not stop.is_set():
                try:
                    cursor = await self.load()
                    follower = asyncio.ensure_future(self._follow(cursor))
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({follower, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    follower.cancel()
                    stopper.cancel()
                    if follower.done() and not follower.cancelled():
                        follower.result()  # raises what ended it
                except InventoryUnavailable as exc:
                    log.warning("boot_states_not_read", reason=str(exc),
                                action="retrying in 5 s")
                    try:
                        await asyncio.wait_for(stop.wait(), 5.0)
                    except TimeoutError:
                        pass
        finally:
            refresher.cancel()

    async def _follow(self, cursor: str) -> None:
        async for event in self._log.follow(None, last_id=cursor):
            if self._on_event is not None:
                self._on_event(event)
            self.add(event)

    async def _refresh_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.loaded.is_set():
                try:
                    self.refresh(every_progressing=False)
                except InventoryUnavailable:
                    pass  # the inventory is not loaded (Redis down): the next turn
                except Exception:  # noqa: BLE001 - a bug here must not end the service
                    log.exception("boot_states_failed")
            try:
                await asyncio.wait_for(stop.wait(), REFRESH)
            except TimeoutError:
                pass

    # -- states --------------------------------------------------------------------------------
    def _compute(self, mac: str, now: float) -> BootState:
        host = self._inventory.host(mac)
        profile = self._inventory.profile(host.profile) if host and host.profile else None
        return bootstate.boot_state(mac, list(self._events.get(mac, ())), now, self.expected,
                                    host, profile)

    def _out_of_time(self, state: BootState, now: float) -> bool:
        """Whether a progressing host may be stuck by now (stuck_at's time test in
        shared/bootstate.py: longer at its stage than the stage's expected seconds)."""
        limit = self.expected.of(state.stage)
        return state.since is None or (limit is not None and now - state.since > limit)

    def state(self, mac: str, now: float | None = None) -> BootState:
        now = self._clock() if now is None else now
        state = self._compute(mac, now)
        self._states[mac] = state
        self._dirty.discard(mac)
        return state

    async def fresh_state(self, mac: str) -> BootState:
        """The host's state from its stream read now (one Redis read): what a client asks for
        right after an event may not have reached this board's follower yet."""
        found = (await self._log.read_hosts([mac], count=PER_HOST)).get(mac, [])
        self._events[mac] = collections.deque(found, maxlen=PER_HOST)
        return self.state(mac)

    def attempt_ids(self, mac: str, events) -> dict[str, str | None]:
        """The boot attempt of each of ``events`` (one host's, by their ids)."""
        host = self._inventory.host(mac)
        profile = self._inventory.profile(host.profile) if host and host.profile else None
        return {e.id: attempt for e, attempt in bootstate.attempt_of_each(
            mac, events, self.expected, host, profile)}

    def refresh(self, now: float | None = None, *,
                every_progressing: bool = True) -> dict[str, BootState]:
        """Every inventory host's state (recomputed where it may have changed), and the
        metrics set from them. ``every_progressing=False``: a progressing host with no new
        events only once its stage's time has run out (its state, stage and reason are the
        same until then; only its stage's duration grows)."""
        now = self._clock() if now is None else now
        macs = [h.mac for h in self._inventory.hosts()]
        for gone in set(self._events) - set(macs):
            self._events.pop(gone, None)
            self._states.pop(gone, None)
        for mac in macs:
            old = self._states.get(mac)
            if old is None or mac in self._dirty or old.state == "progressing" and (
                    every_progressing or self._out_of_time(old, now)):
                self._states[mac] = self._compute(mac, now)
        self._dirty.clear()
        states = {mac: self._states[mac] for mac in macs}
        set_metrics(states.values())
        return states


def set_metrics(states) -> None:
    hosts = collections.Counter((s.state, s.stage or "none") for s in states)
    stuck = collections.Counter(s.reason_code for s in states if s.state == "stuck")
    for state in bootstate.STATES:
        for stage in m.BOOT_STAGES:
            m.BOOT_HOSTS.labels(state, stage).set(hosts.get((state, stage), 0))
    for reason in bootstate.REASONS:
        m.BOOT_STUCK.labels(reason).set(stuck.get(reason, 0))


# -- the admin API's routes (mounted by services/http/adminapi.py) -----------------------------
def _json(data: Any) -> web.Response:
    import json
    return web.json_response(data, dumps=lambda d: json.dumps(d, indent=2) + "\n")


def add_routes(router: web.UrlDispatcher, prefix: str, board: Board) -> None:
    async def host_state(request: web.Request) -> web.Response:
        mac = normalise_mac(request.match_info["id"])
        if board._inventory.host(mac) is None:
            raise NotFound(f"no host {mac} in the inventory")
        return _json((await board.fresh_state(mac)).as_dict())

    async def states(request: web.Request) -> web.Response:
        wanted = request.query.get("state")
        if wanted and wanted not in bootstate.STATES:
            raise web.HTTPBadRequest(
                text=f'{{"error": "state must be one of {", ".join(bootstate.STATES)}"}}\n',
                content_type="application/json")
        found = board.refresh()
        return _json({mac: s.as_dict() for mac, s in sorted(found.items())
                      if not wanted or s.state == wanted})

    router.add_get(f"{prefix}/hosts/{{id}}/state", host_state)
    router.add_get(f"{prefix}/states", states)
