"""``bootyard doctor MAC``: the block export of a netroot or sanboot host, probed as its
initiator would reach it.

- iSCSI: a TCP connection to the portal, then a discovery session as iPXE or open-iscsi opens
  one (a Login with ``SessionType=Discovery`` and no authentication, then ``SendTargets=All``):
  the portal answers iSCSI, and lists the export's target name. A portal that wants CHAP for
  discovery is reachable but cannot be listed (said, not failed).
- AoE: a Query Config (AoE command 1) for the export's shelf.slot, broadcast on the DHCP
  interface (the doctor's DHCP probe's interface: where the hosts are) from a raw socket. An
  answer from a target on another machine passes; answers from two MACs for one shelf.slot are a
  conflict. The deploy host's own blockexport service does not read frames its host sent
  (PACKET_IGNORE_OUTGOING), so for it the probe asks its ``/metrics`` whether the export is up.
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
import time

from cli.doctor_report import DoctorSettings, Report, http_fetch
from shared import boottarget

ISCSI_PORT = 3260
WAIT = 3.0  # seconds for an answer
LOGIN, LOGIN_RESPONSE, TEXT, TEXT_RESPONSE = 0x03, 0x23, 0x04, 0x24
AOE_ETHERTYPE = 0x88A2
DOCTOR_INITIATOR = "iqn.2026-11.org.bootyard:doctor"
# iSCSI login status (RFC 7143 11.13.5): (class, detail) -> what it means
LOGIN_STATUS = {(2, 1): "authentication failed", (2, 2): "authorisation failure (the "
                "initiator is not allowed)", (2, 3): "target not found", (2, 7): "missing "
                "parameter", (2, 9): "unsupported session type", (3, 1): "target error",
                (3, 2): "service unavailable", (3, 3): "out of resources"}


# ------------------------------------------------------------------------------ iSCSI
def _pdu(opcode: int, flags: int, data: bytes, itt: int, cmdsn: int, expstatsn: int,
         middle: bytes) -> bytes:
    """One PDU: a 48-byte basic header (``middle``: bytes 8-23, opcode-specific) and data."""
    header = struct.pack("!BB2xB", 0x40 | opcode, flags, 0) + len(data).to_bytes(3, "big") \
        + middle[:8] + struct.pack("!I", itt) + middle[12:16] \
        + struct.pack("!II", cmdsn, expstatsn) + bytes(16)
    return header + data + bytes(-len(data) % 4)


def _keys(**pairs: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs.items())


def _read_pdu(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _read(sock, 48)
    length = int.from_bytes(header[5:8], "big") + header[4] * 4
    data = _read(sock, length + (-length % 4))[:length]
    return header, data


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the portal closed the connection")
        out += chunk
    return out


def iscsi_discovery(portal: str, port: int = ISCSI_PORT, timeout: float = WAIT,
                    initiator: str = DOCTOR_INITIATOR) -> tuple[bool | None, str, list[str]]:
    """(reachable, detail, target names listed). reachable None: it answers iSCSI but will not
    list its targets (discovery needs CHAP, or it refused the session)."""
    isid = b"\x80" + secrets.token_bytes(3) + b"\x00\x00"
    try:
        sock = socket.create_connection((portal, port), timeout=timeout)
    except OSError as exc:
        return False, f"no TCP connection to {portal}:{port}: {exc.strerror or exc}", []
    with sock:
        sock.settimeout(timeout)
        try:
            statsn = 0
            # security stage -> operational stage -> full feature phase, one PDU each
            for csg, nsg, pairs in (
                    (0, 1, dict(InitiatorName=initiator, SessionType="Discovery",
                                AuthMethod="None")),
                    (1, 3, dict(HeaderDigest="None", DataDigest="None"))):
                middle = isid + b"\0\0" + bytes(4) + b"\0\0\0\0"
                sock.sendall(_pdu(LOGIN, 0x80 | (csg << 2) | nsg, _keys(**pairs), 1, 1,
                                  statsn, middle))
                header, data = _read_pdu(sock)
                if header[0] & 0x3F != LOGIN_RESPONSE:
                    return False, f"not an iSCSI login response (opcode {header[0]:#x})", []
                status = (header[36], header[37])
                if status != (0, 0):
                    text = LOGIN_STATUS.get(status, f"status {status[0]}/{status[1]}")
                    return None, f"{portal}:{port} answers iSCSI; discovery login refused: " \
                                 f"{text}", []
                statsn = struct.unpack("!I", header[24:28])[0] + 1
                if header[1] & 0x03 == 3 and header[1] & 0x80:
                    break  # the target went straight to the full feature phase
            middle = bytes(8) + bytes(4) + b"\xff\xff\xff\xff"
            sock.sendall(_pdu(TEXT, 0x80, _keys(SendTargets="All"), 2, 1, statsn, middle))
            header, data = _read_pdu(sock)
        except (OSError, ConnectionError) as exc:
            return False, f"{portal}:{port}: the iSCSI exchange failed: {exc}", []
    if header[0] & 0x3F != TEXT_RESPONSE:
        return False, f"no SendTargets answer (opcode {header[0]:#x})", []
    names = [v.decode(errors="replace") for k, _, v in
             (p.partition(b"=") for p in data.split(b"\0") if p) if k == b"TargetName"]
    return True, f"{portal}:{port} answers iSCSI", names


# ------------------------------------------------------------------------------ AoE
def aoe_query(interface: str, shelf: int, slot: int, timeout: float = WAIT) -> list[str]:
    """The source MACs answering an AoE Query Config for ``shelf.slot`` on ``interface``."""
    tag = secrets.randbits(31)
    # AoE header: ver 1 flags 0, error 0, major, minor, command 1 (query config), tag; then
    # buffer count, firmware, sector count, AoE version + ccmd 0 (read), string length 0
    body = struct.pack("!BBHBBI", 0x10, 0, shelf, slot, 1, tag) + struct.pack("!HHBBH", 0, 0,
                                                                             0, 0x10, 0)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(AOE_ETHERTYPE)) as sock:
        sock.bind((interface, AOE_ETHERTYPE))
        own = sock.getsockname()[4]
        sock.send(b"\xff" * 6 + own + struct.pack("!H", AOE_ETHERTYPE) + body + bytes(28))
        found: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame, address = sock.recvfrom(2048)
            except TimeoutError:
                break
            if address[2] == 4 or len(frame) < 24:  # PACKET_OUTGOING: our own
                continue
            flags, major, minor, command, got = struct.unpack("!BxHBBI", frame[14:24])
            if flags & 0x08 and got == tag and (major, minor) == (shelf, slot) and command == 1:
                mac = frame[6:12].hex(":")
                if mac not in found:
                    found.append(mac)
        return found


def _export_up(cfg: DoctorSettings, export: str) -> bool | None:
    """Whether the local blockexport service says ``export`` is up (its /metrics), None if
    the service does not answer."""
    host = cfg.blockexport.metrics_host if cfg.blockexport.metrics_host not in ("", "0.0.0.0") \
        else "127.0.0.1"
    status, body, _ = http_fetch(f"http://{host}:{cfg.blockexport.metrics_port}/metrics",
                                 limit=4 << 20)
    if status != 200:
        return None
    line = re.search(rb'^bootyard_blockexport_export_up\{export="' + re.escape(export.encode())
                     + rb'"\} (\S+)$', body, re.M)
    return bool(line and float(line.group(1)) == 1)


# ------------------------------------------------------------------------------ the checks
async def block_checks(report: Report, target: boottarget.Target, cfg: DoctorSettings,
                       interface: str | None, iscsi_port: int = ISCSI_PORT) -> None:
    what = f"{target.kind} target {target.export}"
    if target.kind == "iscsi":
        reachable, detail, names = iscsi_discovery(target.portal, iscsi_port)
        if reachable and target.iqn not in names:
            report.add("block", what, False, f"{detail}, but does not list {target.iqn} "
                       f"(it lists: {', '.join(names) or 'nothing'})",
                       "is the export served? bootyard blockexport show " + target.export)
        elif reachable:
            report.add("block", what, True, f"{detail}; lists {target.iqn}")
        else:
            report.add("block", what, reachable, detail,
                       f"is the iSCSI target running and listening on {target.portal}:"
                       f"{iscsi_port}? (http.san_server names the portal)")
        return
    served = cfg.dhcp.interfaces
    iface = interface or (served[0] if served else cfg.blockexport.interface)
    name = f"e{target.shelf}.{target.slot}"
    try:
        answers = aoe_query(iface, target.shelf, target.slot) if iface else []
    except OSError as exc:
        report.add("block", what, False, f"cannot send AoE on {iface}: {exc.strerror or exc}",
                   "run as root (a raw socket)")
        return
    up = _export_up(cfg, target.export)
    if len(answers) > 1 or (answers and up):
        others = ", ".join(answers)
        report.add("block", what, False, f"{name} is answered on {iface} by {others}"
                   + (" as well as by this host's blockexport service" if up else ""),
                   "two targets for one shelf.slot: give one of them another (the export's "
                   "aoe_shelf/aoe_slot, or the other target's)")
        return
    if answers:
        report.add("block", what, True, f"{name} answers on {iface} from {answers[0]}")
        return
    if up:
        report.add("block", what, True, f"{name} is served by this host's blockexport "
                   "service (export_up 1); no other target answers for it on "
                   f"{iface or 'the network'}")
    else:
        report.add("block", what, False, f"no AoE target answers for {name} on "
                   f"{iface or '(no interface)'}" + ("" if up is None else "; this host's "
                                                     "blockexport service has it down"),
                   "start the blockexport service (blockexport.interface on the hosts' "
                   "network); bootyard blockexport show " + target.export)
