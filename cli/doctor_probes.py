"""``bootyard doctor MAC``'s live probes, acting as the host's firmware would: DHCP (DORA and
RELEASE per architecture its profile allows, then iPXE's), a TFTP size probe of each boot file,
an HTTP fetch of its iPXE script and HEAD of its kernel, initrds and install file; plus the
vendor options a firmware needs to accept the answer (option 60/43, cli/doctor_vendor.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import struct
import time
from typing import Any

from cli.doctor_report import DoctorSettings, Found, Report, base_url, http_fetch
from cli.doctor_vendor import bsdp_images, bsdp_list_packet, vendor_problems
from services.dhcp.settings import DhcpSection
from services.http.access import host_token
from shared import bootcontext, scriptvalues
from shared.events import EventLog
from shared.leases import Leases
from shared.store import InventoryUnavailable

# (option 93 architecture, option 60 vendor class) per profile arch, as the firmware sends them
FIRMWARE = {
    "x86_64": ((0, "PXEClient:Arch:00000:UNDI:002001", "BIOS PXE"),
               (7, "PXEClient:Arch:00007:UNDI:003016", "UEFI x86-64 PXE")),
    "i386": ((0, "PXEClient:Arch:00000:UNDI:002001", "BIOS PXE"),
             (6, "PXEClient:Arch:00006:UNDI:003016", "UEFI IA32 PXE")),
    "arm64": ((11, "PXEClient:Arch:00011:UNDI:003016", "UEFI ARM64 PXE"),),
}
INSTALL_FILE = {"kickstart": "kickstart", "preseed": "preseed", "cloud-init": "user_data"}
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
DHCP_WAIT = 3.0  # seconds for an OFFER or ACK (one retransmission)
OTHER_OFFERS = 1.0  # seconds, after the first OFFER, for other servers' offers


# ------------------------------------------------------------------------------ DHCP probe
def _dhcp_packet(kind: str, mac: str, xid: int, arch: int | None, vendor: str | None,
                 ipxe: bool = False, requested: str | None = None,
                 server_id: str | None = None, ciaddr: str = "0.0.0.0") -> bytes:
    from scapy.layers.dhcp import BOOTP, DHCP
    options: list[Any] = [("message-type", kind)]
    if requested:
        options.append(("requested_addr", requested))
    if server_id:
        options.append(("server_id", server_id))
    if arch is not None:
        options.append((93, struct.pack("!H", arch)))
        options.append((94, b"\x01\x02\x01"))  # UNDI 2.1, as the firmware sends it
    if vendor:
        options.append(("vendor_class_id", vendor.encode()))
    if ipxe:
        options.append(("user_class", b"iPXE"))
    options += [("param_req_list", [1, 3, 6, 12, 15, 28, 42, 43, 54, 60, 66, 67, 97]), "end"]
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    packet = BOOTP(op=1, htype=1, hlen=6, xid=xid, flags=0x8000, ciaddr=ciaddr,
                   chaddr=chaddr) / DHCP(options=options)
    return bytes(packet)


@dataclasses.dataclass
class Answer:
    kind: str  # offer, ack, nak
    yiaddr: str
    server: str  # option 54
    siaddr: str
    boot_file: str
    options: dict[str, Any]
    source: str


def _parse(data: bytes, xid: int, source: str) -> Answer | None:
    from scapy.layers.dhcp import BOOTP, DHCP
    try:
        packet = BOOTP(data)
    except Exception:  # noqa: BLE001 - not a BOOTP packet: not ours
        return None
    if packet.op != 2 or packet.xid != xid or DHCP not in packet:
        return None
    options = {o[0]: o[1] for o in packet[DHCP].options if isinstance(o, tuple)}
    kind = {2: "offer", 5: "ack", 6: "nak"}.get(options.get("message-type"))
    if kind is None:
        return None
    boot = options.get("boot-file-name") or packet.file.rstrip(b"\0")
    boot = boot.decode(errors="replace") if isinstance(boot, bytes) else str(boot or "")
    return Answer(kind, packet.yiaddr, str(options.get("server_id", "")), packet.siaddr,
                  boot, options, source)


class DhcpProbe:
    """A firmware's DHCP exchange from the deploy host, on one served interface."""

    def __init__(self, interface: str, cfg: DhcpSection) -> None:
        self.interface = interface
        self.cfg = cfg
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        self.sock.bind(("0.0.0.0", cfg.client_port))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("255.255.255.255", self.cfg.server_port))

    def exchange(self, data: bytes, xid: int, want: tuple[str, ...]) -> list[Answer]:
        """Send ``data``, gather the answers of kinds ``want`` for DHCP_WAIT seconds (the
        request is sent once more half-way if nothing came)."""
        answers: list[Answer] = []
        self.send(data)
        deadline = time.monotonic() + DHCP_WAIT
        resent = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return answers
            if not answers and not resent and left < DHCP_WAIT / 2:
                self.send(data)
                resent = True
            self.sock.settimeout(min(left, DHCP_WAIT / 2))
            try:
                reply, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            answer = _parse(reply, xid, source[0])
            if answer is not None and answer.kind in want:
                answers.append(answer)
                if answer.kind in ("ack", "nak"):
                    return answers
                # offers: a moment more for another server's (reported as a fault)
                deadline = min(deadline, time.monotonic() + OTHER_OFFERS)

    def release(self, mac: str, ip: str, server: str) -> None:
        self.send(_dhcp_packet("release", mac, secrets.randbits(32), None, None,
                               server_id=server, ciaddr=ip))


async def dhcp_checks(report: Report, client, mac: str, found: Found, cfg: DoctorSettings,
                      interface: str | None, force: bool) -> list[Answer]:
    """DORA + RELEASE per architecture, and an iPXE DISCOVER; the OFFERs/ACKs got."""
    served = cfg.dhcp.interfaces
    if not served:
        report.add("dhcp", "probe", None, "dhcp.interfaces is not set in this config "
                   "(BOOTYARD_CONFIG or BOOTYARD_DHCP__INTERFACES): no interface to probe on")
        return []
    iface = interface or served[0]
    if iface not in served:
        report.add("dhcp", "probe", False, f"refused to send DHCP on {iface}: not one of "
                   f"dhcp.interfaces ({', '.join(served)})", "--interface one of those")
        return []
    host = found.host
    if host is not None and host.ip and not force:
        lease = await Leases(client).lease(host.ip)
        if lease is not None and lease.mac == mac and lease.current() and \
                lease.state == "bound":
            report.add("dhcp", "probe", None, f"the host holds {host.ip} now (bound until "
                       f"{time.strftime('%H:%M:%S', time.localtime(lease.expires))}): a probe "
                       "would release its lease; --force to probe anyway")
            return []
    arches = FIRMWARE.get(getattr(found.profile, "arch", None) or "x86_64", FIRMWARE["x86_64"])
    try:
        probe = DhcpProbe(iface, cfg.dhcp)
    except OSError as exc:
        report.add("dhcp", "probe", False, f"cannot send on {iface} from port "
                   f"{cfg.dhcp.client_port}: {exc.strerror}",
                   "run as root; stop a DHCP client using that port on this host")
        return []
    got: list[Answer] = []
    try:
        for arch, vendor, label in arches:
            answer = await _dora(report, client, probe, mac, found, arch, vendor, label)
            if answer is not None:
                got.append(answer)
        if got:  # iPXE, chained from the first loader, asks again with user class iPXE
            arch, vendor, _ = arches[0]
            answer = await _dora(report, client, probe, mac, found, arch, vendor,
                                 "iPXE", ipxe=True)
            if answer is not None:
                got.append(answer)
        if found.netboots:  # Apple NetBoot images in the inventory: a Mac asks with BSDP
            bsdp_check(report, probe, mac, found.netboots)
    finally:
        probe.close()
    return got


def bsdp_check(report: Report, probe: DhcpProbe, mac: str, images: tuple[str, ...]) -> None:
    """A Mac's INFORM[LIST] from the interface's address; the answer (unicast to the port the
    request names, BSDP option 5) must list the inventory's enabled NetBoot images."""
    from services.dhcp.transport import interface_address
    try:
        ciaddr = interface_address(probe.interface)
    except OSError as exc:
        report.add("dhcp", "BSDP (Mac NetBoot)", None, f"no address on {probe.interface}: {exc}")
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as replies:
        replies.bind(("0.0.0.0", 0))
        xid = secrets.randbits(32)
        probe.send(bsdp_list_packet(mac, xid, ciaddr, replies.getsockname()[1]))
        deadline = time.monotonic() + DHCP_WAIT
        listed = None
        while listed is None and (left := deadline - time.monotonic()) > 0:
            replies.settimeout(left)
            try:
                data, _source = replies.recvfrom(4096)
            except TimeoutError:
                break
            listed = bsdp_images(data, xid)
    if listed is None:
        report.add("dhcp", "BSDP (Mac NetBoot)", False, f"no answer to a BSDP INFORM[LIST] in "
                   f"{DHCP_WAIT:.0f} s", "the DHCP service log says why (event=ignored); "
                   "are the netboot images enabled?")
        return
    missing = sorted(set(images) - set(listed))
    report.add("dhcp", "BSDP (Mac NetBoot)", not missing,
               f"LIST answered with {', '.join(listed) or 'no image'}" +
               (f"; missing {', '.join(missing)}" if missing else ""),
               "bootyard netboot show NAME (enabled? a valid index?)")


async def _dora(report: Report, client, probe: DhcpProbe, mac: str, found: Found, arch: int,
                vendor: str, label: str, ipxe: bool = False) -> Answer | None:
    what = f"{label} (arch {arch})"
    xid = secrets.randbits(32)
    started = time.time()
    offers = probe.exchange(_dhcp_packet("discover", mac, xid, arch, vendor, ipxe), xid,
                            ("offer",))
    if not offers:
        why = await _ignored_reason(client, mac, started)
        report.add("dhcp", what, False, "no OFFER in " f"{DHCP_WAIT:.0f} s" +
                   (f": the DHCP service ignored it ({why})" if why else ""),
                   "bootyard host set MAC --enabled true" if why and "host_disabled" in why
                   else "is the DHCP service running on this interface? its log says why "
                        "(event=ignored)")
        return None
    servers = {o.server for o in offers}
    offer = offers[0]
    if len(servers) > 1:
        report.add("dhcp", what, False, f"OFFERs from {len(servers)} DHCP servers: "
                   f"{', '.join(sorted(servers))}", "stop the other DHCP server on this "
                   "network, or make it ignore this MAC")
    problems = []
    host = found.host
    if host is not None and host.ip and offer.yiaddr != host.ip:
        problems.append(f"offered {offer.yiaddr}, not its reserved {host.ip}")
    if not offer.boot_file:
        problems.append("no boot file in the OFFER")
    if ipxe and not offer.boot_file.startswith(("http://", "https://")) and offer.boot_file:
        problems.append(f"iPXE was offered {offer.boot_file!r}, not its script URL")
    problems += vendor_problems(offer.options, ipxe)
    detail = (f"OFFER {offer.yiaddr} from {offer.server}, boot file {offer.boot_file!r}, "
              f"next-server {offer.siaddr}")
    if problems:
        report.add("dhcp", what, False, detail + ": " + "; ".join(problems),
                   "check the host's vars (boot_file_*), the subnet's boot_file_* and "
                   "the dhcp section")
    else:
        report.add("dhcp", what, True, detail)
    xid = secrets.randbits(32)
    answers = probe.exchange(_dhcp_packet("request", mac, xid, arch, vendor, ipxe,
                                          requested=offer.yiaddr, server_id=offer.server),
                             xid, ("ack", "nak"))
    if not answers:
        report.add("dhcp", f"{what} REQUEST", False, f"no ACK for {offer.yiaddr} in "
                   f"{DHCP_WAIT:.0f} s", "the DHCP service log says why")
        return offer
    ack = answers[-1]
    if ack.kind == "nak":
        report.add("dhcp", f"{what} REQUEST", False, f"NAK for {offer.yiaddr}: "
                   f"{ack.options.get('error_message', b'')!r}", "the DHCP service log says why")
        return offer
    probe.release(mac, ack.yiaddr, ack.server)
    lease = await _wait_released(client, ack.yiaddr, mac)
    report.add("dhcp", f"{what} REQUEST", True, f"ACK {ack.yiaddr}; released it again"
               + ("" if lease else " (the lease is not marked released yet)"))
    return ack


async def _ignored_reason(client, mac: str, since: float) -> str | None:
    return await _event_reason(client, mac, "dhcp.ignored", since)


async def _event_reason(client, mac: str, kind: str, since: float) -> str | None:
    """The reason (and detail) of the host's latest ``kind`` event since ``since``: what the
    service said about the probe (services write their events within a moment)."""
    log = EventLog(client, "cli")
    for _ in range(10):
        try:
            events = await log.read(mac, count=50)
        except InventoryUnavailable:
            return None
        for event in reversed(events):
            if event.ts >= since - 1 and event.kind == kind:
                return " ".join(v for v in (event.fields.get("reason"),
                                            event.fields.get("detail")) if v)
        await asyncio.sleep(0.1)
    return None


async def _wait_released(client, ip: str, mac: str) -> bool:
    leases = Leases(client)
    for _ in range(20):
        lease = await leases.lease(ip)
        if lease is None or lease.mac != mac or lease.state != "bound":
            return True
        await asyncio.sleep(0.1)
    return False


# ------------------------------------------------------------------------------ TFTP probe
def tftp_size(server: str, port: int, name: str, timeout: float = 3.0) -> tuple[bool, str]:
    """A firmware's size probe: RRQ with tsize, then ERROR 8 on the OACK (the server records a
    benign ``tsize_probe``). (found, detail)."""
    request = b"\0\1" + name.encode() + b"\0octet\0tsize\x000\0blksize\x001468\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / 2)
        for _ in range(2):
            sock.sendto(request, (server, port))
            try:
                data, peer = sock.recvfrom(65536)
            except TimeoutError:
                continue
            opcode = int.from_bytes(data[:2], "big")
            if opcode == 6:  # OACK
                parts = data[2:].split(b"\0")
                opts = dict(zip(parts[::2], parts[1::2]))
                sock.sendto(b"\0\5\0\x08tsize probe done\0", peer)
                size = opts.get(b"tsize", b"?").decode()
                return True, f"{size} bytes"
            if opcode == 3:  # DATA: the server ignored the options
                sock.sendto(b"\0\5\0\0doctor: enough\0", peer)
                return True, "found (size not told)"
            if opcode == 5:
                code = int.from_bytes(data[2:4], "big")
                text = data[4:].split(b"\0")[0].decode(errors="replace")
                return False, f"ERROR {code}: {text}"
            return False, f"unexpected TFTP opcode {opcode}"
    return False, f"no answer from {server}:{port} in {timeout:.0f} s"


def tftp_checks(report: Report, answers: list[Answer], cfg: DoctorSettings) -> None:
    seen = set()
    for a in answers:
        if not a.boot_file or "://" in a.boot_file or a.boot_file in seen:
            continue
        seen.add(a.boot_file)
        server = a.siaddr if a.siaddr != "0.0.0.0" else a.server
        ok, detail = tftp_size(server, cfg.tftp.port, a.boot_file)
        report.add("tftp", f"boot file {a.boot_file}", ok,
                   f"from {server}: {detail}",
                   f"put {a.boot_file} under tftp.root ({cfg.tftp.root}; make tftp-root)")



async def http_checks(report: Report, client, mac: str, found: Found, answers: list[Answer],
                      cfg: DoctorSettings) -> None:
    plan = found.plan
    script_url = next((a.boot_file for a in answers if a.boot_file.startswith("http")
                       and "/boot/" in a.boot_file), None)
    server_ip = next((a.server for a in answers if a.server), None)
    base = base_url(cfg, server_ip)
    script_url = script_url or f"{base}/boot/ipxe?mac={mac}"
    status, body, _ = http_fetch(script_url)
    if status == 200 and body.startswith(b"#!ipxe"):
        report.add("http", "iPXE script", True, f"{script_url}: {len(body)} bytes")
    else:
        report.add("http", "iPXE script", False, f"{script_url}: "
                   + (f"HTTP {status}" if status else f"unreachable ({body.decode()})"),
                   "is the HTTP service running and reachable at that address?")
    if plan is None or plan.outcome in ("error", "disabled", "unknown", "local"):
        return
    mapper = scriptvalues.PathMapper(base)
    for what, loc in [("kernel", plan.kernel)] + [("initrd", i) for i in plan.initrds]:
        if loc is None:
            continue
        if loc.scheme == "tftp":
            ok, detail = tftp_size(loc.host.split(":")[0], cfg.tftp.port, loc.path)
            report.add("tftp", f"{what} {loc.value}", ok, detail, "put the file there")
            continue
        url = mapper.http_url(loc)
        status, body, length = http_fetch(url, "HEAD")
        report.add("http", f"{what} {loc.value}", status == 200,
                   f"{url}: " + (f"{length} bytes" if status == 200 else
                                 f"HTTP {status}" if status else f"unreachable "
                                                                 f"({body.decode()})"),
                   f"put it under http.images_root ({cfg.http.images_root})/{loc.value}"
                   if loc.scheme == "image" else "the URL must answer 200")
    profile = found.profile
    key = INSTALL_FILE.get(getattr(profile, "install", "none"))
    if key is None or plan.outcome != "install":
        return
    if not cfg.http.token_secret:
        report.add("http", "install file", None, "http.token_secret is not in this config: "
                   "cannot fetch the install file as the host would")
        return
    url = bootcontext.install_urls(base, mac, host_token(cfg.http.token_secret, mac))[key]
    started = time.time()
    status, body, length = http_fetch(url, "HEAD")
    shown = url.split("?", 1)[0]
    detail = f"{length} bytes" if status == 200 else f"HTTP {status}" if status else "unreachable"
    fix = "the HTTP service log says why"
    if status == 403:
        fix = "HTTP 403: the token is refused (http.token_secret differs from the service's)"
    elif status == 500:
        why = await _event_reason(client, mac, "http.render_error", started)
        if why:
            detail += f": {why}"
            fix = f"give the host or profile the variable (bootyard host set {mac} --var ...)" \
                if "Undefined" in why else "fix the profile's template"
    report.add("http", "install file", status == 200, f"{shown}: {detail}", fix)
