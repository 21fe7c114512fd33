"""The TFTP service wired together: request -> path rules -> file or rendered config ->
admission -> one transfer socket + session -> one summary record (log, metrics, events).

A per-request problem is a log line, a counter and an ERROR to the client where TFTP has one;
only a failed bind ends the service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import services.tftp as tftp_package
from services.tftp import codec, metrics, render
from services.tftp.balance import Balancer
from services.tftp.codec import ErrorCode, Opcode
from services.tftp.content import BytesSource, FileCache, NetasciiSource, NotAFile
from services.tftp.session import Limits, ReadSession
from services.tftp.settings import TftpSection
from services.tftp.threaded import ThreadTransfer
from services.tftp.transport import ListenerProtocol, Transfer
from shared import bootplan, logs, oneshot
from shared.logbudget import LogBudget
from shared.paths import PathRefused, clean_relative, resolve_under
from shared.store import InventoryError, InventoryUnavailable

log = logs.get_logger("tftp")
LeaseLookup = Callable[[str], Awaitable[str | None]]
BUSY_MESSAGE = "server busy: too many transfers, retry in a few seconds"
BUSY_UNANSWERED = ("no transfer slot (max_transfers in use; queue_max waiting, or queue_timeout "
                   "passed since the client last asked): not answered, firmware retransmits")
REFUSALS_LOGGED = 10             # refusals of one source address logged (and evented) ...
REFUSAL_SUMMARY_INTERVAL = 60.0  # ... per this many seconds; the rest in one summary line


def _grow_receive_buffer(sock, size: int) -> None:
    """A boot storm sends hundreds of RRQs at once: the default ~200 KiB buffer drops them.
    SO_RCVBUFFORCE (root/CAP_NET_ADMIN) passes net.core.rmem_max; otherwise SO_RCVBUF is capped
    by it, and we log the size we got."""
    if sock is None or size <= 0:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if got < size:
        log.info("listener_buffer_capped", wanted=size, got=got,
                 fix="raise net.core.rmem_max or run with CAP_NET_ADMIN")


@dataclasses.dataclass
class Record:
    """One summary per request: what the log line, the metrics and the event are made from."""

    peer: str
    port: int
    file: str
    mac: str | None = None
    result: str = "running"
    detail: str = ""
    bytes: int = 0
    size: int | None = None
    blksize: int = 512
    windowsize: int = 1
    retransmits: int = 0
    duration: float = 0.0
    source: str = ""  # "static", "cache", "rendered:<kind>"


@dataclasses.dataclass(eq=False)
class _Handling:
    """A peer's request being handled. Once its transfer runs, the transfer hears the peer's
    further requests (its session tells a copy from the next request); before that (path
    rules, admission, rendering) the client has had no answer, and they are copies."""
    transfer: Transfer | ThreadTransfer | None = None
    seen: float = 0.0  # when the peer last sent its request (loop time): waiting keeps its place
    # a transfer another worker started and moved here (balance.py): its socket, the first ACK
    # (or b""), the block to resume at (or 0)
    moved: tuple[socket.socket, bytes, int] | None = None


class TftpServer:
    def __init__(self, cfg: TftpSection, inventory, *, leases: LeaseLookup | None = None,
                 events=None, worker: int | None = None, store=None) -> None:
        self.cfg = cfg
        self.store = store  # InventoryStore: clears a one-shot boot once its config was served
        self._once: set[asyncio.Task] = set()
        self.worker = worker  # this process's index when tftp.workers > 1 (in logs)
        self.inventory = inventory
        self.leases = leases
        self.events = events
        self.root = Path(cfg.root)
        self.cache = FileCache(cfg.cache_file_max, cfg.cache_total)
        self.limits = Limits(blksize_max=cfg.blksize_max, windowsize_max=cfg.windowsize_max,
                             timeout_initial=cfg.timeout_initial, timeout_min=cfg.timeout_min,
                             timeout_max=cfg.timeout_max, retries=cfg.retries)
        self._slots = asyncio.Semaphore(cfg.max_transfers)
        self._queued = 0
        # peers with a request being handled -> that request's own _Handling
        self._busy: dict[tuple[str, int], _Handling] = {}
        self._tasks: set[asyncio.Task] = set()
        self._transfers: set[Transfer | ThreadTransfer] = set()
        self._threaded = 0                           # transfers running in their own thread
        self.listener: ListenerProtocol | None = None
        self.records: list[Record] | None = None     # tests may set a list to collect records
        self.refusal_budget = LogBudget(REFUSALS_LOGGED, REFUSAL_SUMMARY_INTERVAL)
        self._summary_timer: asyncio.TimerHandle | None = None
        # workers > 1: new requests shared with the other workers (services/tftp/balance.py)
        self.balancer: Balancer | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, self.listener = await loop.create_datagram_endpoint(
            lambda: ListenerProtocol(self.on_datagram),
            local_addr=(self.cfg.bind, self.cfg.port), reuse_port=self.worker is not None)
        address = transport.get_extra_info("sockname")[:2]
        _grow_receive_buffer(transport.get_extra_info("socket"), self.cfg.listener_buffer)
        extra = {} if self.worker is None else {"worker": self.worker}
        extra["native"] = tftp_package.NATIVE  # the per-block path compiled (or why not)
        if not tftp_package.NATIVE:
            extra["native_reason"] = tftp_package.NATIVE_REASON
        log.info("listening", address=address[0], port=address[1], root=str(self.root),
                 max_transfers=self.cfg.max_transfers, **extra)
        if self.balancer is not None:
            self.balancer.start(loop)
        return address

    async def close(self) -> None:
        if self.listener and self.listener.transport:
            self.listener.transport.close()
        if self.balancer is not None:
            self.balancer.close()
        self._log_refusal_summary()
        for transfer in list(self._transfers):
            transfer.abort()  # the session ends "aborted" (in its own thread, if it has one)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- requests ------------------------------------------------------------------------------
    def on_handed(self, data: bytes, addr: tuple[str, int]) -> None:
        """A request another worker handed to this one (services/tftp/balance.py): handled
        as if it had come to this worker's listener, and never handed on again."""
        self.on_datagram(data, addr, handed=True)

    def on_adopt(self, data: bytes, ack: bytes, addr: tuple[str, int],
                 sock: socket.socket, resume: int = 0) -> None:
        """A transfer another worker started and moved here at the client's first ACK
        (services/tftp/balance.py, ``Balancer.move``): served from its socket, its session
        rebuilt from the request and given that ACK; or (``resume``) a lock-step transfer
        moved between blocks, its session rebuilt at block ``resume``."""
        try:
            message = codec.decode(data)
        except codec.DecodeError:
            message = None
        if not isinstance(message, codec.Request) or addr in self._busy:
            sock.close()  # not from a worker of ours, or the client has asked here meanwhile
            return
        self._start(message, addr, moved=(sock, ack, resume))

    def handling(self, addr: tuple[str, int]) -> bool:
        """Whether a request of ``addr``'s is being handled here (its transfer included)."""
        return addr in self._busy

    def on_datagram(self, data: bytes, addr: tuple[str, int], handed: bool = False) -> None:
        try:
            message = codec.decode(data)
        except codec.DecodeError as exc:
            metrics.MALFORMED.labels("listener").inc()
            log.debug("malformed", peer=addr[0], port=addr[1], reason=str(exc))
            return
        if not isinstance(message, codec.Request):
            # a stray ACK/DATA/ERROR on the well-known port: not a transfer of ours
            if not isinstance(message, codec.Error):
                self.listener.send(codec.error(ErrorCode.UNKNOWN_TID, "no transfer on this port"),
                                   addr)
            return
        handling = self._busy.get(addr)
        if handling is not None and handling.transfer is None:
            handling.seen = asyncio.get_running_loop().time()  # still asking: keep waiting
            return
        if handling is not None and self._request_seen(handling.transfer, message, addr):
            return
        if handling is None and not handed and self.balancer is not None and \
                self.balancer.forward(data, addr, len(self._busy)):
            return  # another worker serves it (or already serves this client)
        self._serve(message, addr)

    def _request_seen(self, transfer, message: codec.Request, addr) -> bool:
        """Hand a request from a running transfer's peer to it; False if it has just ended."""
        try:
            return transfer.request_seen(message)
        except Exception as exc:  # noqa: BLE001 - the transfer's own I/O, run from here
            log.warning("request_seen_failed", peer=addr[0], port=addr[1],
                        file=message.filename, reason=repr(exc))
            return True

    def _serve(self, message: codec.Request, addr: tuple[str, int]) -> None:
        if message.opcode == Opcode.WRQ:
            self._refuse(addr, message.filename, "write", ErrorCode.ACCESS_VIOLATION,
                         "this server is read-only")
            return
        if message.mode not in ("octet", "netascii"):
            self._refuse(addr, message.filename, "mode", ErrorCode.ILLEGAL_OPERATION,
                         f"transfer mode {message.mode[:20]!r} not supported (octet, netascii)")
            return
        self._start(message, addr)

    def _start(self, message: codec.Request, addr: tuple[str, int],
               moved: tuple[socket.socket, bytes, int] | None = None) -> None:
        handling = self._busy[addr] = _Handling(seen=asyncio.get_running_loop().time(),
                                                moved=moved)
        task = asyncio.create_task(self._handle(message, addr, handling))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.balancer is not None:
            self.balancer.publish(len(self._busy))
            # handed here by another worker: its route ends once nothing of addr's is left
            task.add_done_callback(lambda _task: self.balancer.settle(addr))

    def _refuse(self, addr, name: str, reason: str, code: ErrorCode, message: str,
                record: Record | None = None) -> None:
        metrics.REFUSED.labels(reason).inc()
        if reason != "busy" or self.cfg.busy_error:
            # busy: no answer by default, so the firmware retransmits instead of giving up
            self.listener.send(codec.error(code, message), addr)
        loop = asyncio.get_running_loop()
        if not self.refusal_budget.allow(addr[0], reason, loop.time()):
            metrics.REFUSED_UNLOGGED.labels(reason).inc()
            if self._summary_timer is None and self.refusal_budget.summary_due is not None:
                self._summary_timer = loop.call_at(self.refusal_budget.summary_due,
                                                   self._log_refusal_summary)
            return
        record = record or Record(addr[0], addr[1], name)
        record.result, record.detail = "refused", f"{reason}: {message}"
        log.warning("refused", peer=addr[0], port=addr[1], file=name, reason=reason,
                    detail=message, mac=record.mac)
        self._emit(record)

    def _log_refusal_summary(self) -> None:
        """One line for the refusals held back by the budget (at the end of their interval,
        and when the service stops)."""
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._summary_timer = None
        budget = self.refusal_budget
        if budget.summary_due is None:
            return
        # the timer was set for summary_due (it may fire a clock tick early); stopping: now
        fields = budget.summary(budget.summary_due)
        if fields is not None:
            if self.worker is not None:
                fields["worker"] = self.worker
            log.warning("refused_summary", **fields)

    def _release(self, addr: tuple[str, int], handling: _Handling) -> None:
        """Forget that ``addr`` has a request being handled (also from a transfer's thread:
        only the request's own entry is removed)."""
        if self._busy.get(addr) is handling:
            self._busy.pop(addr, None)
            if self.balancer is not None:
                self.balancer.publish(len(self._busy))

    def _resolve(self, name: str) -> Path:
        """The file a client's name means: under ``tftp.images_root`` for a name under
        ``/<images_prefix>/`` when that is set, else under the TFTP root (the one sanitiser
        either way)."""
        if self.cfg.images_root:
            parts = clean_relative(name).parts
            prefix = clean_relative(self.cfg.images_prefix).parts
            if len(parts) > len(prefix) and parts[:len(prefix)] == prefix:
                return resolve_under(self.cfg.images_root, "/".join(parts[len(prefix):]))
        return resolve_under(self.root, name)

    async def _handle(self, request: codec.Request, addr: tuple[str, int],
                      handling: _Handling) -> None:
        record = Record(addr[0], addr[1], request.filename)
        started = time.monotonic()
        slot = False
        try:
            try:
                path = self._resolve(request.filename)
            except PathRefused as exc:
                self._refuse(addr, request.filename, "path", ErrorCode.ACCESS_VIOLATION,
                             f"access violation: {exc.reason}", record)
                return
            slot = await self._admit(handling)
            if not slot:
                self._refuse(addr, request.filename, "busy", ErrorCode.NOT_DEFINED,
                             BUSY_MESSAGE if self.cfg.busy_error else BUSY_UNANSWERED, record)
                return
            try:
                opened = await self._open(path, request.filename, addr, record)
            except InventoryUnavailable as exc:
                self._refuse(addr, request.filename, "inventory", ErrorCode.NOT_DEFINED,
                             "inventory unavailable, retry later", record)
                log.error("inventory_unavailable", reason=str(exc))
                return
            if opened is None:
                return  # answered with an ERROR and recorded by _open
            source, size = opened
            if request.mode == "netascii":
                source, size = NetasciiSource(source), None
            await self._transfer(request, addr, source, size, record, started, handling)
        finally:
            if slot:
                self._slots.release()
            self._release(addr, handling)
            if handling.moved is not None:  # moved here, but refused or failed before serving
                handling.moved[0].close()

    async def _admit(self, handling: _Handling) -> bool:
        """A transfer slot, waited for in order while the client keeps asking: a request
        waits until ``queue_timeout`` after the client last sent it (firmware retransmits an
        unanswered RRQ every few seconds, and each copy renews the wait; a client that gave up
        is forgotten). False: no slot (the queue is full, or the client stopped asking)."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self._queued >= self.cfg.queue_max or self.cfg.queue_timeout <= 0:
            return False
        self._queued += 1
        metrics.QUEUED.set(self._queued)
        loop = asyncio.get_running_loop()
        acquire = asyncio.ensure_future(self._slots.acquire())  # one place in the line
        try:
            while True:
                left = handling.seen + self.cfg.queue_timeout - loop.time()
                if left > 0:
                    await asyncio.wait((acquire,), timeout=left)
                if acquire.done():
                    return True
                if handling.seen + self.cfg.queue_timeout <= loop.time():
                    return False
        finally:
            if not acquire.done():
                acquire.cancel()  # Semaphore.acquire gives a slot handed to it on the way back
            self._queued -= 1
            metrics.QUEUED.set(self._queued)

    def _finish_error(self, addr, record: Record, result: str, code: ErrorCode,
                      message: str) -> None:
        self.listener.send(codec.error(code, message), addr)
        record.result, record.detail = result, message
        if record.mac is None and (self.leases is not None or self.events is not None):
            # whose request it was (a machine stuck on a missing file: its boot state names
            # the file): looked up after the answer is sent, as after a transfer
            task = asyncio.create_task(self._record_with_mac(record, addr[0]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._record(record)

    async def _record_with_mac(self, record: Record, ip: str) -> None:
        try:
            record.mac = await asyncio.wait_for(self._mac_of(ip), 2.0)
        except (TimeoutError, InventoryUnavailable):
            pass
        self._record(record)

    async def _open(self, path: Path, name: str, addr, record: Record):
        """(source, size) for the request, or None after answering it with an ERROR."""
        try:
            source, size, outcome = await self.cache.open(path)
            metrics.CACHE.labels(outcome).inc()
            record.source, record.size = ("cache" if outcome != "streamed" else "disk"), size
            return source, size
        except (FileNotFoundError, NotADirectoryError):
            pass  # not on disk ("file/x" with "file" a file, too): maybe a rendered name
        except NotAFile as exc:
            self._finish_error(addr, record, "not_found", ErrorCode.FILE_NOT_FOUND,
                               f"not a regular file ({exc.kind})")
            return None
        except OSError as exc:
            self._finish_error(addr, record, "io_error", ErrorCode.ACCESS_VIOLATION,
                               f"cannot read file: {exc.strerror}")
            return None
        dynamic = render.classify(str(clean_relative(name))) if self.cfg.dynamic else None
        if dynamic is None:
            self._finish_error(addr, record, "not_found", ErrorCode.FILE_NOT_FOUND,
                               "file not found")
            return None
        return await self._render(dynamic, addr, record)

    async def _mac_of(self, ip: str) -> str | None:
        host = self.inventory.host_by_ip(ip)
        if host is not None:
            return host.mac
        if self.leases is None:
            return None
        try:
            return await self.leases(ip)
        except InventoryUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a lease problem must not kill the request
            log.warning("lease_lookup_failed", ip=ip, reason=repr(exc))
            return None

    async def _render(self, dynamic: render.DynamicName, addr, record: Record):
        mac = dynamic.mac
        if dynamic.ip:
            mac = await self._mac_of(dynamic.ip)
        elif dynamic.generic:
            mac = await self._mac_of(addr[0])
        record.mac = mac
        # the effective host (groups, one-shot; an unknown MAC under profile:<name>)
        host, profile, export = bootplan.records(self.inventory, mac, self.cfg.unknown_host) \
            if mac else (None, None, None)
        if host is None and not dynamic.generic:
            # the loader tries its next name (IP hex, then default)
            self._finish_error(addr, record, "not_found", ErrorCode.FILE_NOT_FOUND,
                               "no such host")
            return None
        if host is None and self.cfg.unknown_host == "none" and not (
                dynamic.kind == "ipxe" and self.cfg.http_base_url):
            self._finish_error(addr, record, "not_found", ErrorCode.FILE_NOT_FOUND,
                               "unknown host")
            return None
        try:
            boot = render.plan(mac, host, profile, export, images_prefix=self.cfg.images_prefix,
                               http_base_url=self.cfg.http_base_url,
                               unknown_host=self.cfg.unknown_host)
            text = render.render(dynamic.kind, boot, self.cfg.http_base_url)
        except render.RenderError as exc:
            log.warning("render_failed", mac=mac, kind=dynamic.kind, reason=str(exc))
            self._finish_error(addr, record, "render_error", ErrorCode.NOT_DEFINED,
                               f"bootyard cannot render this host's config: {exc}"[:400])
            return None
        metrics.RENDERED.labels(dynamic.kind).inc()
        if host is not None and host.once_profile and boot.action == "kernel" and \
                self.store is not None and not (dynamic.kind == "ipxe" and self.cfg.http_base_url):
            self._once_served(mac, host.once_profile, addr[0])
        data = text.encode("utf-8")
        record.source, record.size = f"rendered:{dynamic.kind}", len(data)
        return BytesSource(data), len(data)

    def _once_served(self, mac: str, profile: str, ip: str) -> None:
        """A one-shot boot's config was served: clear it in the background (an iPXE script
        chained to the HTTP service is cleared there). shared/oneshot.py ``consume``."""
        if any(t.get_name() == mac for t in self._once):
            return

        async def clear() -> None:
            try:
                if await oneshot.consume(self.store, mac, profile, "tftp:once-served") and \
                        self.events is not None:
                    self.events.emit("tftp.once_served", mac, ip=ip, profile=profile)
            except InventoryError as exc:
                log.warning("once_clear_failed", mac=mac, profile=profile, reason=str(exc),
                            effect="the host boots its one-shot profile again until it is "
                                   "cleared (bootyard host rescue MAC --cancel)")
        task = asyncio.get_running_loop().create_task(clear(), name=mac)
        self._once.add(task)
        task.add_done_callback(self._once.discard)

    async def _transfer(self, request, addr, source, size, record: Record,
                        started: float, handling: _Handling) -> None:
        loop = asyncio.get_running_loop()
        moved, handling.moved = handling.moved, None  # the socket is the Transfer's from here
        session = ReadSession(addr, source, size, request, self.limits, loop.time(),
                              resume_at=moved[2] if moved is not None else 0)
        record.blksize, record.windowsize = session.blksize, session.windowsize
        metrics.IN_FLIGHT.inc()
        transfer = None
        try:
            release = functools.partial(self._release, addr, handling)
            if moved is not None:
                transfer = Transfer(self.cfg.bind, session, release, moved=moved[:2],
                                    relocate=self._relocator(request, addr, record))
            elif self._threaded < self.cfg.transfer_threads:
                transfer = ThreadTransfer(self.cfg.bind, session, release)
                self._threaded += 1
            else:
                transfer = Transfer(self.cfg.bind, session, release,
                                    relocate=self._relocator(request, addr, record))
            self._transfers.add(transfer)
            handling.transfer = transfer
            await transfer.done
        except OSError as exc:
            session.finish("io_error", f"cannot open a transfer socket: {exc.strerror}")
        except asyncio.CancelledError:
            if transfer is not None:
                transfer.abort()
                transfer.join(2.0)  # a thread stops within a recv; then its session is ours
            if not session.finished:
                session.finish("aborted", "service stopping")
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            if transfer is not None:
                self._transfers.discard(transfer)
                if isinstance(transfer, ThreadTransfer):
                    self._threaded -= 1
                self._release(addr, handling)
                following = session.next_request if session.result != "moved" else None
                if following is not None and addr not in self._busy:
                    self._serve(following, addr)  # the client's next request (unless a
                    # retransmission of it has already started it)
            close = getattr(source, "close", None)
            if close:
                close()
            if not session.finished:
                session.finish("aborted", "transfer socket closed")
            if session.result != "moved":  # a moved transfer is recorded where it ends
                await self._summarise(session, record, addr, started)

    def _relocator(self, request: codec.Request, addr: tuple[str, int], record: Record):
        """What a transfer on the event loop calls with the client's first ACK, and a
        lock-step one between blocks now and then: whether it moved to the worker on the
        client's CPU (services/tftp/balance.py). Only files (a rendered config is rendered
        once: a one-shot boot is cleared when it is served) in octet mode, and only with
        workers sharing requests."""
        if self.balancer is None or record.source not in ("cache", "disk") or \
                request.mode != "octet":
            return None
        balancer, datagram = self.balancer, codec.encode(request)

        def relocate(sock: socket.socket, ack: bytes, resume: int) -> bool:
            return balancer.move(datagram, ack, addr, sock, len(self._busy), resume)
        return relocate

    async def _summarise(self, session: ReadSession, record: Record, addr, started) -> None:
        """The transfer's summary: record, metrics, the client's MAC, log line, event."""
        record.result, record.detail = session.result, session.detail
        record.bytes, record.retransmits = session.bytes_sent, session.retransmits
        record.duration = time.monotonic() - started
        metrics.BYTES.inc(session.bytes_sent)
        metrics.RETRANSMITS.inc(session.retransmits)
        metrics.DURATION.observe(record.duration)
        if session.foreign:
            metrics.FOREIGN.inc(session.foreign)
        if session.malformed:
            metrics.MALFORMED.labels("transfer").inc(session.malformed)
        if record.mac is None and self.leases is not None:
            try:
                record.mac = await asyncio.wait_for(self._mac_of(addr[0]), 2.0)
            except (TimeoutError, InventoryUnavailable):
                pass
        self._record(record)

    # -- the one summary record ----------------------------------------------------------------
    def _record(self, record: Record) -> None:
        if record.result in metrics.RESULTS:
            metrics.TRANSFERS.labels(record.result).inc()
        fields = dict(peer=record.peer, port=record.port, mac=record.mac, file=record.file,
                      result=record.result, bytes=record.bytes, blksize=record.blksize,
                      windowsize=record.windowsize, retransmits=record.retransmits,
                      duration_s=round(record.duration, 4), source=record.source)
        if self.worker is not None:
            fields["worker"] = self.worker
        if record.detail:
            fields["detail"] = record.detail
        if record.result in ("ok", "unconfirmed", "tsize_probe", "not_found"):
            log.info("transfer", **fields)
        else:
            log.warning("transfer", **fields)
        self._emit(record)

    def _emit(self, record: Record) -> None:
        if self.records is not None:
            self.records.append(record)
        if self.events is not None:
            self.events.emit("tftp.transfer", record.mac, ip=record.peer, file=record.file,
                             result=record.result, bytes=record.bytes, blksize=record.blksize,
                             windowsize=record.windowsize, retransmits=record.retransmits,
                             duration_s=f"{record.duration:.3f}", detail=record.detail or None)
