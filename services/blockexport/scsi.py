"""The SCSI block command engine behind the iSCSI target (SAM-5, SPC-4, SBC-3).

The transport decodes PDUs and calls :meth:`LogicalUnit.execute` with a :class:`Request` (the
CDB, the LUN, the I_T nexus, the Data-Out bytes, the Expected Data Transfer Length) from an
I/O thread; it gets a :class:`Response` (status, Data-In already cut to the EDTL, sense data,
residual counts as RFC 7143 11.4.5 says). A command never raises: an unknown opcode is
INVALID COMMAND OPERATION CODE, a bad field INVALID FIELD IN CDB with its field pointer, a
storage error MEDIUM ERROR or SPACE ALLOCATION FAILED, an engine bug HARDWARE ERROR / INTERNAL
TARGET FAILURE (logged).

One :class:`LogicalUnit` per export holds what every session of it shares: SPC-2 and
persistent reservations (:mod:`scsi_pr`), unit attention conditions per I_T nexus, and a write
lock per disk view that makes COMPARE AND WRITE atomic against every other write. The pure
parts (CDB table, replies, sense) are in :mod:`scsi_cdb`, :mod:`scsi_pages`, :mod:`scsi_sense`;
the medium commands in :mod:`scsi_io`, EXTENDED COPY in :mod:`scsi_xcopy`.
docs/blockexport.md ("iSCSI: SCSI commands") describes the command set, WCE and the UNMAP
contract.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
import threading
from collections.abc import Sequence
from typing import NamedTuple

from services.blockexport import scsi_cdb as op, scsi_io, scsi_pages, scsi_xcopy
from services.blockexport.scsi_cdb import check_mask, data_out_length, lookup
from services.blockexport.scsi_pages import Unit, mode_pages
from services.blockexport.scsi_pr import Conflict, Reservations
from services.blockexport.scsi_sense import (
    BUS_DEVICE_RESET,
    CHECK_CONDITION,
    GOOD,
    HARDWARE_ERROR,
    ILLEGAL_REQUEST,
    INTERNAL_TARGET_FAILURE,
    INVALID_COMMAND_OPERATION_CODE,
    LOGICAL_UNIT_NOT_SUPPORTED,
    MODE_PARAMETERS_CHANGED,
    NO_ADDITIONAL,
    NO_SENSE,
    PARAMETER_LIST_LENGTH_ERROR,
    POWER_ON_RESET,
    RESERVATION_CONFLICT,
    UNIT_ATTENTION,
    Check,
    fixed_sense,
    invalid_cdb,
    invalid_parameter,
    write_protected,
)
from services.blockexport.storage import Disk

log = logging.getLogger("bootyard.blockexport.scsi")

__all__ = ["LogicalUnit", "Request", "Response", "data_out_length", "no_such_lun",
           "report_luns", "unmapped_mode"]


# Request and Response are immutable named tuples rather than frozen dataclasses: the same
# constructor (positional or keyword) and attributes, at a third of the cost per command
# (a frozen dataclass's __init__ costs ~2-4 us a command; measured in docs/blockexport.md).
class Request(NamedTuple):
    cdb: bytes  # as received (16 bytes in iSCSI, trailing zeros allowed)
    lun: int
    initiator: str  # the I_T nexus' initiator port: "<iqn>,i,0x<isid>"
    data_out: bytes  # every Data-Out byte the initiator sent for this command
    expected_length: int  # the Expected Data Transfer Length
    read: bool  # R bit
    write: bool  # W bit


class Response(NamedTuple):
    status: int
    data_in: bytes = b""  # already cut to expected_length
    sense: bytes = b""  # fixed-format sense data for CHECK CONDITION
    overflow: int = 0  # residual overflow: the command would have moved this much more
    underflow: int = 0  # residual underflow: it moved this much less than expected_length


_RW10 = struct.Struct(">BBIBHB")  # READ/WRITE (10): opcode, flags, LBA, group, blocks, control
_RW16 = struct.Struct(">BBQIBB")  # READ/WRITE (16): opcode, flags, LBA, blocks, group, control
FUA = 0x08  # byte 1 of READ/WRITE (10)/(12)/(16): force unit access


class _Synced:
    """A disk a SYNCHRONIZE CACHE just synced, nothing written since: the next one's flush
    has nothing to do (every other call goes to the disk)."""

    def __init__(self, disk: Disk) -> None:
        self._disk = disk

    def __getattr__(self, name: str):
        return getattr(self._disk, name)

    def flush(self) -> None:
        pass


def unmapped_mode(disk: Disk) -> str | None:
    """What an unmapped block of this disk reads back as (``LogicalUnit(unmapped=...)``)."""
    return getattr(disk, "unmapped", None)


# Commands a nexus may send while another holds a RESERVE (6)/(10) (SPC-2 5.5.1).
SPC2_ALLOWED = frozenset((op.INQUIRY, op.REPORT_LUNS, op.REQUEST_SENSE, op.RELEASE_6,
                          op.RELEASE_10, op.MAINTENANCE_IN))
# Commands a pending unit attention does not stop (SAM-5 5.14, SPC-4 5.11).
UA_EXEMPT = frozenset((op.INQUIRY, op.REPORT_LUNS, op.REQUEST_SENSE))
MEDIUM_WRITES = (op.WRITES | op.WRITE_VERIFIES | op.WRITE_SAMES | op.SYNCS
                 | {op.UNMAP, op.COMPARE_AND_WRITE, op.ORWRITE_16, op.EXTENDED_COPY,
                    op.MODE_SELECT_6, op.MODE_SELECT_10, op.START_STOP_UNIT, op.PREVENT_ALLOW})
MEDIUM_READS = (op.READS | op.VERIFIES | op.PRE_FETCHES
                | {op.MODE_SENSE_6, op.MODE_SENSE_10})
WRITE_COMMANDS = (op.WRITES | op.WRITE_VERIFIES | op.WRITE_SAMES
                  | {op.UNMAP, op.COMPARE_AND_WRITE, op.ORWRITE_16, op.EXTENDED_COPY})


def _residuals(cdb: bytes, block_size: int, expected: int, data: bytes,
               outgoing: int | None) -> tuple[bytes, int, int]:
    """(data cut to the EDTL, overflow, underflow): RFC 7143 11.4.5."""
    moved = outgoing if outgoing else len(data)
    data = data[:expected]
    if moved > expected:
        return data, moved - expected, 0
    return data, 0, expected - moved


def _response(req: Request, block_size: int, status: int, data: bytes = b"",
              sense: bytes = b"") -> Response:
    outgoing = data_out_length(req.cdb, block_size)
    data, over, under = _residuals(req.cdb, block_size, req.expected_length, data, outgoing)
    return Response(status, data, sense, over, under)


def no_such_lun(req: Request) -> Response:
    """A LUN that is not there: INQUIRY says so (qualifier 011b), REPORT LUNS lists none,
    REQUEST SENSE says LOGICAL UNIT NOT SUPPORTED, anything else is refused with that sense."""
    cdb = req.cdb
    if cdb and cdb[0] == op.INQUIRY and len(cdb) >= 6:
        if cdb[1] & 0x01 or cdb[2]:
            data = b""
            check = invalid_cdb(1 if cdb[1] & 0x01 else 2)
            return _response(req, 512, CHECK_CONDITION, data, check.sense())
        standard = bytearray(36)
        standard[0] = 0x7F  # qualifier 011b, device type 1Fh: no logical unit here
        standard[2], standard[3], standard[4] = 0x06, 0x12, 31
        allocation = int.from_bytes(cdb[3:5], "big")
        return _response(req, 512, GOOD, bytes(standard[:allocation]))
    if cdb and cdb[0] == op.REPORT_LUNS:
        return report_luns([], req)
    if cdb and cdb[0] == op.REQUEST_SENSE and len(cdb) >= 6:
        sense = fixed_sense(ILLEGAL_REQUEST, LOGICAL_UNIT_NOT_SUPPORTED)
        return _response(req, 512, GOOD, sense[:cdb[4]])
    return _response(req, 512, CHECK_CONDITION,
                     sense=fixed_sense(ILLEGAL_REQUEST, LOGICAL_UNIT_NOT_SUPPORTED))


def report_luns(luns: list[int], req: Request) -> Response:
    try:
        allocation = scsi_pages.check_report_luns(req.cdb.ljust(12, b"\0"))
    except Check as check:
        return _response(req, 512, CHECK_CONDITION, sense=check.sense())
    return _response(req, 512, GOOD, scsi_pages.report_luns_data(luns)[:allocation])


class LogicalUnit:
    """One export's logical unit, shared by all its sessions."""

    def __init__(self, *, name: str, serial: str, size_bytes: int, readonly: bool,
                 block_size: int = 512, unmapped: str | None = None,
                 physical_block: int = 4096, vendor: str = "BOOTYARD",
                 product: str = "blockexport", revision: str = "0001",
                 max_transfer_bytes: int = 8 << 20, write_cache: bool = False) -> None:
        cache = write_cache and not readonly
        self.unit = Unit(name=name, serial=serial, size_bytes=size_bytes,
                         block_size=block_size, readonly=readonly,
                         unmapped=None if readonly else unmapped,
                         physical_block=physical_block, vendor=vendor, product=product,
                         revision=revision, max_transfer_bytes=max_transfer_bytes,
                         write_cache=cache, write_cache_default=cache)
        self.luns: list[int] = [0]  # what REPORT LUNS answers (the transport may set it)
        self._lock = threading.Lock()  # reservations, unit attentions, nexuses
        self.reservations = Reservations()
        self._attention: dict[str, list[tuple[int, int]]] = {}
        self._nexuses: set[str] = set()
        self._write_locks: dict[object, threading.Lock] = {}
        self._copies: dict[str, dict[int, bytes]] = {}  # held EXTENDED COPY results, by nexus

    # ------------------------------------------------------------- unit attention

    def _post(self, nexus: str, code: tuple[int, int]) -> None:
        queue = self._attention.setdefault(nexus, [])
        if code not in queue:
            queue.append(code)

    def _take_attention(self, nexus: str) -> tuple[int, int] | None:
        queue = self._attention.get(nexus)
        if not queue:
            return None
        code = queue.pop(0)
        if not queue:
            del self._attention[nexus]
        return code

    def reset(self, kind: str, initiator: str | None = None) -> None:
        """A task management reset ("lun", "target_warm", "target_cold"): the SPC-2
        reservation is released (persistent ones stay) and every nexus that has used this
        unit, the issuer too (SAM-5 6.3; libiscsi's MultipathIO.Reset looks on every path),
        gets a unit attention: BUS DEVICE RESET FUNCTION OCCURRED, or POWER ON, RESET for a
        cold reset. It replaces the attentions pending before."""
        code = POWER_ON_RESET if kind == "target_cold" else BUS_DEVICE_RESET
        with self._lock:
            self.reservations.reset()
            if initiator is not None:
                self._nexuses.add(initiator)
            for nexus in self._nexuses:
                self._attention[nexus] = [code]

    def nexus_lost(self, initiator: str) -> None:
        """A session ended: its RESERVE (6) is released and its unit attentions dropped;
        persistent reservations and registrations stay (SPC-4 5.12.3)."""
        with self._lock:
            self.reservations.nexus_lost(initiator)
            self._attention.pop(initiator, None)
            self._nexuses.discard(initiator)
            self._copies.pop(initiator, None)

    def _write_lock(self, disk: Disk) -> threading.Lock:
        key = getattr(disk, "mac", None)
        with self._lock:
            return self._write_locks.setdefault(key, threading.Lock())

    # --------------------------------------------------------------------- execute

    def execute(self, req: Request, disk: Disk) -> Response:
        fast = self._fast(req, disk)
        if fast is not None:
            return fast
        bs = self.unit.block_size
        try:
            status, data = self._execute(req, disk)
            return _response(req, bs, status, data)
        except Check as check:
            return _response(req, bs, CHECK_CONDITION, sense=check.sense())
        except Conflict:
            return _response(req, bs, RESERVATION_CONFLICT)
        except Exception:
            log.exception("scsi_command_failed export=%s opcode=%#04x initiator=%s",
                          self.unit.name, req.cdb[0] if req.cdb else -1, req.initiator)
            return _response(req, bs, CHECK_CONDITION,
                             sense=fixed_sense(HARDWARE_ERROR, INTERNAL_TARGET_FAILURE))

    def plain_io(self, cdb: bytes, nexus: str) -> tuple[bool, int, int] | None:
        """(write, byte offset, bytes) of a READ/WRITE (10)/(16) when nothing unusual is going
        on: no unit attention pending, no reservation, valid fields, in range, within the
        transfer limit. Anything else (None) takes the full path, which also makes every
        error's sense data. The event loop's short path for reads (iscsi_direct.py) asks this
        with the CDB as it came, before any Request is made."""
        if len(cdb) < 16:  # iSCSI always sends 16; anything shorter takes the full path
            return None
        opcode = cdb[0]
        if opcode == 0x28 or opcode == 0x2A:
            _, flags, lba, group, blocks, control = _RW10.unpack_from(cdb)
        elif opcode == 0x88 or opcode == 0x8A:
            _, flags, lba, blocks, group, control = _RW16.unpack_from(cdb)
        else:
            return None
        if flags & 0xE7 or group & 0xE0 or control & 0x04 or not blocks:
            return None
        unit = self.unit
        res = self.reservations
        if (self._attention or res.spc2 is not None or res.reservation is not None
                or nexus not in self._nexuses):
            return None
        size = blocks * unit.block_size
        if lba + blocks > unit.size_bytes // unit.block_size or size > unit.max_transfer_bytes:
            return None
        return bool(opcode & 0x02), lba * unit.block_size, size

    def _plain(self, req: Request) -> tuple[bool, int, int] | None:
        """:meth:`plain_io`, and a write's data all there and no larger than its EDTL says."""
        plain = self.plain_io(req.cdb, req.initiator)
        if plain is not None and plain[0] and (self.unit.readonly or len(req.data_out) < plain[2]
                                               or req.expected_length < plain[2]):
            return None
        return plain

    def _fast(self, req: Request, disk: Disk,
              plain: tuple[bool, int, int] | None = None) -> Response | None:
        plain = plain or self._plain(req)
        if plain is None:
            return None
        write, offset, size = plain
        expected = req.expected_length
        try:
            if write:
                data = req.data_out
                sync = not self.unit.write_cache or bool(req.cdb[1] & FUA)
                with self._write_lock(disk):
                    scsi_io.write_through(disk, [(offset, data if len(data) == size
                                                  else data[:size])], sync)
                return Response(GOOD, b"", b"", 0, expected - size)
            data = disk.read(offset, size)
        except Exception:
            return None  # the full path does it again and says what went wrong
        if size > expected:
            return Response(GOOD, data[:expected], b"", size - expected, 0)
        return Response(GOOD, data, b"", 0, expected - size)

    def execute_many(self, items: Sequence[tuple[Request, Disk]]) -> list[Response]:
        """Execute commands in order, as :meth:`execute` one by one would, except that
        consecutive plain WRITEs to the same disk go to storage as one batch: one ``write``
        (with WCE 0 or any FUA among them: one ``fdatasync``) answers them all, as the AoE
        target batches; and of consecutive SYNCHRONIZE CACHEs to one disk only the first
        syncs (nothing was written in between). If a batch of writes fails, its writes are
        done again one by one, so each gets its own answer."""
        out: list[Response | None] = [None] * len(items)
        group: list[tuple[int, int, bytes, int]] = []  # (index, offset, data, size)
        group_disk: Disk | None = None
        group_sync = False
        flushed: Disk | None = None  # synced by a SYNCHRONIZE CACHE, nothing written since

        def flush() -> None:
            nonlocal group_sync
            if not group:
                return
            try:
                with self._write_lock(group_disk):
                    scsi_io.write_through(group_disk, [(offset, data)
                                                       for _, offset, data, _ in group],
                                          group_sync)
            except Exception:
                for index, *_ in group:
                    out[index] = self.execute(*items[index])
            else:
                for index, _, _, size in group:
                    out[index] = Response(GOOD, b"", b"", 0, items[index][0].expected_length
                                          - size)
            group.clear()
            group_sync = False

        for index, (req, disk) in enumerate(items):
            plain = self._plain(req)
            if plain is not None and plain[0]:
                if group and disk is not group_disk:
                    flush()
                _, offset, size = plain
                data = req.data_out
                group.append((index, offset, data if len(data) == size else data[:size], size))
                group_disk = disk
                group_sync = group_sync or not self.unit.write_cache or bool(req.cdb[1] & FUA)
                flushed = None
                continue
            flush()
            opcode = req.cdb[0] if req.cdb else -1
            if opcode in op.SYNCS:
                out[index] = self.execute(req, _Synced(disk) if flushed is disk else disk)
                flushed = disk if out[index].status == GOOD else None
                continue
            if opcode not in op.READS:
                flushed = None
            elif plain is not None:  # a plain read: the short path, without asking again
                out[index] = self._fast(req, disk, plain) or self.execute(req, disk)
                continue
            out[index] = self.execute(req, disk)
        flush()
        return out  # type: ignore[return-value]

    def _execute(self, req: Request, disk: Disk) -> tuple[int, bytes]:
        cdb, nexus = req.cdb, req.initiator
        opcode = cdb[0] if cdb else -1
        command = lookup(cdb)
        with self._lock:
            self._nexuses.add(nexus)
            if opcode not in UA_EXEMPT:
                code = self._take_attention(nexus)
                if code is not None:
                    raise Check(UNIT_ATTENTION, code)
            if command is None:
                if opcode in op.SERVICE_ACTION_OPCODES:
                    raise invalid_cdb(1, 4)
                raise Check(ILLEGAL_REQUEST, INVALID_COMMAND_OPERATION_CODE)
            if len(cdb) < command.length:
                raise Check(ILLEGAL_REQUEST, INVALID_COMMAND_OPERATION_CODE)
            res = self.reservations
            if res.spc2 is not None and res.spc2 != nexus and opcode not in SPC2_ALLOWED:
                raise Conflict()
            if not res.allowed(nexus, opcode in MEDIUM_WRITES, opcode in MEDIUM_READS):
                raise Conflict()
        check_mask(cdb, command)
        if opcode in WRITE_COMMANDS and self.unit.readonly:
            raise write_protected()
        return GOOD, self._dispatch(req, disk, opcode)

    def _dispatch(self, req: Request, disk: Disk, opcode: int) -> bytes:
        unit, cdb, data = self.unit, req.cdb, req.data_out
        if opcode in op.READS:
            return scsi_io.read(unit, cdb, disk)
        if opcode in op.WRITES:
            sync = not unit.write_cache or (opcode != op.WRITE_6 and bool(cdb[1] & FUA))
            with self._write_lock(disk):
                scsi_io.write(unit, cdb, data, disk, sync)
            return b""
        if opcode == op.TEST_UNIT_READY:
            return b""
        if opcode == op.INQUIRY:
            return scsi_pages.inquiry(unit, cdb)
        if opcode == op.READ_CAPACITY_10:
            return scsi_pages.read_capacity_10(unit)
        if opcode == op.SERVICE_ACTION_IN_16:
            if cdb[1] & 0x1F == op.SA_GET_LBA_STATUS:
                return scsi_io.get_lba_status(unit, cdb, disk)
            allocation = int.from_bytes(cdb[10:14], "big")
            return scsi_pages.read_capacity_16(unit)[:allocation]
        if opcode in op.SYNCS:
            scsi_io.synchronize_cache(unit, cdb, disk)
            return b""
        if opcode in op.WRITE_VERIFIES:
            with self._write_lock(disk):
                scsi_io.write_and_verify(unit, cdb, data, disk)
            return b""
        if opcode in op.VERIFIES:
            scsi_io.verify(unit, cdb, data, disk)
            return b""
        if opcode in op.WRITE_SAMES:
            with self._write_lock(disk):
                scsi_io.write_same(unit, cdb, data, req.expected_length, disk)
            return b""
        if opcode == op.UNMAP:
            with self._write_lock(disk):
                scsi_io.unmap(unit, cdb, data, disk)
            return b""
        if opcode == op.COMPARE_AND_WRITE:
            if req.expected_length != data_out_length(cdb, unit.block_size):
                # The NUMBER OF LOGICAL BLOCKS disagrees with the data sent (libiscsi's
                # CompareAndWrite tests send 256 blocks as 0 and expect this).
                raise invalid_cdb(13)
            with self._write_lock(disk):
                scsi_io.compare_and_write(unit, cdb, data, disk)
            return b""
        if opcode == op.ORWRITE_16:
            with self._write_lock(disk):
                scsi_io.orwrite(unit, cdb, data, disk)
            return b""
        if opcode == op.EXTENDED_COPY:
            self._extended_copy(req, disk)
            return b""
        if opcode == op.RECEIVE_COPY_RESULTS:
            with self._lock:
                held = dict(self._copies.get(req.initiator, {}))
            return scsi_xcopy.receive_copy_results(cdb, held, unit.block_size)
        if opcode in (op.READ_DEFECT_DATA_10, op.READ_DEFECT_DATA_12):
            return scsi_io.read_defect_data(cdb)
        if opcode in op.PRE_FETCHES:
            scsi_io.pre_fetch(unit, cdb)
            return b""
        if opcode in (op.MODE_SENSE_6, op.MODE_SENSE_10):
            return scsi_pages.mode_sense(unit, cdb)
        if opcode in (op.MODE_SELECT_6, op.MODE_SELECT_10):
            if self._mode_select(cdb, data, req.initiator) is False:
                scsi_io.synchronize_cache(unit, bytes(10), disk)  # write-through from now on
            return b""
        if opcode == op.REQUEST_SENSE:
            return self._request_sense(req)
        if opcode == op.REPORT_LUNS:
            allocation = scsi_pages.check_report_luns(cdb)
            return scsi_pages.report_luns_data(self.luns)[:allocation]
        if opcode == op.MAINTENANCE_IN:
            return scsi_pages.report_supported_opcodes(cdb)
        if opcode in (op.START_STOP_UNIT, op.PREVENT_ALLOW):
            return self._start_stop(cdb, opcode)
        if opcode in (op.RESERVE_6, op.RESERVE_10, op.RELEASE_6, op.RELEASE_10):
            with self._lock:
                if opcode in (op.RESERVE_6, op.RESERVE_10):
                    self.reservations.reserve6(req.initiator)
                else:
                    self.reservations.release6(req.initiator)
            return b""
        if opcode == op.PERSISTENT_RESERVE_IN:
            allocation = int.from_bytes(cdb[7:9], "big")
            with self._lock:
                return self.reservations.in_(req.initiator, cdb)[:allocation]
        if opcode == op.PERSISTENT_RESERVE_OUT:
            with self._lock:
                self.reservations.out(req.initiator, cdb, data, self._post)
            return b""
        raise Check(ILLEGAL_REQUEST, INVALID_COMMAND_OPERATION_CODE)

    # ------------------------------------------------------------ small commands

    def _extended_copy(self, req: Request, disk: Disk) -> None:
        """EXTENDED COPY (LID1) inside this unit (:mod:`scsi_xcopy`), under the disk's write
        lock; its result is held for RECEIVE COPY RESULTS when the list asks for it."""
        unit, cdb = self.unit, req.cdb
        length = int.from_bytes(cdb[10:14], "big")
        if length == 0:
            return
        copy = scsi_xcopy.parse(req.data_out, length, scsi_pages.designators(unit),
                                unit.block_size)
        scsi_xcopy.check_ranges(copy, unit.blocks, unit.block_size)
        done, moved = 0, 0
        try:
            with self._write_lock(disk):
                for segment in copy.segments:
                    moved += scsi_io.copy_blocks(unit, disk, segment.source_lba,
                                                 segment.destination_lba, segment.blocks)
                    done += 1
        finally:
            if copy.hold:
                with self._lock:
                    held = self._copies.setdefault(req.initiator, {})
                    held.pop(copy.list_id, None)
                    held[copy.list_id] = scsi_xcopy.copy_status(
                        done == len(copy.segments), done, moved)
                    while len(held) > scsi_xcopy.HELD_RESULTS:
                        del held[next(iter(held))]

    def _request_sense(self, req: Request) -> bytes:
        cdb = req.cdb
        with self._lock:
            code = self._take_attention(req.initiator)
        key, code = (UNIT_ATTENTION, code) if code is not None else (NO_SENSE, NO_ADDITIONAL)
        if cdb[1] & 0x01:  # DESC: descriptor format
            sense = bytes((0x72, key, code[0], code[1], 0, 0, 0, 0))
        else:
            sense = fixed_sense(key, code)
        return sense[:cdb[4]]

    def _start_stop(self, cdb: bytes, opcode: int) -> bytes:
        """The medium is not removable and always ready: START STOP UNIT and PREVENT ALLOW
        MEDIUM REMOVAL are accepted and change nothing."""
        if opcode == op.START_STOP_UNIT and cdb[4] & 0x02 and not cdb[4] & 0x01:
            pass  # LOEJ with START 0 on a fixed medium: nothing to eject
        return b""

    def _mode_select(self, cdb: bytes, data: bytes, nexus: str) -> bool | None:
        """MODE SELECT: only WCE (caching page) is changeable, so a parameter list is accepted
        when every page it holds equals the current one but for that bit, and refused with
        INVALID FIELD IN PARAMETER LIST (pointing at the first differing byte) otherwise. A
        changed WCE applies to every session of the unit (until the service restarts or the
        export changes); the other nexuses get MODE PARAMETERS CHANGED. Returns the new WCE
        when it changed."""
        ten = cdb[0] == op.MODE_SELECT_10
        if cdb[1] & 0x01:
            raise invalid_cdb(1, 0)  # SP: saving is not supported
        length = int.from_bytes(cdb[7:9], "big") if ten else cdb[4]
        if length == 0:
            return None
        if not cdb[1] & 0x10:
            raise invalid_cdb(1, 4)  # PF 0: vendor-specific page format
        header = 8 if ten else 4
        if len(data) < length or length < header:
            raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
        data = data[:length]
        wce: bool | None = None
        descriptors = int.from_bytes(data[6:8], "big") if ten else data[3]
        position = header
        if descriptors:
            long = ten and bool(data[4] & 0x01)
            if position + descriptors > length:
                raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
            block_length = int.from_bytes(data[position + (12 if long else 5):
                                               position + 16 if long else position + 8], "big")
            if block_length != self.unit.block_size:
                raise invalid_parameter(position + (12 if long else 5))
            position += descriptors
        while position < length:
            if position + 2 > length:
                raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
            code = data[position] & 0x3F
            if data[position] & 0x40:
                raise invalid_parameter(position, 6)  # SPF: no subpages here
            try:
                current = mode_pages(self.unit, code, 0, scsi_pages.CURRENT)
            except Check:
                raise invalid_parameter(position) from None
            size = data[position + 1] + 2
            if size != len(current) or position + size > length:
                raise invalid_parameter(position + 1)
            mask = mode_pages(self.unit, code, 0, scsi_pages.CHANGEABLE)
            for index in range(2, size):
                if (data[position + index] ^ current[index]) & ~mask[index]:
                    raise invalid_parameter(position + index)
            if code == scsi_pages.CACHING:
                wce = bool(data[position + 2] & scsi_pages.WCE)
            position += size
        if wce is not None and wce != self.unit.write_cache:
            with self._lock:
                self.unit = dataclasses.replace(self.unit, write_cache=wce)
                for other in self._nexuses - {nexus}:
                    self._post(other, MODE_PARAMETERS_CHANGED)
            return wce
        return None
