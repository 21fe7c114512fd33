"""One iSCSI TCP connection (asyncio protocol): framing, the login phase, then the full feature
phase (:mod:`iscsi_session`), SCSI commands handed to the export's I/O thread.

- Framing: a PDU is read whole (BHS, AHS, digests, padded data) before it is decoded; a data
  segment longer than we declared (8,192 bytes during login, ``iscsi_max_recv_dsl`` after), a
  header digest error or a PDU that cannot be decoded during login closes the connection
  (error recovery level 0); after login a bad PDU is Rejected and the connection goes on.
- Timeouts: a login not finished in ``iscsi_login_timeout`` seconds closes the connection; a
  session that sends nothing for ``iscsi_idle_timeout`` seconds (0: never) is closed. Every
  ``iscsi_nop_interval`` seconds of silence we send a NOP-In ping; an unanswered one never ends
  a session (iPXE answers none); TCP keepalive finds peers that are gone.
- Writes: a command is executed only once all its data is in, as one call of the SCSI engine,
  so a dropped connection leaves no half-applied write.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from services.blockexport import iscsi_pdu as pdu, metrics as m
from services.blockexport.iscsi_direct import DirectReads
from services.blockexport.iscsi_login import Login, Step
from services.blockexport.iscsi_pdu import DecodeError, DigestError, LoginRequest
from services.blockexport.iscsi_send import send_direct, send_mixed
from services.blockexport.iscsi_session import Session, Task, fixed_sense
from shared import logs

log = logs.get_logger("blockexport")

# A SCSI Command BHS (11.3): opcode, flags, TotalAHSLength and DataSegmentLength as one word,
# LUN, ITT, EDTL, CmdSN, ExpStatSN, CDB (the opcode, flags and lengths of any PDU, for framing)
_COMMAND = struct.Struct(">BB2xIQIIII16s")
_DATA_OUT = struct.Struct(">BB6xQII4xI4xII4x")  # a Data-Out BHS (11.7)
LOGIN_MAX_DSL = 8192  # what a target may receive before it declares more (13.12)
ABORTED_COMMAND = 0x0B


def _data_out(buf: bytearray, pos: int, dsl: int) -> pdu.DataOut:
    """The Data-Out PDU at ``pos`` (no AHS, no digests, whole words of data), as
    :func:`iscsi_pdu.decode` makes it, without copying the PDU first."""
    bhs = bytes(buf[pos:pos + pdu.BHS])
    op, flags, lun, itt, ttt, expstatsn, datasn, offset = _DATA_OUT.unpack_from(bhs)
    return pdu.DataOut(op & 0x3F, bool(op & 0x40), bhs, bool(flags & 0x80), lun, itt, ttt,
                       expstatsn, datasn, offset,
                       bytes(buf[pos + pdu.BHS:pos + pdu.BHS + dsl]))


class Connection(asyncio.Protocol):
    def __init__(self, server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.login: Login | None = None
        self.session: Session | None = None
        self.export = None  # the served export (iscsi_server.Served) of a normal session
        self.disk = None
        self.read_fd: int | None = None  # the disk's fd when reads may run on the loop
        self.direct: DirectReads | None = None  # reads answered as they are framed
        self.lu = None
        self.mac: str | None = None
        self.initiator = ""
        self.nexus = ""
        self.key: tuple[str, bytes, str] | None = None
        self.address = ""
        self.portal = ""
        self.hd = self.dd = False
        self.limit = LOGIN_MAX_DSL
        self.closed = False
        self.paused = False
        self.holding = False  # the last login step waits for the host lookup
        self.last_rx = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.phase = "login"
        self.read_once = False
        self.end_reason = "closed"
        self.corked: list[bytes] | None = None
        self.files = False  # what is to be written holds file data (iscsi_send.send_mixed)
        self.fd = -1  # the socket's descriptor (file data is sent on it directly)

    # -- asyncio ---------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("sockname") or ("", 0)
        self.address = peer[0]
        host = sock[0]
        self.portal = f"[{host}]:{sock[1]}" if ":" in host else f"{host}:{sock[1]}"
        raw = transport.get_extra_info("socket")
        if raw is not None:
            self.fd = raw.fileno()
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
            except OSError:
                pass
        if not self.server.admit(self):
            self.closed = True
            transport.abort()
            return
        self.login = self.server.new_login(self)
        self.timer = asyncio.get_running_loop().call_later(
            self.server.section.iscsi_login_timeout, self._login_expired)

    def connection_lost(self, exc) -> None:
        self._ended()

    def pause_writing(self) -> None:  # the initiator does not read: stop reading its commands
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.buf += data
        if not self.holding:
            started = time.perf_counter()
            self.cork()  # the answers to everything this read brought leave in one write
            try:
                self._frames()
            except Exception as exc:  # noqa: BLE001 - a bug for one PDU ends one connection
                log.exception("iscsi_pdu_failed", address=self.address, reason=str(exc))
                self._pdu_error("protocol", str(exc))
                self.close("internal_error")
            finally:
                self.uncork()
                if self.direct is not None:
                    self.direct.account(started)

    # -- framing -----------------------------------------------------------------------------
    def _frames(self) -> None:
        buf = self.buf
        pos, size = 0, len(buf)  # PDUs are cut at pos; the buffer is shortened once, after
        session, direct, hd, dd = self.session, self.direct, self.hd, self.dd  # set at login
        try:
            while not self.closed and not self.holding and size - pos >= pdu.BHS:
                op, flags, ahs_dsl, lun, itt, edtl, cmdsn, _, cdb = _COMMAND.unpack_from(buf,
                                                                                          pos)
                if not ahs_dsl and flags & 0xE0 == 0xC0 and op & 0x3F == 1 and not hd \
                        and session is not None:  # a READ-like SCSI Command: F, R, no W
                    if direct is not None and direct.serve(op & 0x40, lun, itt, edtl, cmdsn,
                                                           cdb):
                        pos += pdu.BHS
                        continue
                    if session.read_command(op & 0x40, lun, itt, edtl, cmdsn, cdb):
                        pos += pdu.BHS
                        continue
                    total = pdu.BHS
                else:
                    dsl = ahs_dsl & 0xFFFFFF
                    if dsl > self.limit:
                        self._pdu_error("too_long", f"data segment of {dsl} bytes, more than "
                                        f"the {self.limit} we declared")
                        self.close("protocol")
                        return
                    total = (pdu.BHS + (ahs_dsl >> 24) * 4 + (4 if hd else 0) + (-dsl & 3)
                             + dsl + (4 if dd and dsl else 0))
                    if size - pos < total:
                        return
                    if op & 0x3F == 0x05 and total == pdu.BHS + dsl and session is not None \
                            and not dd:  # a Data-Out without digests: its data copied once
                        session.receive(_data_out(buf, pos, dsl))
                        pos += total
                        continue
                raw = bytes(buf[pos:pos + total])
                pos += total
                self._pdu(raw)
        finally:
            if pos:
                del buf[:pos]
                if self.session is not None and not self.closed:
                    self._flush()  # once for every PDU this read brought

    def _pdu(self, raw: bytes) -> None:
        try:
            p = pdu.decode(raw, self.hd, self.dd)
        except DigestError as exc:
            m.ISCSI_DIGEST_ERRORS.labels(exc.which).inc()
            log.debug("iscsi_digest_error", which=exc.which, address=self.address)
            if exc.which == "header" or self.session is None:
                self.close("digest")
                return
            self._data_digest_error(raw)
            return
        except DecodeError as exc:
            self._pdu_error(exc.reason, str(exc))
            if self.session is None:
                self.close("protocol")
            else:
                self._reject(pdu.RejectReason.INVALID_PDU_FIELD, raw[:pdu.BHS])
            return
        if self.session is None:
            if not isinstance(p, LoginRequest):
                self._pdu_error("protocol", f"opcode {p.op:#04x} before the login finished")
                self.close("protocol")
                return
            self._login_step(p)
            return
        self.session.receive(p)  # _frames flushes what it leaves to do

    def _pdu_error(self, reason: str, detail: str) -> None:
        m.ISCSI_PDU_ERRORS.labels(m.pdu_error_reason(reason)).inc()
        log.debug("iscsi_pdu_error", reason=reason, detail=detail, address=self.address)

    def _data_digest_error(self, raw: bytes) -> None:
        """Reject it; a command waiting for this data ends with ABORTED COMMAND (CRC error)."""
        try:
            p = pdu.decode(raw[:-4], self.hd, False)
        except DecodeError:
            self.close("digest")
            return
        self._reject(pdu.RejectReason.DATA_DIGEST, raw[:pdu.BHS])
        task = self.session.tasks.get(getattr(p, "itt", -1))
        if task is not None and not task.executing:
            self.session.fail_task(task, fixed_sense(ABORTED_COMMAND, 0x47, 0x05))
            self._flush()

    def _reject(self, reason: int, bhs: bytes) -> None:
        s = self.session
        header, data = pdu.reject(s.numbers(), reason, bhs)
        self._write([pdu.frame(header, data, self.hd, self.dd)])

    # -- login -------------------------------------------------------------------------------
    def _login_step(self, req: LoginRequest) -> None:
        step = self.login.receive(req)
        if step.state == "failed":
            self._write([step.response])
            self.server.login_failed(self, step.reason, step.detail)
            self.close("login_failed")
            return
        if step.state == "continue":
            self._write([step.response])
            return
        self.holding = True  # the host lookup (Redis) decides before the answer goes out
        asyncio.get_running_loop().create_task(self._finish_login(req, step))

    async def _finish_login(self, req: LoginRequest, step: Step) -> None:
        try:
            refusal = await self.server.logged_in(self, self.login)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave a hung login
            log.exception("iscsi_login_failed", reason=str(exc))
            refusal = ("export_down", f"internal error: {exc}")
        if self.closed:
            return
        if refusal is not None:
            reason, detail = refusal
            status = {"no_host": (2, 2), "not_allowed": (2, 2),
                      "unknown_target": (2, 3)}.get(reason, (3, 1))
            failed = self.login.refuse(req, status, reason, detail)
            self._write([failed.response])
            self.server.login_failed(self, reason, detail)
            self.close("login_failed")
            return
        self._write([step.response])
        self.holding = False
        self._frames()

    def start_session(self, session: Session) -> None:
        self.session = session
        params = session.p
        self.hd, self.dd = params.header_digest, params.data_digest
        self.limit = params.max_recv_dsl
        self.phase = "discovery" if session.discovery else "normal"
        if self.export is not None and not self.dd and not session.discovery:
            self.direct = DirectReads(self)
        if self.timer is not None:  # the login's: it would hold this connection until it ran out
            self.timer.cancel()
        self._arm_idle()

    def _login_expired(self) -> None:
        if self.session is None and not self.closed:
            self.server.login_failed(self, "timeout", "the login did not finish in "
                                     f"{self.server.section.iscsi_login_timeout:g}s")
            self.close("login_timeout")

    def _arm_idle(self) -> None:
        section = self.server.section
        period = min(x for x in (section.iscsi_nop_interval, section.iscsi_idle_timeout, 3600)
                     if x > 0)
        self.timer = asyncio.get_running_loop().call_later(period, self._idle_check)

    def _idle_check(self) -> None:
        if self.closed or self.session is None:
            return
        section = self.server.section
        quiet = time.monotonic() - self.last_rx
        if section.iscsi_idle_timeout and quiet >= section.iscsi_idle_timeout:
            log.info("iscsi_idle_timeout", address=self.address, initiator=self.initiator,
                     seconds=round(quiet))
            self.close("idle")
            return
        if section.iscsi_nop_interval and quiet >= section.iscsi_nop_interval \
                and not self.session.executing():
            self.session.ping()
            self._flush()
        self._arm_idle()

    # -- the full feature phase ----------------------------------------------------------------
    def _flush(self) -> None:
        out = self.session.drain()
        if out.errors:
            for label in out.errors:
                self._pdu_error(label, "session")
        if out.files:
            self.files = True
        if out.send:
            self._write(out.send)
        if out.execute:
            jobs: list = []  # one hand-over to the I/O thread (one wake-up) for all of them
            for task in out.execute:
                self.server.execute(self, task, jobs)
            if jobs:
                self.export.worker.submit(jobs)
        for kind, lun in out.resets:
            self.server.reset(self, kind, lun)
        if out.close:
            self.close(out.close)

    def completed(self, task: Task, status: int, data_in: bytes, sense: bytes, overflow: int,
                  underflow: int, flush: bool = True) -> None:
        """A task's result; with ``flush`` False the caller calls :meth:`flush` once after a
        batch of them."""
        if self.closed or self.session is None:
            return
        self.session.complete(task, status, data_in, sense, overflow, underflow)
        if flush:
            self._flush()

    def flush(self) -> None:
        if not self.closed and self.session is not None:
            self._flush()

    def _write(self, frames: list[bytes]) -> None:
        if self.transport is None or self.closed:
            return
        if self.corked is not None:  # completions of one batch leave in one send
            self.corked += frames
            return
        try:
            if self.files:
                self.files = False
                send_mixed(self.transport, self.fd, frames)
            else:
                send_direct(self.transport, self.fd, frames)
        except OSError as exc:
            log.debug("iscsi_send_failed", address=self.address, reason=str(exc))
            self.close("closed")

    def cork(self) -> None:
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        frames, self.corked = self.corked, None
        if frames:
            self._write(frames)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.end_reason = reason
        self.uncork()  # answers held for one write (a Reject, a login failure) go first
        self.closed = True
        if self.transport is not None:
            self.transport.close()  # what is written still goes out
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.ended(self)
