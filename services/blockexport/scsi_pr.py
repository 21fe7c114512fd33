"""Reservations of one logical unit: SPC-2 RESERVE/RELEASE and SPC-4 persistent reservations.

Pure state (no I/O, no clock); the logical unit holds its lock around every call. An I_T nexus
is the initiator port string the transport gives (iSCSI name, ",i,0x" and ISID), so two
sessions of one initiator are two nexuses, as SAM says.

- RESERVE (6)/(10): the nexus holding it gets every command; every other nexus gets
  RESERVATION CONFLICT for all but INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT SUPPORTED
  OPERATION CODES and RELEASE (which does nothing). Released by RELEASE from the holder, a LUN
  or target reset, and the holder's I_T nexus loss.
- Persistent reservations (SPC-4 5.12): registrations (a key per nexus), at most one
  reservation of the six types, the generation counter. Not persistent through power loss
  (APTPL is refused; REPORT CAPABILITIES says PTPL_C 0): a restart of the service forgets them.
  They survive I_T nexus loss and resets, as SPC says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from services.blockexport.scsi_sense import (
    ILLEGAL_REQUEST,
    PARAMETER_LIST_LENGTH_ERROR,
    REGISTRATIONS_PREEMPTED,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    Check,
    invalid_cdb,
    invalid_parameter,
)

WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS = 1, 3
WRITE_EXCLUSIVE_RO, EXCLUSIVE_ACCESS_RO = 5, 6
WRITE_EXCLUSIVE_AR, EXCLUSIVE_ACCESS_AR = 7, 8
TYPES = (WRITE_EXCLUSIVE, EXCLUSIVE_ACCESS, WRITE_EXCLUSIVE_RO, EXCLUSIVE_ACCESS_RO,
         WRITE_EXCLUSIVE_AR, EXCLUSIVE_ACCESS_AR)
ALL_REGISTRANTS = (WRITE_EXCLUSIVE_AR, EXCLUSIVE_ACCESS_AR)
REGISTRANTS = (WRITE_EXCLUSIVE_RO, EXCLUSIVE_ACCESS_RO, *ALL_REGISTRANTS)
EXCLUSIVE = (EXCLUSIVE_ACCESS, EXCLUSIVE_ACCESS_RO, EXCLUSIVE_ACCESS_AR)

REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_AND_ABORT, REGISTER_AND_IGNORE = range(7)
READ_KEYS, READ_RESERVATION, REPORT_CAPABILITIES, READ_FULL_STATUS = range(4)
INVALID_RELEASE = (0x26, 0x04)  # INVALID RELEASE OF PERSISTENT RESERVATION
PARAMETERS = 24

Post = Callable[[str, tuple[int, int]], None]  # unit attention for a nexus


class Conflict(Exception):
    """The command ends with RESERVATION CONFLICT."""


@dataclasses.dataclass
class Reservation:
    holder: str | None  # the nexus; None for the all-registrants types (every registrant)
    type: int


class Reservations:
    def __init__(self) -> None:
        self.spc2: str | None = None  # the nexus holding a RESERVE (6)/(10)
        self.keys: dict[str, int] = {}  # registrations: nexus -> key
        self.reservation: Reservation | None = None
        self.generation = 0

    # ------------------------------------------------------------------ access checks

    def holds(self, nexus: str) -> bool:
        """Whether the nexus is a reservation holder (every registrant for the
        all-registrants types)."""
        res = self.reservation
        if res is None:
            return False
        if res.type in ALL_REGISTRANTS:
            return nexus in self.keys
        return res.holder == nexus

    def allowed(self, nexus: str, medium_write: bool, medium_read: bool) -> bool:
        """Whether a command that reads and/or writes the medium (or changes the unit's state)
        may run for the nexus under a persistent reservation (SPC-4 table 64, simplified to
        reads and writes)."""
        res = self.reservation
        if res is None or self.holds(nexus):
            return True
        if res.type in REGISTRANTS and nexus in self.keys:
            return True
        if medium_write:
            return False
        if medium_read:
            return res.type not in EXCLUSIVE
        return True

    # ---------------------------------------------------------------- RESERVE (6)/(10)

    def reserve6(self, nexus: str) -> None:
        if self.reservation is not None or (self.spc2 not in (None, nexus)):
            raise Conflict()
        self.spc2 = nexus

    def release6(self, nexus: str) -> None:
        if self.reservation is not None:
            raise Conflict()
        if self.spc2 == nexus:
            self.spc2 = None

    def reset(self) -> None:
        """A LUN or target reset releases the SPC-2 reservation (PRs stay)."""
        self.spc2 = None

    def nexus_lost(self, nexus: str) -> None:
        if self.spc2 == nexus:
            self.spc2 = None

    # --------------------------------------------------------- PERSISTENT RESERVE OUT

    def out(self, nexus: str, cdb: bytes, data: bytes, post: Post) -> None:
        action = cdb[1] & 0x1F
        scope, kind = cdb[2] >> 4, cdb[2] & 0x0F
        length = int.from_bytes(cdb[5:9], "big")
        if action > REGISTER_AND_IGNORE:
            raise invalid_cdb(1)
        if length != PARAMETERS or len(data) < PARAMETERS:
            raise Check(ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR)
        key = int.from_bytes(data[0:8], "big")
        action_key = int.from_bytes(data[8:16], "big")
        flags = data[20]
        if flags & 0x08:
            raise invalid_parameter(20, 3)  # SPEC_I_PT: not supported (SIP_C 0)
        if flags & 0x04:
            raise invalid_parameter(20, 2)  # ALL_TG_PT: one target port (ATP_C 0)
        if flags & 0x01:
            raise invalid_parameter(20, 0)  # APTPL: not persistent through power loss
        if action in (RESERVE, RELEASE, PREEMPT, PREEMPT_AND_ABORT):
            if scope != 0:
                raise invalid_cdb(2, 7)
            if kind not in TYPES:
                raise invalid_cdb(2, 3)
        if self.spc2 is not None and self.spc2 != nexus:
            raise Conflict()
        mine = self.keys.get(nexus)
        if action == REGISTER_AND_IGNORE or action == REGISTER:
            if action == REGISTER and (key != (mine or 0)):
                raise Conflict()
            self._register(nexus, action_key, post)
            self.generation += 1
            return
        if mine is None or mine != key:
            raise Conflict()
        if action == RESERVE:
            res = self.reservation
            if res is None:
                self.reservation = Reservation(None if kind in ALL_REGISTRANTS else nexus, kind)
            elif not self.holds(nexus) or res.type != kind:
                raise Conflict()
        elif action == RELEASE:
            res = self.reservation
            if res is None or not self.holds(nexus):
                return
            if res.type != kind:
                raise Check(ILLEGAL_REQUEST, INVALID_RELEASE)
            self.reservation = None
            if res.type in REGISTRANTS:
                for other in self.keys:
                    if other != nexus:
                        post(other, RESERVATIONS_RELEASED)
        elif action == CLEAR:
            for other in self.keys:
                if other != nexus:
                    post(other, RESERVATIONS_PREEMPTED)
            self.keys.clear()
            self.reservation = None
            self.generation += 1
        else:
            self._preempt(nexus, action_key, kind, post)
            self.generation += 1

    def _register(self, nexus: str, new_key: int, post: Post) -> None:
        if new_key:
            self.keys[nexus] = new_key
            return
        if self.keys.pop(nexus, None) is None:
            return
        res = self.reservation
        if res is None:
            return
        if res.type in ALL_REGISTRANTS:
            if not self.keys:  # the last registrant went: so does the reservation
                self.reservation = None
        elif res.holder == nexus:
            self.reservation = None
            if res.type in REGISTRANTS:
                for other in self.keys:
                    post(other, RESERVATIONS_RELEASED)

    def _preempt(self, nexus: str, victim_key: int, kind: int, post: Post) -> None:
        res = self.reservation
        if res is not None and res.type in ALL_REGISTRANTS and victim_key == 0:
            # Everyone else loses their registration; the preempter holds the new one.
            for other in list(self.keys):
                if other != nexus:
                    del self.keys[other]
                    post(other, REGISTRATIONS_PREEMPTED)
            self.reservation = Reservation(None if kind in ALL_REGISTRANTS else nexus, kind)
            return
        if victim_key == 0:
            raise invalid_parameter(8)
        victims = [n for n, k in self.keys.items() if k == victim_key and n != nexus]
        holder_key = (self.keys.get(res.holder) if res is not None and res.holder is not None
                      else None)
        preempts_holder = res is not None and res.holder is not None and \
            holder_key == victim_key
        if not victims and not preempts_holder:
            raise Conflict()
        for other in victims:
            del self.keys[other]
            post(other, REGISTRATIONS_PREEMPTED)
        if preempts_holder:
            self.reservation = Reservation(None if kind in ALL_REGISTRANTS else nexus, kind)
            if res.type != kind:
                for other in self.keys:
                    if other != nexus:
                        post(other, RESERVATIONS_RELEASED)

    # ---------------------------------------------------------- PERSISTENT RESERVE IN

    def in_(self, nexus: str, cdb: bytes) -> bytes:
        action = cdb[1] & 0x1F
        head = self.generation.to_bytes(4, "big")
        if action == READ_KEYS:
            body = b"".join(k.to_bytes(8, "big") for k in self.keys.values())
            return head + len(body).to_bytes(4, "big") + body
        if action == READ_RESERVATION:
            res = self.reservation
            if res is None:
                return head + bytes(4)
            key = 0 if res.holder is None else self.keys.get(res.holder, 0)
            body = key.to_bytes(8, "big") + bytes(4) + bytes((0, res.type)) + bytes(2)
            return head + len(body).to_bytes(4, "big") + body
        if action == REPORT_CAPABILITIES:
            # CRH 1 (RESERVE (6) conflicts with a PR only as SPC-3 5.6.3 says); TMV 1 and
            # every type in the mask; ALLOW COMMANDS 000b.
            return bytes((0x00, 0x08, 0x10, 0x80, 0xEA, 0x01, 0x00, 0x00))
        if action == READ_FULL_STATUS:
            body = b"".join(self._full(n, k) for n, k in self.keys.items())
            return head + len(body).to_bytes(4, "big") + body
        raise invalid_cdb(1)

    def _full(self, nexus: str, key: int) -> bytes:
        res = self.reservation
        holder = self.holds(nexus)
        out = bytearray(24)
        out[0:8] = key.to_bytes(8, "big")
        out[12] = 0x01 if holder else 0x00  # R_HOLDER
        out[13] = res.type if (holder and res is not None) else 0
        out[18:20] = (1).to_bytes(2, "big")  # relative target port identifier
        transport = transport_id(nexus)
        out[20:24] = len(transport).to_bytes(4, "big")
        return bytes(out) + transport


def transport_id(nexus: str) -> bytes:
    """The iSCSI TransportID of an initiator port (SPC-4 7.6.4.6): format 01b (name and ISID)
    when the nexus string has the ",i,0x" part, else format 00b (name only)."""
    name = nexus.encode()
    code = 0x45 if b",i,0x" in name else 0x05
    padded = name + b"\0"
    padded += bytes(-len(padded) % 4)
    if len(padded) < 20:
        padded += bytes(20 - len(padded))
    return bytes((code, 0)) + len(padded).to_bytes(2, "big") + padded
