"""Boot states on the command line: the STATE, STAGE, SINCE and REASON columns of
``bootyard host list`` and its ``--state`` filter (docs/console.md).

The states are computed here with the same function the HTTP service uses
(:func:`shared.bootstate.boot_state`), from the hosts' own event streams read in one pipelined
round trip (:meth:`shared.events.EventLog.read_hosts`): the CLI needs no running service.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from shared import bootstate
from shared.bootstate import BootState, Expected
from shared.events import EventLog
from shared.schema import KINDS
from shared.store import InventoryStore
from shared.validation import parse_record

COLUMNS = ("state", "stage", "since", "reason")


async def host_states(client, store: InventoryStore, hosts: Mapping[str, Mapping[str, str]],
                      now: float, expected: Expected | None = None) -> dict[str, BootState]:
    """The boot state of each host in ``hosts`` (MAC -> its raw hash, as listed)."""
    profiles = {}
    for name, raw in (await store.raw_all(KINDS["profile"])).items():
        profiles[name] = parse_record(KINDS["profile"], name, raw)[0]
    found = await EventLog(client, "cli").read_hosts(hosts, count=200)
    states = {}
    for mac, raw in hosts.items():
        host = parse_record(KINDS["host"], mac, raw)[0]
        profile = profiles.get(host.profile) if host is not None and host.profile else None
        states[mac] = bootstate.boot_state(mac, found.get(mac, []), now, expected, host,
                                           profile)
    return states


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def cells(state: BootState, now: float | None = None) -> tuple[str, ...]:
    """The STATE, STAGE, SINCE and REASON cells of one host."""
    now = time.time() if now is None else now
    since = ago(now - state.since) if state.since is not None else ""
    return (state.state, state.stage, since, state.reason)


async def attempt_labels(store: InventoryStore, mac: str, events,
                         expected: Expected | None = None) -> dict[str, str | None]:
    """The boot attempt of each of one host's ``events``, by event id."""
    raw = await store.raw(KINDS["host"], mac)
    host = parse_record(KINDS["host"], mac, raw)[0] if raw else None
    profile = None
    if host is not None and host.profile:
        raw = await store.raw(KINDS["profile"], host.profile)
        profile = parse_record(KINDS["profile"], host.profile, raw)[0] if raw else None
    return {e.id: attempt for e, attempt in bootstate.attempt_of_each(
        mac, events, expected, host, profile)}


async def print_attempts(client, store: InventoryStore, mac: str, raw: Mapping[str, str], out,
                         now: float | None = None, expected: Expected | None = None) -> None:
    """``bootyard host show``'s boot state and every boot attempt in the host's stream."""
    now = time.time() if now is None else now
    state = (await host_states(client, store, {mac: raw}, now, expected))[mac]
    print(f"boot state: {state.state}" + (f", {state.stage_text} since "
                                          f"{ago(now - state.since)}" if state.stage else "")
          + (f": {state.reason}" if state.reason else ""), file=out)
    for attempt in state.attempts:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(attempt.start))
        print(f"  attempt {attempt.number} {attempt.id}  {started}  {attempt.state:<11} "
              f"{attempt.stage:<9} {attempt.reason}".rstrip(), file=out)
