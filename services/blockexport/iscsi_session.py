"""The full feature phase of one iSCSI connection (RFC 7143, error recovery level 0, one
connection per session). Pure: it is handed decoded PDUs and SCSI results, and leaves what to
do in :attr:`Session.out` (PDUs to send, tasks to execute, the connection to close).

- Ordering: non-immediate PDUs are taken in CmdSN order within the window
  [ExpCmdSN, MaxCmdSN] (MaxCmdSN = ExpCmdSN + ``window`` - 1); one outside it is dropped as
  the RFC says (4.2.2.1); one ahead of ExpCmdSN waits for the gap. Immediate PDUs go at once.
- SCSI Command: a read is executed at once; its data goes back in Data-In PDUs of at most the
  initiator's MaxRecvDataSegmentLength, a sequence ending (F) every MaxBurstLength, the status
  in the last one when there is no sense data (else a SCSI Response with the sense). A write
  collects its data first: immediate data (ImmediateData), unsolicited Data-Out up to
  FirstBurstLength (InitialR2T=No), then R2Ts of at most MaxBurstLength each, at most
  MaxOutstandingR2T at a time, until the CDB's transfer length (or the expected length, if
  smaller) is there; then it is executed. Nothing is written before all its data is in (a
  dropped connection leaves no half-applied write).
- Task management: ABORT TASK, ABORT TASK SET, LOGICAL UNIT RESET, TARGET WARM RESET; the
  response waits until the tasks it ends are no longer executing. Others: "not supported".
- Logout closes the connection after the tasks before it are done.
- NOP-Out with a tag is answered; :meth:`ping` makes our own NOP-In, and no answer to it ever
  ends a session (iPXE never answers one).
- Reject (11.17) for PDUs that break the protocol; SNACK (error recovery level 0) rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from services.blockexport import iscsi_pdu as pdu
from services.blockexport.iscsi_login import Params, TargetConfig, send_targets
from services.blockexport.iscsi_pdu import (
    RESERVED_TAG,
    DataOut,
    LogoutRequest,
    NopOut,
    Numbers,
    RejectReason,
    ScsiCommand,
    TaskMgmtRequest,
    TextRequest,
    Tmf,
    TmfResponse,
)

MASK = 0xFFFFFFFF
# Data-Out one command may carry: twice the logical unit's transfer limit (8 MiB; COMPARE AND
# WRITE carries two of them). A write announcing more is refused before its buffer is made (one
# WRITE (16) with a large block count and EDTL would otherwise allocate up to 4 GiB).
MAX_DATA_OUT = 16 << 20
ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB = 0x05, 0x24
GOOD, CHECK_CONDITION = 0x00, 0x02
SUPPORTED_TMF = {Tmf.ABORT_TASK, Tmf.ABORT_TASK_SET, Tmf.LOGICAL_UNIT_RESET,
                 Tmf.TARGET_WARM_RESET}


def sn_lt(a: int, b: int) -> bool:
    """Serial number arithmetic (RFC 1982, 32 bits): a < b."""
    return a != b and ((b - a) & MASK) < 0x80000000


def lun_number(field: int) -> int:
    """The LUN of an 8-byte LUN field (SAM: peripheral or flat addressing, first level)."""
    return (field >> 48) & 0x3FFF


def lun_field(lun: int) -> int:
    return ((lun & 0x3FFF) | (0x4000 if lun > 255 else 0)) << 48


def fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    """18 bytes of fixed-format sense data (SPC 4.5.3): for the transport's own failures."""
    return bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])


@dataclasses.dataclass
class R2t:
    ttt: int
    offset: int  # next byte expected
    end: int
    datasn: int = 0


class Task:
    """One SCSI command of the session (a plain class with slots: one is made per command,
    and a dataclass with a default factory costs about a microsecond more)."""

    __slots__ = ("itt", "lun", "cdb", "read", "write", "edtl", "cmdsn", "needed", "buffer",
                 "unsolicited", "unsol_next", "unsol_datasn", "solicit_from", "received",
                 "r2ts", "r2tsn", "executing", "aborted")

    def __init__(self, itt: int, lun: int, cdb: bytes, read: bool, write: bool, edtl: int,
                 cmdsn: int) -> None:
        self.itt, self.lun, self.cdb, self.read, self.write = itt, lun, cdb, read, write
        self.edtl, self.cmdsn = edtl, cmdsn
        self.needed = 0  # bytes of data-out to collect
        self.buffer: bytearray | None = None
        self.unsolicited = 0  # end of the unsolicited range still open (0: none open)
        self.unsol_next = self.unsol_datasn = 0
        self.solicit_from = 0  # next offset to ask for with an R2T
        self.received = 0
        self.r2ts: dict[int, R2t] = {}
        self.r2tsn = 0
        self.executing = self.aborted = False

    @property
    def data_out(self) -> bytes:
        """The Data-Out collected (the buffer itself, not a copy: nothing changes it once the
        task executes)."""
        return self.buffer if self.buffer is not None else b""  # type: ignore[return-value]


class Out:
    """What the caller must do after a call into :class:`Session` (a plain class: one is
    made per call, and a dataclass's default factories cost ~1.5 us)."""

    __slots__ = ("send", "execute", "resets", "close", "logout", "errors", "files")

    def __init__(self) -> None:
        self.send: list = []  # PDUs (bytes, memoryviews, iscsi_worker.FileData) to send
        self.execute: list[Task] = []
        self.resets: list[tuple[str, int]] = []  # (kind, lun)
        self.close = ""  # non-empty: close the connection (after sending), with this reason
        self.logout = False  # the close is a logout
        self.errors: list[str] = []  # PDU error labels
        self.files = False  # ``send`` holds file data to sendfile

@dataclasses.dataclass
class Deferred:
    waiting: set[int]  # ITTs of executing tasks it waits for
    build: Callable[[], list[bytes]]
    close: str = ""


class Session:
    def __init__(self, params: Params, *, statsn: int, expcmdsn: int, window: int,
                 discovery: bool, target: TargetConfig | None,
                 visible: Callable[[], list[TargetConfig]], portal: str, portal_group: int,
                 wanted: Callable[[bytes], int | None], cid: int = 0,
                 max_data_out: int = MAX_DATA_OUT) -> None:
        self.p = params
        self.max_data_out = max_data_out
        self.statsn = statsn
        self.expcmdsn = expcmdsn
        self.window = window
        self.discovery = discovery
        self.target = target
        self.visible = visible
        self.portal = portal
        self.portal_group = portal_group
        self.wanted = wanted
        self.cid = cid
        self.tasks: dict[int, Task] = {}
        self.ahead: dict[int, pdu.Pdu] = {}  # CmdSN -> PDU waiting for a gap
        self.deferred: list[Deferred] = []
        self.next_ttt = 1
        self.text_left: tuple[int, bytes] | None = None  # (ttt, rest of a long text answer)
        self.text_in = b""
        self.out = Out()
        self.closing = False

    # -- sequence numbers ----------------------------------------------------------------------
    @property
    def maxcmdsn(self) -> int:
        return (self.expcmdsn + self.window - 1) & MASK

    def numbers(self, advance: bool = True) -> Numbers:
        n = Numbers(self.statsn, self.expcmdsn, self.maxcmdsn)
        if advance:
            self.statsn = (self.statsn + 1) & MASK
        return n

    def drain(self) -> Out:
        out, self.out = self.out, Out()
        return out

    def _ttt(self) -> int:
        ttt = self.next_ttt
        self.next_ttt = (self.next_ttt + 1) & 0x7FFFFFFF or 1
        return ttt

    def _reject(self, reason: int, bhs: bytes, label: str) -> None:
        header, data = pdu.reject(self.numbers(), reason, bhs)
        self.out.send.append(pdu.frame(header, data, self.p.header_digest, self.p.data_digest))
        self.out.errors.append(label)

    def _frame(self, header: bytes, data=b"") -> bytes:
        return pdu.frame(header, data, self.p.header_digest, self.p.data_digest)

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, p: pdu.Pdu) -> None:
        if self.closing:
            return
        if isinstance(p, DataOut):
            self._data_out(p)
            return
        if isinstance(p, pdu.SnackRequest):
            self._reject(RejectReason.PROTOCOL_ERROR, p.bhs, "snack")
            return
        if isinstance(p, pdu.LoginRequest):
            self._reject(RejectReason.PROTOCOL_ERROR, p.bhs, "login_in_session")
            return
        if not isinstance(p, (ScsiCommand, NopOut, TaskMgmtRequest, TextRequest,
                              LogoutRequest)):
            self._reject(RejectReason.COMMAND_NOT_SUPPORTED, p.bhs, "unknown_opcode")
            return
        cmdsn = p.cmdsn
        if p.immediate:
            self._dispatch(p)
            return
        if cmdsn == self.expcmdsn:
            self.expcmdsn = (self.expcmdsn + 1) & MASK
            self._dispatch(p)
            while self.expcmdsn in self.ahead:
                nxt = self.ahead.pop(self.expcmdsn)
                self.expcmdsn = (self.expcmdsn + 1) & MASK
                self._dispatch(nxt)
            return
        if sn_lt(self.expcmdsn, cmdsn) and not sn_lt(self.maxcmdsn, cmdsn):
            if cmdsn not in self.ahead:
                self.ahead[cmdsn] = p
            return
        self.out.errors.append("cmdsn")  # outside the window: silently ignored (4.2.2.1)

    def _dispatch(self, p: pdu.Pdu) -> None:
        if isinstance(p, ScsiCommand):
            self._command(p)
        elif isinstance(p, NopOut):
            self._nop_out(p)
        elif isinstance(p, TaskMgmtRequest):
            self._task_mgmt(p)
        elif isinstance(p, TextRequest):
            self._text(p)
        elif isinstance(p, LogoutRequest):
            self._logout(p)

    # -- SCSI commands ---------------------------------------------------------------------------
    def read_command(self, immediate: int, lun: int, itt: int, edtl: int, cmdsn: int,
                     cdb: bytes) -> bool:
        """The common case of a SCSI Command without data to collect (F and R set, W clear,
        no AHS, no data segment, no header digest; the connection checked), taken straight
        from the BHS fields: in order, not immediate, nothing waiting for a gap, a new ITT. It
        does what :meth:`receive` would; anything else returns False and goes that way."""
        if not self.next_plain(immediate, itt, cmdsn):
            return False
        self.expcmdsn = (cmdsn + 1) & MASK
        task = Task(itt, (lun >> 48) & 0x3FFF, cdb, True, False, edtl, cmdsn)
        self.tasks[itt] = task
        task.executing = True
        self.out.execute.append(task)
        return True

    def next_plain(self, immediate: int, itt: int, cmdsn: int) -> bool:
        """Whether a SCSI Command may take the short way (:meth:`read_command`,
        :meth:`read_done`): in order, not immediate, nothing waiting for a gap, a new ITT."""
        return not (immediate or cmdsn != self.expcmdsn or self.ahead or self.closing
                    or self.discovery or itt in self.tasks or itt == RESERVED_TAG)

    def read_done(self, buf: bytearray, itt: int, lun: int, underflow: int) -> None:
        """A READ that :meth:`next_plain` let through, executed at once by the caller, its
        data in ``buf`` after 48 bytes left for the header: answered with one Data-In that
        carries the GOOD status (no Task, no separate SCSI Response)."""
        self.expcmdsn = exp = (self.expcmdsn + 1) & MASK
        pdu.data_in_status_into(buf, itt, lun, self.statsn, exp, (exp + self.window - 1) & MASK,
                                underflow)
        self.statsn = (self.statsn + 1) & MASK
        self.out.send.append(buf)

    def _command(self, c: ScsiCommand) -> None:
        if self.discovery:
            self._reject(RejectReason.PROTOCOL_ERROR, c.bhs, "command_in_discovery")
            return
        if c.itt in self.tasks or c.itt == RESERVED_TAG:
            self._reject(RejectReason.TASK_IN_PROGRESS if c.itt in self.tasks
                         else RejectReason.INVALID_PDU_FIELD, c.bhs, "bad_itt")
            return
        p = self.p
        task = Task(c.itt, lun_number(c.lun), c.cdb, c.read, c.write, c.edtl, c.cmdsn)
        if c.data and (not c.write or not p.immediate_data or len(c.data) > c.edtl
                       or len(c.data) > p.first_burst):
            self._reject(RejectReason.PROTOCOL_ERROR, c.bhs, "immediate_data")
            return
        if not c.final and (p.initial_r2t or not c.write):
            self._reject(RejectReason.PROTOCOL_ERROR, c.bhs, "unsolicited_data")
            return
        self.tasks[c.itt] = task
        if not c.write or c.edtl == 0:
            self._execute(task)
            return
        wanted = self.wanted(c.cdb)
        task.needed = c.edtl if wanted is None else min(c.edtl, wanted)
        if task.needed > self.max_data_out:  # the data that still comes is rejected
            self.fail_task(task, fixed_sense(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, 0))
            return
        task.buffer = bytearray(task.needed)
        self._store(task, 0, c.data)
        task.unsol_next = len(c.data)
        if not c.final:
            task.unsolicited = min(p.first_burst, c.edtl)
            return
        task.solicit_from = len(c.data)
        self._solicit(task)

    def _store(self, task: Task, offset: int, data: bytes) -> None:
        if offset < task.needed and data:
            chunk = data[:task.needed - offset]
            task.buffer[offset:offset + len(chunk)] = chunk
            task.received += len(chunk)

    def _solicit(self, task: Task) -> None:
        """Send R2Ts for what is still missing (MaxOutstandingR2T at a time), or execute."""
        p = self.p
        while len(task.r2ts) < p.max_outstanding_r2t and task.solicit_from < task.needed:
            length = min(p.max_burst, task.needed - task.solicit_from)
            r = R2t(self._ttt(), task.solicit_from, task.solicit_from + length)
            task.r2ts[r.ttt] = r
            header = pdu.r2t(self.numbers(advance=False), task.itt, lun_field(task.lun), r.ttt,
                             task.r2tsn, r.offset, length)
            task.r2tsn += 1
            task.solicit_from += length
            self.out.send.append(self._frame(header))
        if not task.r2ts and task.solicit_from >= task.needed and not task.unsolicited:
            self._execute(task)

    def _data_out(self, d: DataOut) -> None:
        task = self.tasks.get(d.itt)
        if task is None or task.executing or not task.write:
            self._reject(RejectReason.PROTOCOL_ERROR, d.bhs, "data_out_unknown_task")
            return
        if d.ttt == RESERVED_TAG:
            if not task.unsolicited or d.offset != task.unsol_next \
                    or d.offset + len(d.data) > task.unsolicited \
                    or d.datasn != task.unsol_datasn:
                self._reject(RejectReason.PROTOCOL_ERROR, d.bhs, "data_out_unsolicited")
                return
            self._store(task, d.offset, d.data)
            task.unsol_next += len(d.data)
            task.unsol_datasn += 1
            if d.final:
                task.unsolicited = 0
                task.solicit_from = task.unsol_next
                self._solicit(task)
            return
        r = task.r2ts.get(d.ttt)
        if r is None or d.offset != r.offset or d.offset + len(d.data) > r.end \
                or d.datasn != r.datasn:
            self._reject(RejectReason.PROTOCOL_ERROR, d.bhs, "data_out_sequence")
            return
        self._store(task, d.offset, d.data)
        r.offset += len(d.data)
        r.datasn += 1
        if r.offset >= r.end or d.final:
            del task.r2ts[d.ttt]
            if r.offset < r.end:  # F before the end of what we asked for: ask again
                task.solicit_from = min(task.solicit_from, r.offset)
            self._solicit(task)

    def _execute(self, task: Task) -> None:
        task.executing = True
        self.out.execute.append(task)

    def complete(self, task: Task, status: int, data_in: bytes = b"", sense: bytes = b"",
                 overflow: int = 0, underflow: int = 0) -> None:
        """A task's SCSI result: its Data-In and status go out (unless it was aborted)."""
        self.tasks.pop(task.itt, None)
        task.executing = False
        if not task.aborted and not self.closing:
            self._respond(task, status, data_in, sense, overflow, underflow)
        if self.deferred:
            for d in self.deferred:
                d.waiting.discard(task.itt)
            self._run_deferred()

    def _respond(self, task: Task, status: int, data_in: bytes, sense: bytes, overflow: int,
                 underflow: int) -> None:
        p = self.p
        is_file = False
        if not task.read:
            data = memoryview(b"")
        elif hasattr(data_in, "part"):  # file data (sendfile), never longer than the EDTL
            data = data_in
            self.out.files = is_file = True
        else:
            data = memoryview(data_in)[:task.edtl]
        send = self.out.send
        lun = lun_field(task.lun)
        datasn = 0
        if len(data):
            step = p.max_send_dsl
            burst = p.max_burst
            total = len(data)
            collapse = not sense
            offset = 0
            while offset < total:
                length = min(step, total - offset, burst - offset % burst)
                end = offset + length
                last = end >= total
                final = last or end % burst == 0
                if last and collapse:
                    header = pdu.data_in(self.numbers(), task.itt, lun, datasn, offset, length,
                                         final=True, status=status, overflow=overflow,
                                         underflow=underflow)
                else:
                    header = pdu.data_in(self.numbers(advance=False), task.itt, lun, datasn,
                                         offset, length, final=final)
                if is_file:  # whole blocks: no padding (no data digest: iscsi_worker)
                    send.append(self._frame(header))
                    send.append(data.part(offset, end))
                elif p.header_digest or p.data_digest:
                    send.append(self._frame(header, data[offset:end]))
                else:  # header, data and padding as they are: no copy of the data
                    send.append(header)
                    send.append(data[offset:end])
                    if length & 3:
                        send.append(bytes(4 - (length & 3)))
                datasn += 1
                offset = end
            if collapse:
                return
        header, segment = pdu.scsi_response(self.numbers(), task.itt, status,
                                            overflow=overflow, underflow=underflow, sense=sense,
                                            expdatasn=datasn if task.read else task.r2tsn)
        send.append(self._frame(header, segment))

    def fail_task(self, task: Task, sense: bytes) -> None:
        self.complete(task, CHECK_CONDITION, sense=sense)

    # -- NOP ---------------------------------------------------------------------------------------
    def _nop_out(self, n: NopOut) -> None:
        if n.itt == RESERVED_TAG:
            return  # an answer to our ping, or a ping that wants none
        header = pdu.nop_in(self.numbers(), n.itt, RESERVED_TAG, n.lun, n.data)
        self.out.send.append(self._frame(header, n.data))

    def ping(self) -> None:
        """Our own NOP-In (it wants an answer; none coming is never held against anyone)."""
        header = pdu.nop_in(self.numbers(advance=False), RESERVED_TAG, self._ttt())
        self.out.send.append(self._frame(header))

    # -- task management ------------------------------------------------------------------------
    def _task_mgmt(self, t: TaskMgmtRequest) -> None:
        fn = t.function
        n_lun = lun_number(t.lun)
        if self.discovery or fn not in SUPPORTED_TMF:
            self._tmf_answer(t, TmfResponse.NOT_SUPPORTED if not self.discovery
                             else TmfResponse.REJECTED, set())
            return
        if fn == Tmf.ABORT_TASK:
            task = self.tasks.get(t.ref_itt)
            if task is None:
                waiting = self.ahead.get(t.ref_cmdsn)
                if waiting is not None and getattr(waiting, "itt", None) == t.ref_itt:
                    del self.ahead[t.ref_cmdsn]  # received, waiting for a gap: dropped
                    response = TmfResponse.COMPLETE
                elif self._window(t.ref_cmdsn) and sn_lt(t.ref_cmdsn, t.cmdsn):
                    response = TmfResponse.COMPLETE  # never received (4.2.3.3)
                else:
                    response = TmfResponse.NO_TASK
                self._tmf_answer(t, response, set())
                return
            self._tmf_answer(t, TmfResponse.COMPLETE, self._abort([task]))
            return
        tasks = [x for x in self.tasks.values()
                 if fn == Tmf.TARGET_WARM_RESET or x.lun == n_lun]
        waiting = self._abort(tasks)
        if fn == Tmf.LOGICAL_UNIT_RESET:
            self.out.resets.append(("lun", n_lun))
        elif fn == Tmf.TARGET_WARM_RESET:
            self.out.resets.append(("target_warm", n_lun))
        self._tmf_answer(t, TmfResponse.COMPLETE, waiting)

    def _window(self, sn: int) -> bool:
        return not sn_lt(sn, self.expcmdsn) and not sn_lt(self.maxcmdsn, sn)

    def _abort(self, tasks: list[Task]) -> set[int]:
        """End ``tasks``: those still collecting data are dropped; executing ones finish but
        are not answered. Returns the ITTs to wait for."""
        waiting = set()
        for task in tasks:
            task.aborted = True
            if task.executing:
                waiting.add(task.itt)
            else:
                self.tasks.pop(task.itt, None)
        return waiting

    def _tmf_answer(self, t: TaskMgmtRequest, response: int, waiting: set[int]) -> None:
        def build() -> list[bytes]:
            return [self._frame(pdu.task_mgmt_response(self.numbers(), t.itt, response))]
        self.deferred.append(Deferred(waiting, build))
        self._run_deferred()

    def _run_deferred(self) -> None:
        while self.deferred and not self.deferred[0].waiting:
            d = self.deferred.pop(0)
            self.out.send += d.build()
            if d.close:
                self.out.close = d.close
                self.out.logout = True
                self.closing = True

    # -- text and logout ------------------------------------------------------------------------
    def _text(self, t: TextRequest) -> None:
        if self.text_left is not None and t.ttt == self.text_left[0]:
            self._text_send(t.itt, self.text_left[1])
            return
        self.text_left = None
        if t.cont:
            self.text_in += t.data
            if len(self.text_in) > pdu.MAX_TEXT:
                self.text_in = b""
                self._reject(RejectReason.PROTOCOL_ERROR, t.bhs, "text_too_long")
                return
            header = pdu.text_response(self.numbers(), t.itt, self._ttt(), final=False,
                                       cont=False, data=b"")
            self.out.send.append(self._frame(header))
            return
        text, self.text_in = self.text_in + t.data, b""
        try:
            pairs = pdu.parse_text(text)
        except pdu.DecodeError:
            self._reject(RejectReason.PROTOCOL_ERROR, t.bhs, "bad_text")
            return
        answers: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "SendTargets":
                if self.discovery:
                    answers += send_targets(value, self.visible(), self.portal,
                                            self.portal_group)
                elif self.target is not None and value in ("", self.target.iqn):
                    answers += send_targets("All", [self.target], self.portal,
                                            self.portal_group)
                else:
                    answers += send_targets(value if value != "All" else "",
                                            [self.target] if self.target else [],
                                            self.portal, self.portal_group)
            elif key == "MaxRecvDataSegmentLength":
                try:
                    n = int(value)
                except ValueError:
                    n = 0
                if 512 <= n < 2**24:
                    self.p = dataclasses.replace(self.p, max_send_dsl=n)
                else:
                    answers.append((key, "Reject"))
            elif key.startswith(("X-", "X#")):
                answers.append((key, "NotUnderstood"))
            elif key in ("HeaderDigest", "DataDigest", "MaxConnections", "InitialR2T",
                         "ImmediateData", "MaxBurstLength", "FirstBurstLength",
                         "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T",
                         "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel",
                         "SessionType", "InitiatorName", "TargetName", "AuthMethod"):
                answers.append((key, "Reject"))  # leading-only or login-only keys
            else:
                answers.append((key, "NotUnderstood"))
        self._text_send(t.itt, pdu.format_text(answers))

    def _text_send(self, itt: int, data: bytes) -> None:
        step = self.p.max_send_dsl
        if len(data) > step:
            ttt = self._ttt()
            self.text_left = (ttt, data[step:])
            header = pdu.text_response(self.numbers(), itt, ttt, final=False, cont=True,
                                       data=data[:step])
            self.out.send.append(self._frame(header, data[:step]))
            return
        self.text_left = None
        header = pdu.text_response(self.numbers(), itt, RESERVED_TAG, final=True, cont=False,
                                   data=data)
        self.out.send.append(self._frame(header, data))

    def _logout(self, lo: LogoutRequest) -> None:
        if lo.reason == 2:
            response, close = 2, ""  # connection recovery: not at error recovery level 0
        elif lo.reason == 1 and lo.cid != self.cid:
            response, close = 1, ""
        else:
            response, close = 0, "logout"
        waiting = set()
        if close:
            waiting = self._abort([t for t in self.tasks.values()])

        def build() -> list[bytes]:
            return [self._frame(pdu.logout_response(self.numbers(), lo.itt, response))]
        self.deferred.append(Deferred(waiting, build, close))
        self._run_deferred()

    # -- the connection ends --------------------------------------------------------------------
    def executing(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.executing]

