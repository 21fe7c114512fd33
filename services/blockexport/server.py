"""Wiring of the AoE target: inventory exports -> served targets; frames -> policy -> storage ->
replies.

- The exports are the inventory's ``kind: aoe`` records (:class:`shared.cache.InventoryCache`),
  followed live: a change re-opens what changed, within a second, with no restart. A backing
  store that cannot be opened, or a shelf.slot another export already has, is logged with the
  export's key, field, value and reason; the export keeps being served as it was (if it was) or
  is not served (``bootyard_blockexport_export_up`` 0). The config string, mask list and reserve
  list of a shelf.slot survive a change of its record.
- A read the page cache holds is answered as its frame is read (:mod:`aoe_direct`); an ordinary
  write joins its export's queue without the full decode (:mod:`aoe_writes`). Every other frame
  is decoded and handed to :func:`policy.decide` for every export it addresses; a reply is sent
  at once, an I/O step joins its export's queue. One I/O thread per export takes what is queued
  in batches (:mod:`aoe_batch`): reads, then each host's writes in one ``Disk.write`` (one sync
  per host per batch: durable before answered), then flushes; each reply is sent as soon as
  what it answers is done (the socket is shared; sending needs no hop back to the event loop).
  Storage I/O that may wait never runs on the event loop; the thread hands events to the loop
  (``call_soon_threadsafe``).
- Events (``blockexport.*``, per host, never per I/O): ``attach`` when an initiator is first seen
  (again after ``attach_timeout`` of silence), ``first_read`` after its first read,
  ``io_error`` when its I/O starts failing and ``io_recovered`` when it works again.
- A per-frame fault is a counter, a debug line and ``continue``; the target never dies on input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import queue
import struct
import threading
import time
from collections.abc import Sequence

from services.blockexport import codec, export_status, metrics as m, policy
from services.blockexport.aoe_batch import run_batch
from services.blockexport.aoe_direct import DirectReads
from services.blockexport.aoe_writes import DirectWrites
from services.blockexport.codec import (
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    Command,
    DecodeError,
    Error,
    Flag,
    Frame,
    Header,
)
from services.blockexport.follow import FollowsExports
from services.blockexport.ioqueue import batches
from services.blockexport.policy import Drop, Flush, Read, Reply, State, Target, Write
from services.blockexport.settings import BlockexportSection
from services.blockexport.storage import Disk, PlainDisk, StorageError
from services.blockexport.storage_cow import CowDisk
from services.blockexport.transport import Received, Transport
from shared import boottarget, keys, logs
from shared.attachments import Attachments, ExportStatus, TargetStates
from shared.metrics import observe_all
from shared.records import Export
from shared.store import InventoryUnavailable

log = logs.get_logger("blockexport")
FORGET = object()  # a target state to remove from Redis (its export was removed)

ERROR_OF_CODE = {Error.BAD_ARGUMENT: "bad_argument", Error.TARGET_RESERVED: "reserved",
                 Error.UNSUPPORTED_VERSION: "version", Error.UNRECOGNIZED_COMMAND:
                 "unknown_command", Error.CONFIG_STRING_PRESENT: "config_present"}
ERROR_OF_KIND = {"past_end": "past_end", "unsupported": "unsupported", "read_only": "read_only",
                 "mask_error": "mask"}
ERROR_FLAG = int(Flag.ERROR)
ADDRESS = struct.Struct("!HB")  # AoE major (shelf) and minor (slot)
ADDRESS_AT = 16  # after the Ethernet header, version/flags and error
ADDRESS_END = ADDRESS_AT + ADDRESS.size
OP_OF_KIND = {"read": "read", "write": "write", "flush": "flush", "identify": "identify",
              "config": "config"}


def open_disk(export: Export, section: BlockexportSection,
              cleanup: bool = True) -> PlainDisk | CowDisk:
    if export.cow:
        return CowDisk(export.backing, section.overlay_root, export.name,
                       block=section.overlay_block, readonly=export.readonly, cleanup=cleanup)
    return PlainDisk(export.backing, readonly=export.readonly)


@dataclasses.dataclass(slots=True)
class Pending:
    outcome: Read | Write | Flush
    received: float
    src: bytes
    wire: tuple | None = None  # (tag, aflags, count, lba bytes): taken by aoe_writes, no Frame


@dataclasses.dataclass
class Served:
    record: Export
    target: Target
    disk: PlainDisk | CowDisk
    state: State = dataclasses.field(default_factory=State)
    inbox: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)
    seen: dict[bytes, float] = dataclasses.field(default_factory=dict)
    read_by: set[bytes] = dataclasses.field(default_factory=set)
    published: dict[bytes, float] = dataclasses.field(default_factory=dict)
    failing: set[bytes] = dataclasses.field(default_factory=set)
    retired: bool = False
    thread: threading.Thread | None = None
    queued: int = 0  # I/O steps handed to the thread (written by the event loop only)
    completed: int = 0  # ... and finished by it (written by the I/O thread only)
    counters: dict = dataclasses.field(default_factory=dict)  # metric children of this export
    views: dict[bytes, Disk] = dataclasses.field(default_factory=dict)  # cow: each host's

    def __post_init__(self) -> None:
        name = self.record.name
        self.counters = {op: m.OPERATIONS.labels(name, op) for op in m.OPS}
        self.counters["bytes_read"] = m.BYTES.labels(name, "read")
        self.counters["bytes_written"] = m.BYTES.labels(name, "write")

    def view(self, mac: bytes) -> Disk:
        if isinstance(self.disk, CowDisk):
            return self.views.get(mac) or self.views.setdefault(
                mac, self.disk.view(codec.format_mac(mac)))
        return self.disk

    @property
    def key(self) -> str:
        return keys.object_key("export", self.record.name)


def disk_changed(old: Export, new: Export) -> bool:
    return (old.backing, old.cow, old.readonly) != (new.backing, new.cow, new.readonly)


class BlockexportServer(FollowsExports):
    def __init__(self, section: BlockexportSection, cache, events, transport: Transport,
                 attachments: Attachments | None = None,
                 states: TargetStates | None = None) -> None:
        self.section = section
        transport.handler = self.handle
        self.direct = DirectReads(self)
        self.writes = DirectWrites(self)
        transport.drained = self.direct.drained
        self.attachments = attachments
        self.states = states
        self.status = ExportStatus(attachments.client) if attachments is not None else None
        self._publishing: set[asyncio.Task] = set()
        self._unsaved: dict[str, object] = {}  # export -> newest State (or FORGET) to write
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cache = cache
        self.events = events
        self.transport = transport
        self.served: dict[str, Served] = {}
        self.by_address: dict[tuple[int, int], Served] = {}
        transport.fast = self._fast_path()  # holds by_address (changed in place, never rebound)
        self._reported: dict[str, str] = {}
        self._reconciled = 0  # reconcile rounds done (tests wait on it)
        self._watch_exports(cache)

    # -- exports from the inventory --------------------------------------------------------
    async def reconcile(self) -> None:
        wanted = {e.name: e for e in self.cache.all("export") if e.kind == "aoe"}
        for name in list(self.served):
            if name not in wanted:
                self._withdraw(self.served[name], "removed from the inventory")
                self._state_changed(name, FORGET)
        for name in sorted(wanted):
            await self._serve(wanted[name])
        self._reconciled += 1

    def _report(self, export: Export, field: str, value: str, reason: str, kept: bool) -> None:
        key = keys.object_key("export", export.name)
        m.EXPORT_UP.labels(export.name).set(1 if kept else 0)
        if self._reported.get(export.name) == reason:
            return
        self._reported[export.name] = reason
        log.warning("export_not_served", key=key, field=field, value=value, reason=reason,
                    action="serving its last good version" if kept else "not served")

    async def _serve(self, export: Export) -> None:
        current = self.served.get(export.name)
        if current is not None and current.record == export:
            return
        contract = boottarget.target(export, portal="")  # the address hosts are told (one home)
        address = (contract.shelf, contract.slot)
        holder = self.by_address.get(address)
        if holder is not None and holder.record.name != export.name:
            self._report(export, "aoe_shelf", f"{address[0]}.{address[1]}",
                         f"shelf.slot {address[0]}.{address[1]} is already served for export "
                         f"{holder.record.name!r}", kept=current is not None)
            return
        interface = self.transport.interface
        target = Target(name=export.name, shelf=address[0], slot=address[1], sectors=0,
                        mac=interface.mac, max_sectors=codec.sectors_per_frame(interface.mtu),
                        buffer_count=self.section.buffer_count, readonly=export.readonly)
        if current is not None and not disk_changed(current.record, export):
            served = current  # same disk: the record and target change in place
            old = (current.target.shelf, current.target.slot)
            if old != address:
                self.by_address.pop(old, None)
                served.state = State()
            served.record = export
            served.target = dataclasses.replace(target, sectors=current.target.sectors)
        else:
            try:  # opened first: if it cannot be, the current version goes on being served
                disk = await asyncio.to_thread(open_disk, export, self.section,
                                               current is None)
            except (StorageError, OSError) as exc:
                self._report(export, "backing", export.backing, str(exc),
                             kept=current is not None)
                return
            served = Served(record=export, target=dataclasses.replace(
                target, sectors=disk.size // codec.SECTOR), disk=disk)
            if current is not None and (current.target.shelf, current.target.slot) == address:
                served.state = current.state
            else:
                served.state = await self._load_state(export.name)
            if current is not None:
                self._withdraw(current, "record changed")
                # The old version's queued I/O finishes (its overlays are closed) before the
                # new one touches the same overlay files; frames meanwhile find no export and
                # the initiator retransmits.
                if current.thread is not None:
                    await asyncio.to_thread(current.thread.join, 30)
                if isinstance(disk, CowDisk):
                    await asyncio.to_thread(disk.cleanup)
            self._start_io(served)
        self.served[export.name] = served
        self.by_address[address] = served
        self._reported.pop(export.name, None)
        m.EXPORT_UP.labels(export.name).set(1)
        m.preinit_export(export.name)
        log.info("export_served", export=export.name, shelf=address[0], slot=address[1],
                 backing=export.backing, cow=export.cow, readonly=export.readonly,
                 sectors=served.target.sectors, sectors_per_frame=target.max_sectors,
                 mtu=interface.mtu, change="changed" if current else "added")
        self._announce(served)

    def _withdraw(self, served: Served, why: str) -> None:
        address = (served.target.shelf, served.target.slot)
        if self.by_address.get(address) is served:
            del self.by_address[address]
        if self.served.get(served.record.name) is served:
            del self.served[served.record.name]
            m.EXPORT_UP.labels(served.record.name).set(0)
        log.info("export_withdrawn", export=served.record.name, reason=why)
        served.retired = True
        served.inbox.put(None)  # its thread finishes the queue, then closes the disk

    def _announce(self, served: Served) -> None:
        """An unsolicited Query Config reply to broadcast: loaded initiators see the export."""
        header = Header(dst=BROADCAST_MAC, src=served.target.mac, major=BROADCAST_SHELF,
                        minor=BROADCAST_SLOT, command=Command.QUERY_CONFIG, tag=0)
        reply = policy.query_config(served.target, served.state, Frame(header, codec.Config()),
                                    codec.Config())[1]
        self.transport.send(codec.encode(reply.frame))

    # -- frames ----------------------------------------------------------------------------
    def handle(self, received: Received) -> None:
        try:
            frame = codec.decode(received.data)
        except DecodeError as exc:
            m.ERRORS_BY["malformed"].inc()
            log.debug("frame_malformed", reason=str(exc), length=len(received.data))
            return
        h = frame.header
        if h.is_response:
            m.DROPPED_BY["response"].inc()
            return
        if h.major == BROADCAST_SHELF or h.minor == BROADCAST_SLOT:
            targets = [s for s in self.by_address.values()
                       if h.major in (s.target.shelf, BROADCAST_SHELF)
                       and h.minor in (s.target.slot, BROADCAST_SLOT)]
        else:
            one = self.by_address.get((h.major, h.minor))
            targets = [one] if one is not None else []
        if not targets:
            m.DROPPED_BY["no_export"].inc()
            return
        for served in targets:
            self._decide(served, frame, received)

    def _fast_path(self):
        """What the transport tries first with each frame (True: done): a frame for a
        shelf.slot none of our exports has (another target's traffic on the segment, as much
        as ours where several serve it) is dropped on its address alone, without the full
        decode; then a read the page cache holds is answered, a write queued."""
        by_address, serve, take = self.by_address, self.direct.serve, self.writes.take
        address_of, foreign = ADDRESS.unpack_from, m.DROPPED_BY["no_export"]

        def fast(data: bytes, received: float) -> bool:
            if len(data) >= ADDRESS_END:
                address = address_of(data, ADDRESS_AT)
                if (address not in by_address and address[0] != BROADCAST_SHELF
                        and address[1] != BROADCAST_SLOT):
                    foreign.inc()
                    return True
            return serve(data, received) or take(data, received)
        return fast

    def _decide(self, served: Served, frame: Frame, received: Received) -> None:
        before = served.state
        served.state, outcome = policy.decide(served.target, before, frame)
        if served.state is not before and served.state != before:
            self._state_changed(served.record.name, served.state)
        if isinstance(outcome, Drop):
            m.DROPPED_BY[outcome.reason].inc()
            return
        self._touch(served, frame.header.src)
        if isinstance(outcome, Reply):
            self._count_reply(served, outcome)
            self.transport.send(codec.encode(outcome.frame))
            return
        self.queue_io(served, outcome, received.received, frame.header.src)

    def queue_io(self, served: Served, outcome: Read | Write | Flush, received: float,
                 src: bytes, wire: tuple | None = None) -> None:
        """Hand an I/O step to its export's thread (dropped and counted when it is far behind:
        the initiator retransmits)."""
        if served.inbox.qsize() >= self.section.queue_size:
            m.DROPPED_BY["queue_full"].inc()
            return
        served.queued += 1
        served.inbox.put(Pending(outcome, received, src, wire))

    def _count_reply(self, served: Served, reply: Reply) -> None:
        h = reply.frame.header
        if h.flags & ERROR_FLAG:
            m.ERRORS_BY[ERROR_OF_CODE.get(h.error, "bad_argument")].inc()
            return
        reason = ERROR_OF_KIND.get(reply.kind)
        if reason:
            m.ERRORS_BY[reason].inc()
            return
        served.counters[OP_OF_KIND.get(reply.kind, "other")].inc()

    def _touch(self, served: Served, mac: bytes) -> None:
        now = time.monotonic()
        last = served.seen.get(mac)
        served.seen[mac] = now
        if now - served.published.get(mac, -1e18) > self.section.attach_timeout / 4:
            served.published[mac] = now
            self._publish(served.record.name, codec.format_mac(mac))
        if last is None or now - last > self.section.attach_timeout:
            served.read_by.discard(mac)
            text = codec.format_mac(mac)
            log.info("attach", export=served.record.name, mac=text, shelf=served.target.shelf,
                     slot=served.target.slot)
            self.events.emit("blockexport.attach", mac=text, export=served.record.name,
                             target=f"e{served.target.shelf}.{served.target.slot}",
                             cow="yes" if served.record.cow else "no")

    def _publish(self, export: str, mac: str) -> None:
        """Tell Redis (for the CLI's reset) that ``mac`` is attached; in the background."""
        if self.attachments is not None:
            self._background(self._publish_now(export, mac))

    def _background(self, coroutine) -> bool:
        """Run a Redis write in the background (bounded: past 1000 pending, dropped: False)."""
        if len(self._publishing) > 1000:
            coroutine.close()
            return False
        task = asyncio.get_running_loop().create_task(coroutine)
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return True

    async def _load_state(self, export: str) -> State:
        """The config string, mask and reserve lists saved for ``export`` (empty if none, or
        if Redis cannot say)."""
        if self.states is None:
            return State()
        try:
            fields = await self.states.load(export)
        except InventoryUnavailable as exc:
            log.warning("target_state_not_loaded", export=export, reason=str(exc))
            return State()
        state, problems = state_from_fields(fields)
        for field, value, reason in problems:
            log.warning("target_state_invalid", key=keys.export_target_state(export),
                        field=field, value=value, reason=reason, action="ignored")
        return state

    def _state_changed(self, export: str, state: State | object) -> None:
        """Save ``export``'s new target state (or, with :data:`FORGET`, remove it) in the
        background, one writer per export: two writes in flight on two Redis connections could
        land out of order and leave an older state saved; a writer writes the newest state it
        finds until none is left."""
        if self.states is None:
            return
        writing = export in self._unsaved
        self._unsaved[export] = state
        if not writing and not self._background(self._write_states(export)):
            del self._unsaved[export]

    async def _write_states(self, export: str) -> None:
        while (state := self._unsaved.get(export)) is not None:
            try:
                if state is FORGET:
                    await self.states.forget(export)
                else:
                    await self.states.save(export, state_fields(state))
            except InventoryUnavailable as exc:
                log.warning("target_state_not_written", export=export, reason=str(exc),
                            action="removed" if state is FORGET else "saved")
            if self._unsaved.get(export) is state:
                del self._unsaved[export]

    async def _publish_now(self, export: str, mac: str) -> None:
        try:
            await self.attachments.touch(export, mac, time.time() + self.section.attach_timeout)
        except InventoryUnavailable as exc:
            log.debug("attachment_not_published", export=export, mac=mac, reason=str(exc))

    # -- I/O -------------------------------------------------------------------------------
    def _start_io(self, served: Served) -> None:
        self._loop = asyncio.get_running_loop()
        served.thread = threading.Thread(target=self._io_thread, args=(served,), daemon=True,
                                         name=f"aoe-io-{served.record.name}")
        served.thread.start()

    def _io_thread(self, served: Served) -> None:
        """One export's I/O: batches of what is queued, until its sentinel (None) arrives."""
        send_parts = self.transport.send_parts
        for batch in batches(served.inbox, self.section.batch_size):
            try:
                self._finish(served, batch, run_batch(served, batch, send_parts))
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the export's I/O
                log.exception("io_batch_failed", export=served.record.name, reason=str(exc))
            served.completed += len(batch)
        try:
            served.disk.close()
        except OSError as exc:
            log.warning("close_failed", export=served.record.name, reason=str(exc))

    def _emit(self, kind: str, **fields) -> None:
        """An event from the I/O thread (EventLog.emit belongs to the event loop)."""
        self._loop.call_soon_threadsafe(functools.partial(self.events.emit, kind, **fields))

    def _finish(self, served: Served, batch: Sequence[Pending],
                failures: Sequence[str | None]) -> None:
        """The metrics and events of a batch whose replies are sent: counts and latencies added
        once per operation kind (not per request), events per host when its I/O starts failing
        or recovers, and its first read."""
        name = served.record.name
        now = time.perf_counter()
        latencies: dict[str, list[float]] = {}
        done: dict[str, int] = {}
        read = written = 0
        for pending, failure in zip(batch, failures):
            outcome = pending.outcome
            op = policy.IO_KINDS[type(outcome)]
            latencies.setdefault(op, []).append(now - pending.received)
            mac = pending.src
            if failure is not None:
                m.ERRORS_BY[f"{op}_failed"].inc()
                if mac not in served.failing:
                    served.failing.add(mac)
                    text = codec.format_mac(mac)
                    log.warning("io_failed", export=name, mac=text, op=op, reason=failure)
                    self._emit("blockexport.io_error", mac=text, export=name, op=op,
                               reason=failure)
                continue
            done[op] = done.get(op, 0) + 1
            if op == "read":
                read += outcome.length
                if mac not in served.read_by:
                    served.read_by.add(mac)
                    self._emit("blockexport.first_read", mac=codec.format_mac(mac),
                               export=name, lba=outcome.offset // codec.SECTOR)
            elif op == "write":
                written += len(outcome.data)
            if mac in served.failing:
                served.failing.discard(mac)
                text = codec.format_mac(mac)
                log.info("io_recovered", export=name, mac=text)
                self._emit("blockexport.io_recovered", mac=text, export=name)
        counters = served.counters
        for op, n in done.items():
            counters[op].inc(n)
        if read:
            counters["bytes_read"].inc(read)
        if written:
            counters["bytes_written"].inc(written)
        for op, values in latencies.items():
            observe_all(m.LATENCY_BY[op], values)

    # -- housekeeping ------------------------------------------------------------------------
    async def housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            m.QUEUE.set(sum(s.inbox.qsize() for s in self.served.values()))
            for served in list(self.served.values()):
                name = served.record.name
                cutoff = time.monotonic() - self.section.attach_timeout
                m.INITIATORS.labels(name).set(sum(1 for t in served.seen.values() if t > cutoff))
                try:
                    overlay, free, missing = await asyncio.to_thread(storage_facts, served)
                except OSError as exc:
                    overlay, free, missing = 0, 0, str(exc)
                m.OVERLAY_BYTES.labels(name).set(overlay)
                m.FREE_BYTES.labels(name).set(free)
                if missing:
                    self._report(served.record, "backing", served.record.backing, missing,
                                 kept=False)
                    m.EXPORT_UP.labels(name).set(0)
                elif self._reported.pop(name, None) is not None:
                    m.EXPORT_UP.labels(name).set(1)
                if self.status is not None:  # for the console's exports overview
                    self._background(export_status.publish(
                        self.status, name, "aoe", served.disk, overlay, free, missing,
                        3 * self.section.housekeeping_interval + 60))
            try:
                await asyncio.wait_for(stop.wait(), self.section.housekeeping_interval)
            except TimeoutError:
                pass

    async def close(self) -> None:
        threads = [s.thread for s in self.served.values() if s.thread is not None]
        for served in list(self.served.values()):
            self._withdraw(served, "service stopping")

        def join() -> None:
            deadline = time.monotonic() + 5
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        await asyncio.to_thread(join)


def storage_facts(served: Served) -> tuple[int, int, str | None]:
    """(overlay bytes, free bytes, why the backing store is missing or None)."""
    disk = served.disk
    backing = served.record.backing
    if isinstance(disk, CowDisk):
        where = disk.dir if os.path.isdir(disk.dir) else os.path.dirname(disk.dir) or "/"
        overlay = disk.allocated_bytes()
        fd = disk.golden
    else:
        where, overlay, fd = os.path.dirname(backing) or "/", 0, disk.fd
    missing = None
    if os.fstat(fd).st_nlink == 0:
        missing = f"backing {backing} was deleted while served"
    elif not os.path.exists(backing):
        missing = f"backing {backing} no longer exists"
    try:
        st = os.statvfs(where)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    return overlay, free, missing


def state_fields(state: State) -> dict[str, str]:
    """A target state as the hash fields of :class:`shared.attachments.TargetStates`."""
    return {"config": state.config.hex(),
            "masks": ",".join(codec.format_mac(m) for m in state.masks),
            "reserved": ",".join(codec.format_mac(m) for m in state.reserved)}


def state_from_fields(fields: dict[str, str]) -> tuple[State, list[tuple[str, str, str]]]:
    """The saved target state, and (field, value, reason) for what could not be read."""
    problems = []
    config = b""
    try:
        config = bytes.fromhex(fields.get("config", ""))
        if len(config) > codec.MAX_CONFIG:
            raise ValueError(f"longer than {codec.MAX_CONFIG} bytes")
    except ValueError as exc:
        problems.append(("config", fields.get("config", "")[:40], str(exc)))
        config = b""

    def macs(name: str) -> tuple[bytes, ...]:
        out = []
        for text in filter(None, fields.get(name, "").split(",")):
            try:
                mac = bytes.fromhex(text.replace(":", ""))
                if len(mac) != 6:
                    raise ValueError("not 6 bytes")
                out.append(mac)
            except ValueError as exc:
                problems.append((name, text, f"not a MAC address ({exc})"))
        return tuple(out)
    return State(config=config, masks=macs("masks"), reserved=macs("reserved")), problems
