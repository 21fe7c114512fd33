"""Coverage-guided fuzz targets (atheris, libFuzzer) for every codec and pure input path.

``python scripts/fuzz/targets.py PROTOCOL [libFuzzer flags] [CORPUS_DIR ...]`` fuzzes one
protocol's target; scripts/fuzz/run.py drives it. A target feeds one input to the code that
reads what a client sends and checks what must always hold: the only exception allowed is the
codec's own refusal (``DecodeError`` and friends: counted and dropped by the services); a
message that decodes encodes again and decodes to the same thing; a decision is one of the
declared outcomes. Anything else (an IndexError, a struct.error, a hang) is a finding: libFuzzer
stops, writes the input to ``crash-*`` and exits non-zero.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# atheris follows coverage in Python bytecode: the DHCP and TFTP modules from their source, not
# the mypyc builds (shared/native.py); the service-level fuzzing runs the builds
os.environ.setdefault("BOOTYARD_DHCP_NATIVE", "0")
os.environ.setdefault("BOOTYARD_TFTP_NATIVE", "0")

import atheris  # noqa: E402

with atheris.instrument_imports():
    from services.blockexport import (
        codec as aoe_codec,
        iscsi_login,
        iscsi_pdu,
        policy as aoe_policy,
        scsi,
        scsi_cdb,
    )
    from services.blockexport.iscsi_session import Session
    from services.blockexport.scsi_sense import Check
    from services.blockexport.storage import PlainDisk
    from services.dhcp import codec as dhcp_codec, policy as dhcp_policy
    from services.http import files as http_files
    from services.tftp import codec as tftp_codec, session as tftp_session
    from shared import paths


DHCP_CTX = dhcp_policy.ServerContext(server_ip="198.18.0.1",
                                     http_base_url="http://198.18.0.1:8080")


def dhcp(data: bytes) -> None:
    try:
        message = dhcp_codec.decode(data)
    except dhcp_codec.DecodeError:
        return
    try:
        again = dhcp_codec.decode(dhcp_codec.encode(message))
    except dhcp_codec.TooBig:  # more options than 548 bytes hold even with overload: the
        pass                   # declared refusal (a reply that big is counted, never sent)
    else:
        assert (again.xid, again.chaddr, again.options) == (message.xid, message.chaddr,
                                                            message.options), "round trip"
    dhcp_policy.screen(message, None, None, DHCP_CTX)
    dhcp_policy.requested_address(message)
    dhcp_policy.client_hostname(message, None)
    dhcp_policy.choose_boot(message, None, None, None, DHCP_CTX, message.chaddr[:6].hex(":"))


TFTP_LIMITS = tftp_session.Limits()


def tftp(data: bytes) -> None:
    try:
        message = tftp_codec.decode(data)
    except tftp_codec.DecodeError:
        return
    try:
        encoded = tftp_codec.encode(message)
    except UnicodeEncodeError:  # a client's ERROR text that is not ASCII: decoded with
        assert isinstance(message, tftp_codec.Error)  # replacement characters, never sent back
    else:
        assert tftp_codec.decode(encoded) == message, "round trip"
    if isinstance(message, tftp_codec.Request):
        tftp_session.negotiate(message, 1 << 20, TFTP_LIMITS)
        try:
            paths.clean_relative(message.filename)
        except paths.PathRefused:
            pass


AOE_TARGET = aoe_policy.Target(name="fuzz", shelf=1, slot=1, sectors=2048,
                               mac=b"\x02\x00\x00\x00\x00\x01", max_sectors=2)
AOE_OUTCOMES = (aoe_policy.Reply, aoe_policy.Drop, aoe_policy.Read, aoe_policy.Write,
                aoe_policy.Flush)


def aoe(data: bytes) -> None:
    try:
        frame = aoe_codec.decode(data)
    except aoe_codec.DecodeError:
        return
    state = aoe_policy.State()
    for _ in range(2):  # twice: the second request sees what the first changed
        state, outcome = aoe_policy.decide(AOE_TARGET, state, frame)
        assert isinstance(outcome, AOE_OUTCOMES), outcome
        if isinstance(outcome, aoe_policy.Reply):
            aoe_codec.encode(outcome.frame)


def http(data: bytes) -> None:
    """What the HTTP service parses itself (aiohttp parses the request line and headers): the
    Range header and the path a client asks for."""
    fdp = atheris.FuzzedDataProvider(data)
    size = fdp.ConsumeIntInRange(0, 1 << 40)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    ranges = http_files.parse_ranges(text, size)
    if ranges:
        assert all(0 <= first <= last < size for first, last in ranges), ranges
        assert sum(last - first + 1 for first, last in ranges) <= size, "ranges overlap"
    try:
        path = paths.clean_relative(text)
    except paths.PathRefused:
        return
    assert ".." not in path.parts and not path.is_absolute(), path


ISCSI_TARGETS = {t.iqn: t for t in (
    iscsi_login.TargetConfig("iqn.2026-12.org.bootyard:fuzz", "fuzz"),
    iscsi_login.TargetConfig("iqn.2026-12.org.bootyard:chap", "chap", chap_user="fuzz",
                             chap_secret="fuzz-secret-0123"))}
ISCSI_OFFER = iscsi_login.Offer(max_recv_dsl=8192, max_burst=16384, first_burst=8192,
                                max_outstanding_r2t=2)
ISCSI_NEXUS = "iqn.2026-12.org.bootyard:initiator,i,0x400001370000"
_UNIT: list = []  # (disk, logical unit): one 1 MiB file for the whole run


def _iscsi_unit():
    if not _UNIT:
        where = tempfile.mkdtemp(prefix="bootyard-fuzz-iscsi-")
        atexit.register(shutil.rmtree, where, True)
        with open(f"{where}/disk.img", "wb") as f:
            f.truncate(1 << 20)
        disk = PlainDisk(f"{where}/disk.img")
        _UNIT.extend((disk, scsi.LogicalUnit(name="fuzz", serial="fuzz", size_bytes=disk.size,
                                             readonly=False, unmapped=scsi.unmapped_mode(disk))))
    return _UNIT


def _iscsi_cdb(cdb: bytes) -> None:
    """The CDB decoder: a known command's mask check, transfer range and Data-Out length."""
    command = scsi_cdb.lookup(cdb)
    if command is not None and len(cdb) >= command.length:
        try:
            scsi_cdb.check_mask(cdb, command)
        except Check:
            pass
        if cdb[0] in scsi_cdb.READS | scsi_cdb.WRITES | scsi_cdb.VERIFIES:
            scsi_cdb.transfer(cdb)
    length = scsi_cdb.data_out_length(cdb, 512)
    assert length is None or length >= 0, length


def _iscsi_sent(session: Session, frames) -> None:
    """What the target sends is well framed, and no data segment is longer than the
    initiator's MaxRecvDataSegmentLength."""
    stream = b"".join(bytes(f) for f in frames)
    hd, dd = session.p.header_digest, session.p.data_digest
    while stream:
        head, body = iscsi_pdu.frame_lengths(stream[:iscsi_pdu.BHS], hd, dd)
        assert len(stream) >= iscsi_pdu.BHS + head + body, "a PDU we send is cut short"
        assert iscsi_pdu.data_length(stream[:iscsi_pdu.BHS]) <= session.p.max_send_dsl, \
            "a data segment longer than the initiator's MaxRecvDataSegmentLength"
        stream = stream[iscsi_pdu.BHS + head + body:]


def _iscsi_run(session: Session) -> None:
    """Execute what the session hands out, as the server does, until nothing is left."""
    disk, lu = _iscsi_unit()
    for _ in range(32):
        out = session.drain()
        _iscsi_sent(session, out.send)
        for kind, _lun in out.resets:
            lu.reset(kind, ISCSI_NEXUS)
        if not out.execute:
            return
        for task in out.execute:
            request = scsi.Request(task.cdb, task.lun, ISCSI_NEXUS, task.data_out, task.edtl,
                                   task.read, task.write)
            response = lu.execute(request, disk) if task.lun == 0 else scsi.no_such_lun(request)
            session.complete(task, response.status, response.data_in, response.sense,
                             response.overflow, response.underflow)


def iscsi(data: bytes) -> None:
    """A stream of initiator PDUs, framed as the connection frames them: the first ones go
    through a login (Login.receive, as iscsi_conn does), the rest, once the login is done,
    into the full feature phase (Session.receive) whose SCSI commands run on a 1 MiB logical
    unit; every CDB also goes through the CDB decoder, every text through parse_text."""
    login = iscsi_login.Login(
        targets=ISCSI_TARGETS.get, visible=lambda i, a: list(ISCSI_TARGETS.values()),
        address="198.18.0.10", offer=ISCSI_OFFER, statsn=1, challenge=lambda n: bytes(n),
        tsih=lambda: 1)
    session = None
    hd = dd = False
    rest = data
    for _ in range(64):
        if len(rest) < iscsi_pdu.BHS:
            return
        head, body = iscsi_pdu.frame_lengths(rest[:iscsi_pdu.BHS], hd, dd)
        raw, rest = rest[:iscsi_pdu.BHS + head + body], rest[iscsi_pdu.BHS + head + body:]
        try:
            p = iscsi_pdu.decode(raw, hd, dd)
        except iscsi_pdu.DecodeError:
            if session is None:
                return  # the connection closes
            continue  # rejected
        if isinstance(p, iscsi_pdu.ScsiCommand):
            _iscsi_cdb(p.cdb)
        elif isinstance(p, (iscsi_pdu.TextRequest, iscsi_pdu.LoginRequest)):
            try:
                iscsi_pdu.parse_text(p.data)
            except iscsi_pdu.DecodeError:
                pass
        if session is None:
            if not isinstance(p, iscsi_pdu.LoginRequest):
                return
            step = login.receive(p)
            assert step.state in ("continue", "done", "failed"), step.state
            assert iscsi_pdu.data_length(step.response) + iscsi_pdu.BHS <= len(step.response)
            if step.state == "failed":
                return
            if step.state == "done":
                discovery = login.session_type == "Discovery"
                session = Session(login.params, statsn=login.statsn, expcmdsn=login.cmdsn,
                                  window=8, discovery=discovery,
                                  target=None if discovery else login.target,
                                  visible=lambda: list(ISCSI_TARGETS.values()),
                                  portal="198.18.0.1:3260", portal_group=1,
                                  wanted=lambda cdb: scsi.data_out_length(cdb, 512),
                                  cid=login.first.cid)
                hd, dd = session.p.header_digest, session.p.data_digest
            continue
        session.receive(p)
        _iscsi_run(session)
        if session.closing:
            return


TARGETS = {"dhcp": dhcp, "tftp": tftp, "aoe": aoe, "http": http, "iscsi": iscsi}


def main() -> None:
    protocol = sys.argv.pop(1)
    atheris.Setup(sys.argv, TARGETS[protocol])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
