"""Wiring of the iSCSI target: inventory exports (``kind: iscsi``) -> targets; TCP connections
(:mod:`iscsi_conn`) -> logins, sessions, the SCSI engine on each export's I/O thread.

- Exports are followed live, as for AoE: a new one is served within a second, a changed one is
  re-opened (its sessions are closed: the initiators log in again to the new version) or, when
  only its CHAP secrets, allow-list or description changed, updated in place; a removed one is
  withdrawn and its sessions closed. A backing store that cannot be opened, or an IQN another
  export already has, is logged (key, field, value, reason) and ``export_up`` is 0.
- The disk is LUN ``lun`` of the target (0 unless the export says otherwise, so iPXE's
  ``iscsi:server::::iqn`` works); REPORT LUNS on any LUN lists it; every other LUN has no
  logical unit (INQUIRY peripheral qualifier 011b, other commands LOGICAL UNIT NOT SUPPORTED).
- One :class:`scsi.LogicalUnit` per export, shared by its sessions, executed on the export's
  one I/O thread (never on the event loop); results go back to the loop in batches.
- Sessions and hosts: :mod:`iscsi_hosts`. Events per session (never per I/O):
  ``blockexport.iscsi_login``, ``blockexport.attach`` (transport iscsi),
  ``blockexport.first_read``, ``blockexport.iscsi_logout``, ``blockexport.iscsi_login_failed``,
  ``blockexport.iscsi_reset``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import os
import secrets
import threading
import time

from services.blockexport import iscsi_hosts, metrics as m, scsi
from services.blockexport.follow import FollowsExports
from services.blockexport.iscsi_conn import Connection
from services.blockexport.iscsi_login import Login, Offer, TargetConfig
from services.blockexport.iscsi_session import Session, Task
from services.blockexport.iscsi_worker import READS, Worker, direct_fd, holds_reads, read_now
from services.blockexport.settings import BlockexportSection
from services.blockexport.storage import (
    NOWAIT,
    SECTOR,
    UNMAPPED_GOLDEN,
    Disk,
    PlainDisk,
    StorageError,
    _pread_cached,
    _pread_full,
)
from services.blockexport.storage_cow import CowDisk
from shared import keys, logs
from shared.records import Export
from shared.store import InventoryUnavailable

log = logs.get_logger("blockexport")

WRITES = frozenset((0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E))
SYNCS = frozenset((0x35, 0x91))
REPORT_LUNS = 0xA0
OP_NAMES = {**dict.fromkeys(READS, "read"), **dict.fromkeys(WRITES, "write"),
            **dict.fromkeys(SYNCS, "flush")}
STATUS_NAMES = {0: ("status", "good"), 2: ("status", "check_condition")}


class GoldenView(Disk):
    """A cow export's golden image, read-only: what a session that matches no host sees."""

    def __init__(self, cow: CowDisk) -> None:
        self.cow = cow
        self.size = cow.size
        self.readonly = True

    def read(self, offset: int, length: int) -> bytes:
        return _pread_full(self.cow.golden, length, offset)

    def read_cached(self, offset: int, into: memoryview) -> bool:
        return bool(NOWAIT) and offset + len(into) <= self.size and \
            _pread_cached(self.cow.golden, into, offset)

    def write(self, writes, sync: bool = True) -> None:
        raise OSError(30, "read-only: this session belongs to no host")


def target_config(export: Export) -> TargetConfig:
    return TargetConfig(iqn=export.iqn or "", export=export.name,
                        chap_user=export.chap_user or "", chap_secret=export.chap_secret or "",
                        mutual_user=export.chap_mutual_user or "",
                        mutual_secret=export.chap_mutual_secret or "",
                        allow=tuple(export.allow))


@dataclasses.dataclass
class Served:
    record: Export
    config: TargetConfig
    disk: PlainDisk | CowDisk
    lu: scsi.LogicalUnit
    worker: Worker
    golden_lu: scsi.LogicalUnit | None = None
    busy: int = 0  # commands but READs queued or executing on the I/O thread: no read on the
    # loop meanwhile (iscsi_worker.holds_reads, read_now; iscsi_direct)
    conns: set = dataclasses.field(default_factory=set)
    counters: dict = dataclasses.field(default_factory=dict)  # metric children (labels() is slow)
    tally: dict = dataclasses.field(default_factory=dict)  # counts not yet in the metrics
    latency: m.LatencyTally = dataclasses.field(default_factory=m.LatencyTally)

    def __post_init__(self) -> None:
        name = self.record.name
        self.counters = {("op", op): m.OPERATIONS.labels(name, op)
                         for op in ("read", "write", "flush", "other")}
        self.counters.update({("bytes", d): m.BYTES.labels(name, d) for d in ("read", "write")})
        self.counters.update({("status", s): m.ISCSI_COMMANDS.labels(name, s)
                              for s in ("good", "check_condition", "other")})
        self.tally = dict.fromkeys(self.counters, 0)

    def flush_counts(self) -> None:
        """Move the per-command counts into the metrics (a Python add per command is a tenth
        of a prometheus-client inc; flushed every second and when the export goes)."""
        tally = self.tally
        for key, value in tally.items():
            if value:
                self.counters[key].inc(value)
                tally[key] = 0
        self.latency.flush()


def disk_changed(old: Export, new: Export) -> bool:
    return (old.backing, old.cow, old.readonly, old.iqn, old.lun, old.write_cache) != \
        (new.backing, new.cow, new.readonly, new.iqn, new.lun, new.write_cache)


class IscsiServer(FollowsExports):
    def __init__(self, section: BlockexportSection, cache, events, leases=None,
                 attachments=None) -> None:
        self.section = section
        self.cache = cache
        self.events = events
        self.leases = leases
        self.attachments = attachments
        self.served: dict[str, Served] = {}
        self.by_iqn: dict[str, Served] = {}
        self.conns: set[Connection] = set()
        self.sessions: dict[tuple, Connection] = {}
        self._reported: dict[str, str] = {}
        self._tsih = itertools.count(1)
        self._names: tuple[int, dict] = (-1, {})
        self._tasks: set[asyncio.Task] = set()
        self.offer = Offer(max_recv_dsl=section.iscsi_max_recv_dsl,
                           max_burst=section.iscsi_max_burst,
                           first_burst=min(section.iscsi_first_burst, section.iscsi_max_burst))
        self.server: asyncio.base_events.Server | None = None
        self._reconciled = 0
        self._watch_exports(cache)

    # -- listening ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.section.iscsi_host or None
        self.server = await loop.create_server(lambda: Connection(self), host,
                                               self.section.iscsi_port, reuse_address=True,
                                               backlog=1024)

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1] if self.server else 0

    # -- exports -----------------------------------------------------------------------------
    async def reconcile(self) -> None:
        wanted = {e.name: e for e in self.cache.all("export") if e.kind == "iscsi"}
        for name in list(self.served):
            if name not in wanted:
                self._withdraw(self.served[name], "removed from the inventory")
        for name in sorted(wanted):
            await self._serve(wanted[name])
        self._reconciled += 1

    def _report(self, export: Export, field: str, value: str, reason: str, kept: bool) -> None:
        m.EXPORT_UP.labels(export.name).set(1 if kept else 0)
        if self._reported.get(export.name) == reason:
            return
        self._reported[export.name] = reason
        log.warning("export_not_served", key=keys.object_key("export", export.name),
                    field=field, value=value, reason=reason,
                    action="serving its last good version" if kept else "not served")

    async def _serve(self, export: Export) -> None:
        current = self.served.get(export.name)
        if current is not None and current.record == export:
            return
        iqn = (export.iqn or "").lower()
        holder = self.by_iqn.get(iqn)
        if holder is not None and holder.record.name != export.name:
            self._report(export, "iqn", export.iqn or "", f"iqn {export.iqn} is already served "
                         f"for export {holder.record.name!r}", kept=current is not None)
            return
        if current is not None and not disk_changed(current.record, export):
            current.record = export
            current.config = target_config(export)
            log.info("export_served", export=export.name, transport="iscsi", iqn=export.iqn,
                     change="settings")
            return
        try:
            disk = await asyncio.to_thread(_open_disk, export, self.section, current is None)
        except (StorageError, OSError) as exc:
            self._report(export, "backing", export.backing, str(exc), kept=current is not None)
            return
        if current is not None:
            self._withdraw(current, "record changed")
        lu = _logical_unit(export, disk)
        served = Served(export, target_config(export), disk, lu,
                        Worker(export.name, asyncio.get_running_loop()))
        self.served[export.name] = served
        self.by_iqn[iqn] = served
        self._reported.pop(export.name, None)
        m.EXPORT_UP.labels(export.name).set(1)
        m.preinit_export(export.name)
        m.ISCSI_SESSIONS.labels(export.name)
        log.info("export_served", export=export.name, transport="iscsi", iqn=export.iqn,
                 lun=export.lun, backing=export.backing, cow=export.cow,
                 readonly=export.readonly, size=disk.size, chap=bool(export.chap_secret),
                 change="changed" if current else "added")

    def _withdraw(self, served: Served, why: str) -> None:
        name = served.record.name
        if self.served.get(name) is served:
            del self.served[name]
            m.EXPORT_UP.labels(name).set(0)
        iqn = (served.record.iqn or "").lower()
        if self.by_iqn.get(iqn) is served:
            del self.by_iqn[iqn]
        log.info("export_withdrawn", export=name, transport="iscsi", reason=why)
        served.flush_counts()
        for conn in list(served.conns):
            conn.close("export_withdrawn")
        served.worker.stop()
        disk = served.disk

        def close_after(thread=served.worker.thread) -> None:
            thread.join(30)
            try:
                if not disk.readonly:
                    disk.flush()  # what a write-back cache holds, durable before we let go
                disk.close()
            except OSError as exc:
                log.warning("close_failed", export=name, reason=str(exc))
        threading.Thread(target=close_after, daemon=True).start()

    # -- connections and logins ------------------------------------------------------------------
    def admit(self, conn: Connection) -> bool:
        if len(self.conns) >= self.section.iscsi_max_connections:
            m.ISCSI_LOGIN_FAILURES.labels("too_many_connections").inc()
            log.warning("iscsi_connection_refused", address=conn.address,
                        reason=f"{len(self.conns)} connections, the limit "
                               "(blockexport.iscsi_max_connections)")
            return False
        self.conns.add(conn)
        m.ISCSI_CONNECTIONS.labels("login").inc()
        return True

    def visible(self, initiator: str, address: str) -> list[TargetConfig]:
        from services.blockexport.iscsi_login import allowed
        return [s.config for s in self.served.values()
                if allowed(s.config, initiator, address)]

    def new_login(self, conn: Connection) -> Login:
        def target(name: str) -> TargetConfig | None:
            served = self.by_iqn.get(name.lower())
            return served.config if served else None
        return Login(targets=target, visible=self.visible, address=conn.address,
                     offer=self.offer, statsn=secrets.randbits(31),
                     challenge=secrets.token_bytes, tsih=lambda: next(self._tsih) % 0xFFFF or 1)

    async def logged_in(self, conn: Connection, login: Login) -> tuple[str, str] | None:
        """The login is done: find the session's host, start it. A refusal: (reason, detail)."""
        conn.initiator = login.initiator
        conn.nexus = f"{login.initiator},i,0x{login.first.isid.hex()}"
        discovery = login.session_type == "Discovery"
        served = None
        if not discovery:
            served = self.by_iqn.get(login.target.iqn.lower())
            if served is None:
                return "unknown_target", f"target {login.target.iqn} was withdrawn"
            host = await self._host(login.initiator, conn.address)
            conn.mac = host.mac if host else None
            if host is None and served.record.unmatched == "refuse":
                return "no_host", (f"initiator {login.initiator} from {conn.address} is no "
                                   f"host of the inventory, and export {served.record.name} "
                                   "has unmatched: refuse")
            if self.served.get(served.record.name) is not served:
                return "unknown_target", f"target {login.target.iqn} was withdrawn"
            conn.export = served
            conn.lu, conn.disk = self._disk_for(served, conn.mac)
            conn.read_fd = direct_fd(conn.disk)
            key = (login.initiator.lower(), bytes(login.first.isid), served.record.iqn)
            old = self.sessions.get(key)
            if old is not None and old is not conn:  # session reinstatement (ERL 0)
                old.close("reinstated")
            self.sessions[key] = conn
            conn.key = key
            served.conns.add(conn)
        m.ISCSI_CONNECTIONS.labels("login").dec()
        session = Session(login.params, statsn=login.statsn, expcmdsn=login.cmdsn,
                          window=self.section.iscsi_window, discovery=discovery,
                          target=served.config if served else None,
                          visible=lambda: self.visible(conn.initiator, conn.address),
                          portal=conn.portal, portal_group=self.offer.portal_group,
                          wanted=lambda cdb: scsi.data_out_length(cdb, SECTOR),
                          cid=login.first.cid)
        conn.start_session(session)
        m.ISCSI_CONNECTIONS.labels(conn.phase).inc()
        if served is not None:
            m.ISCSI_SESSIONS.labels(served.record.name).inc()
            name = served.record.name
            log.info("iscsi_login", export=name, initiator=conn.initiator,
                     address=conn.address, mac=conn.mac or "", digests=f"{conn.hd}/{conn.dd}",
                     host="matched" if conn.mac else "none")
            self.events.emit("blockexport.iscsi_login", mac=conn.mac, export=name,
                             initiator=conn.initiator, address=conn.address)
            self.events.emit("blockexport.attach", mac=conn.mac, export=name,
                             target=served.record.iqn, transport="iscsi",
                             cow="yes" if served.record.cow else "no")
            self._publish(served, conn)
        else:
            log.info("iscsi_discovery", initiator=conn.initiator, address=conn.address)
        return None

    def _candidates(self, initiator: str) -> list:
        """The hosts ``initiator`` is the rendered name of (the index follows the inventory)."""
        version = getattr(self.cache, "version", 0)
        if self._names[0] != version or version == 0:
            index = iscsi_hosts.names_index(self.cache.hosts(), self.cache.profile,
                                            self.section.initiator_prefix)
            self._names = (version, index)
        return self._names[1].get(initiator.lower(), [])

    async def _host(self, initiator: str, address: str):
        candidates = self._candidates(initiator)
        if not candidates:
            return None
        holder = None
        if self.leases is not None and not any(h.ip == address for h in candidates):
            try:
                holder = await self.leases.holder(address)
            except InventoryUnavailable as exc:
                log.warning("iscsi_lease_lookup_failed", address=address, reason=str(exc))
        return iscsi_hosts.match(candidates, address, holder)

    def _disk_for(self, served: Served, mac: str | None):
        disk = served.disk
        if isinstance(disk, CowDisk):
            if mac:
                return served.lu, disk.view(mac)
            if served.golden_lu is None:
                golden = GoldenView(disk)
                served.golden_lu = _logical_unit(served.record, golden, readonly=True)
            return served.golden_lu, GoldenView(disk)
        return served.lu, disk

    def login_failed(self, conn: Connection, reason: str, detail: str) -> None:
        m.ISCSI_LOGIN_FAILURES.labels(reason if reason in m.LOGIN_FAILURE_REASONS
                                      else "protocol").inc()
        login = conn.login
        initiator = login.initiator if login else ""
        target = login.target.export if login and login.target else ""
        mac = conn.mac
        if mac is None and initiator:  # on the host's timeline when its reservation says so
            try:
                host = iscsi_hosts.match(self._candidates(initiator), conn.address, None)
            except InventoryUnavailable:
                host = None
            mac = host.mac if host else None
        log.warning("iscsi_login_failed", reason=reason, detail=detail, address=conn.address,
                    initiator=initiator, export=target, mac=mac or "")
        self.events.emit("blockexport.iscsi_login_failed", mac=mac, reason=reason,
                         export=target, initiator=initiator, address=conn.address)

    def ended(self, conn: Connection) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        m.ISCSI_CONNECTIONS.labels(conn.phase).dec()
        served = conn.export
        if served is None:
            return
        served.conns.discard(conn)
        m.ISCSI_SESSIONS.labels(served.record.name).dec()
        if conn.key is not None and self.sessions.get(conn.key) is conn:
            del self.sessions[conn.key]
        conn.lu.nexus_lost(conn.nexus)
        name = served.record.name
        log.info("iscsi_logout", export=name, initiator=conn.initiator, address=conn.address,
                 mac=conn.mac or "", reason=conn.end_reason)
        self.events.emit("blockexport.iscsi_logout", mac=conn.mac, export=name,
                         initiator=conn.initiator, address=conn.address,
                         reason=conn.end_reason)

    # -- commands --------------------------------------------------------------------------------
    def execute(self, conn: Connection, task: Task, jobs: list | None = None) -> None:
        """Run ``task``: answered at once (another LUN, a large cached read) or queued for the
        export's I/O thread; with ``jobs`` the caller submits them all in one go."""
        served = conn.export
        record = served.record
        request = scsi.Request(task.cdb, task.lun, conn.nexus,
                               task.data_out if task.write else b"", task.edtl, task.read,
                               task.write)
        if task.lun != record.lun:
            if task.cdb[:1] == bytes([REPORT_LUNS]):
                response = scsi.report_luns([record.lun], request)
            else:
                response = scsi.no_such_lun(request)
            conn.completed(task, response.status, response.data_in, response.sense,
                           response.overflow, response.underflow)
            return
        if task.read and not served.busy:
            started = time.perf_counter()
            response = read_now(conn.lu, request, conn.disk, conn.read_fd, not conn.dd)
            if response is not None:
                self.account(conn, request, response, time.perf_counter() - started)
                conn.completed(task, response.status, response.data_in, response.sense,
                               response.overflow, response.underflow)
                return
        if holds_reads(task.cdb):
            served.busy += 1
        job = (conn, task, conn.lu, request, conn.disk, time.perf_counter())
        if jobs is None:
            served.worker.submit([job])
        else:
            jobs.append(job)

    def account(self, conn: Connection, request: scsi.Request, response: scsi.Response,
                seconds: float) -> None:
        served = conn.export
        if served is None:
            return
        tally = served.tally
        opcode = request.cdb[0] if request.cdb else -1
        op = OP_NAMES.get(opcode, "other")
        tally["op", op] += 1
        if op == "read":
            tally["bytes", "read"] += len(response.data_in)
            if not conn.read_once and response.status == 0:
                name = served.record.name
                conn.read_once = True
                self.events.emit("blockexport.first_read", mac=conn.mac, export=name,
                                 transport="iscsi", lba=int.from_bytes(
                                     request.cdb[2:6] if opcode in (0x28, 0xA8)
                                     else request.cdb[2:10] if opcode == 0x88 else b"\0",
                                     "big"))
        elif op == "write":
            tally["bytes", "write"] += len(request.data_out)
        if op != "other":
            served.latency.add(op, seconds)
        tally[STATUS_NAMES.get(response.status, ("status", "other"))] += 1

    def reset(self, conn: Connection, kind: str, lun: int) -> None:
        served = conn.export
        if served is None:
            return
        self.events.emit("blockexport.iscsi_reset", mac=conn.mac, export=served.record.name,
                         initiator=conn.initiator, reset=kind, lun=lun)
        log.info("iscsi_reset", export=served.record.name, initiator=conn.initiator,
                 kind=kind, lun=lun)
        if kind == "target_warm" or lun == served.record.lun:
            for lu in filter(None, (served.lu, served.golden_lu)):
                lu.reset(kind, conn.nexus)

    # -- housekeeping ----------------------------------------------------------------------------
    def _publish(self, served: Served, conn: Connection) -> None:
        if self.attachments is None or not conn.mac or not served.record.cow:
            return
        until = time.time() + self.section.attach_timeout
        task = asyncio.get_running_loop().create_task(
            self._touch(served.record.name, conn.mac, until))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, export: str, mac: str, until: float) -> None:
        try:
            await self.attachments.touch(export, mac, until)
        except InventoryUnavailable as exc:
            log.debug("attachment_not_published", export=export, mac=mac, reason=str(exc))

    async def housekeeping(self, stop: asyncio.Event) -> None:
        last_publish = 0.0
        while not stop.is_set():
            now = time.monotonic()
            publish = now - last_publish >= max(1.0, self.section.attach_timeout / 4)
            for served in list(self.served.values()):
                served.flush_counts()
                if publish:
                    for conn in list(served.conns):
                        self._publish(served, conn)
            if publish:
                last_publish = now
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.close("service_stopping")
        threads = []
        for served in list(self.served.values()):
            threads.append(served.worker.thread)
            self._withdraw(served, "service stopping")

        def join() -> None:
            deadline = time.monotonic() + 5
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        await asyncio.to_thread(join)


def _open_disk(export: Export, section: BlockexportSection, cleanup: bool):
    if export.cow:
        return CowDisk(export.backing, section.overlay_root, export.name,
                       block=section.overlay_block, readonly=export.readonly, cleanup=cleanup)
    return PlainDisk(export.backing, readonly=export.readonly)


def _logical_unit(export: Export, disk, readonly: bool | None = None) -> scsi.LogicalUnit:
    ro = export.readonly if readonly is None else readonly
    if isinstance(disk, CowDisk):
        unmapped = None if ro else UNMAPPED_GOLDEN
    else:
        unmapped = None if ro else scsi.unmapped_mode(disk)
    serial = hashlib.sha256(f"{export.name}:{os.path.basename(export.backing)}".encode())
    lu = scsi.LogicalUnit(name=export.name, serial=serial.hexdigest()[:16], size_bytes=disk.size,
                          readonly=ro, unmapped=unmapped, write_cache=export.write_cache)
    lu.luns = [export.lun]
    return lu

