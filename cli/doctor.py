"""``bootyard doctor [MAC]``: what will fail, before a machine is powered on (docs/doctor.md).

With a MAC: first the inventory (the host's record, its profile, its export, its subnet,
reservation conflicts, its boot plan and the files it names; the rules are those of
:mod:`shared.inventory` and :mod:`shared.bootplan`, never restated here), then live probes from
the deploy host acting as that host's firmware: a DHCP DISCOVER/REQUEST with the host's MAC for
each architecture its profile allows (then a RELEASE: no lease is left behind), the same as iPXE
would send it, a TFTP size probe of each boot file, an HTTP fetch of its iPXE script and HEAD of
its kernel, initrds and install file. Without a MAC: the deploy host itself (the services'
``/healthz``, Redis reachable and persistent, the DHCP interfaces, loaders and images present).

Each step is one line: ``PASS``, ``FAIL`` (with the reason and the fix) or ``SKIP`` (why). The
exit status is 1 if any step failed.

The DHCP probe sends only on an interface the DHCP service is configured for
(``dhcp.interfaces``), from a UDP socket bound to that interface: the broadcast DISCOVER is looped
back to the local DHCP service (as from a machine on that network) and goes out on the wire,
where another DHCP server would answer too (and is reported). The probes show in the host's
timeline between ``doctor.start`` and ``doctor.end`` events; its boot state ignores them.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from services.dhcp.settings import DhcpSection
from services.http.access import host_token
from services.http.settings import HttpSection
from services.tftp.settings import TftpSection
from shared import bootplan, checks, paths
from shared.addresses import normalise_mac
from shared.events import EventLog
from shared.leases import Leases
from shared.schema import KINDS, parse_record
from shared.settings import CommonSettings
from shared.store import InventoryStore, InventoryUnavailable

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


@dataclasses.dataclass(frozen=True)
class DoctorSettings(CommonSettings):
    """The sections the doctor reads from the shared config file (BOOTYARD_CONFIG)."""
    dhcp: DhcpSection = dataclasses.field(default_factory=DhcpSection)
    tftp: TftpSection = dataclasses.field(default_factory=TftpSection)
    http: HttpSection = dataclasses.field(default_factory=HttpSection)


@dataclasses.dataclass(frozen=True)
class Step:
    area: str  # inventory, dhcp, tftp, http, host
    what: str
    ok: bool | None  # None: skipped
    detail: str
    fix: str = ""

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        text = f"{word}  {self.area:<9} {self.what}: {self.detail}"
        return text + (f"  -> fix: {self.fix}" if self.fix and self.ok is False else "")


class Report:
    def __init__(self, out) -> None:
        self.out = out
        self.steps: list[Step] = []

    def add(self, area: str, what: str, ok: bool | None, detail: str, fix: str = "") -> bool:
        step = Step(area, what, ok, detail, fix)
        self.steps.append(step)
        print(step.line(), file=self.out, flush=True)
        return bool(ok)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.steps if s.ok is False)

    def summary(self) -> int:
        passed = sum(1 for s in self.steps if s.ok)
        skipped = sum(1 for s in self.steps if s.ok is None)
        print(f"{len(self.steps)} checks: {passed} passed, {self.failed} failed, "
              f"{skipped} skipped", file=self.out)
        return 1 if self.failed else 0


def base_url(cfg: DoctorSettings, server_ip: str | None = None) -> str:
    """The HTTP service's base URL as machines are told it."""
    if cfg.http.public_url:
        return cfg.http.public_url.rstrip("/")
    if cfg.dhcp.http_base_url:
        return cfg.dhcp.http_base_url.rstrip("/")
    return f"http://{server_ip or '127.0.0.1'}:{cfg.http.port}"


# ------------------------------------------------------------------------------ the inventory
@dataclasses.dataclass
class Found:
    host: Any = None
    profile: Any = None
    export: Any = None
    subnet: Any = None
    plan: bootplan.Plan | None = None


async def inventory_checks(report: Report, store: InventoryStore, client, mac: str,
                           cfg: DoctorSettings) -> Found:
    found = Found()
    dump = await store.dump()
    problems = checks.validate_dump(dump)
    host_key = KINDS["host"].key(mac)

    def problems_of(key: str, area: str, what: str, fix: str) -> bool:
        bad = [p for p in problems if p.key == key]
        for p in bad:
            report.add(area, what, False if p.severity == "error" else None,
                       f"{p.field}={p.value!r}: {p.reason}" + (" (warning)"
                                                               if p.severity != "error" else ""),
                       fix)
        return not any(p.severity == "error" for p in bad)

    raw = dump.get("host", {}).get(mac)
    if raw is None:
        report.add("inventory", "host record", False, f"no host {mac} in the inventory (it gets "
                   f"http.unknown_host: {cfg.http.unknown_host})",
                   f"bootyard host add {mac} --profile NAME")
        return found
    host, _ = parse_record(KINDS["host"], mac, raw)
    found.host = host
    if problems_of(host_key, "inventory", "host record", f"bootyard host set {mac} ...") and \
            host is not None:
        report.add("inventory", "host record", True,
                   f"{host.hostname or '(no hostname)'}, boot_mode {host.boot_mode}, "
                   f"profile {host.profile or '(none)'}, ip {host.ip or '(pool)'}")
    if host is None:
        return found
    if not host.enabled:
        report.add("inventory", "enabled", False, "the host is disabled: DHCP ignores it and "
                   "its script boots nothing", f"bootyard host set {mac} --enabled true")
    host_, profile, export = _records(dump, mac)
    found.profile, found.export = profile, export
    if host.profile:
        key = KINDS["profile"].key(host.profile)
        if host.profile in dump.get("profile", {}):
            if problems_of(key, "inventory", "profile", f"bootyard profile set {host.profile} ..."):
                report.add("inventory", "profile", True,
                           f"{host.profile}: install {profile.install}, kernel "
                           f"{profile.kernel or '(none)'}")
    if profile is not None and profile.export:
        key = KINDS["export"].key(profile.export)
        if problems_of(key, "inventory", "export", f"bootyard blockexport set {profile.export}"
                                                    " ...") and export is not None:
            report.add("inventory", "export", True, f"{export.name}: {export.kind}")
    subnets = {n: parse_record(KINDS["subnet"], n, r)[0]
               for n, r in dump.get("subnet", {}).items()}
    if host.ip:
        found.subnet = next((s for s in subnets.values() if s is not None and
                             _contains(s.network, host.ip)), None)
        if found.subnet is not None:
            report.add("inventory", "subnet", True, f"{host.ip} is in subnet {found.subnet.name}"
                       f" ({found.subnet.network})")
        lease = await Leases(client).lease(host.ip)
        if lease is not None and lease.mac != mac and lease.current():
            report.add("inventory", "reservation", False,
                       f"{host.ip} is leased to {lease.mac} until "
                       f"{time.strftime('%H:%M:%S', time.localtime(lease.expires))}",
                       "give the host another ip, or let that lease end (bootyard leases)")
        elif not [p for p in problems if p.key == host_key and p.field == "ip"]:
            report.add("inventory", "reservation", True, f"{host.ip} is this host's alone")
    elif not subnets:
        report.add("inventory", "subnet", False, "no subnet in the inventory: DHCP answers "
                   "nobody", "bootyard subnet add NAME --network ... --ranges ...")
    else:
        report.add("inventory", "subnet", True, "no reserved address: it gets one from the "
                   "pool of its network's subnet")
    facts = bootplan.Facts(base_url=base_url(cfg), san_server=cfg.http.san_server,
                           initiator_prefix=cfg.http.initiator_prefix,
                           unknown_host=cfg.http.unknown_host, subnet=found.subnet)
    try:
        plan = bootplan.plan(mac, host_, profile, export, facts)
    except bootplan.TemplateFailed as exc:
        report.add("inventory", "boot plan", False, f"the profile's cmdline does not render: "
                   f"{exc}", f"bootyard profile set {host.profile} --cmdline ...")
        return found
    found.plan = plan
    if plan.outcome == "error":
        report.add("inventory", "boot plan", False, plan.reason,
                   f"bootyard host show {mac}; bootyard profile show {host.profile or 'NAME'}")
    elif plan.outcome == "disabled":
        pass  # said above
    else:
        what = [plan.outcome]
        if plan.kernel:
            what.append(f"kernel {plan.kernel.value}")
        what += [f"initrd {i.value}" for i in plan.initrds]
        if plan.target:
            what.append(f"{plan.target.kind} target {plan.target.export}")
        report.add("inventory", "boot plan", True, ", ".join(what))
        _local_files(report, plan, profile, cfg)
    return found


def _records(dump, mac: str):
    """bootplan.records() on the dump (the one host -> profile -> export lookup)."""
    class View:
        def host(self, m):
            raw = dump.get("host", {}).get(m)
            return parse_record(KINDS["host"], m, raw)[0] if raw else None

        def profile(self, name):
            raw = dump.get("profile", {}).get(name)
            return parse_record(KINDS["profile"], name, raw)[0] if raw else None

        def export(self, name):
            raw = dump.get("export", {}).get(name)
            return parse_record(KINDS["export"], name, raw)[0] if raw else None

        def all(self, kind):  # groups and subnets: the host's groups are resolved
            found = (parse_record(KINDS[kind], i, raw)[0]
                     for i, raw in dump.get(kind, {}).items())
            return [r for r in found if r is not None]
        def image(self, name):
            raw = dump.get("image", {}).get(name)
            return parse_record(KINDS["image"], name, raw)[0] if raw else None
    return bootplan.records(View(), mac)


def _contains(network, ip: str) -> bool:
    import ipaddress
    return ipaddress.IPv4Address(ip) in network


def _local_files(report: Report, plan: bootplan.Plan, profile, cfg: DoctorSettings) -> None:
    """The plan's images under http.images_root, when the doctor runs where they are."""
    root = Path(cfg.http.images_root)
    if not root.is_dir():
        report.add("host", "images", None, f"http.images_root {root} is not here: the HTTP "
                   "probes check the files")
        return
    locations = [plan.kernel, *plan.initrds]
    if profile is not None and profile.root_image and plan.outcome == "live":
        locations.append(bootplan.parse_location(profile.root_image))
    for loc in locations:
        if loc is None or loc.scheme != "image":
            continue
        try:
            path = paths.resolve_under(root, loc.value)
        except paths.PathRefused as exc:
            report.add("host", f"image {loc.value}", False, str(exc), "fix the profile's path")
            continue
        if path.is_file():
            report.add("host", f"image {loc.value}", True, f"{path} ({path.stat().st_size} "
                       "bytes)")
        else:
            report.add("host", f"image {loc.value}", False, f"{path} is missing",
                       f"put the file at {path}")


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
    finally:
        probe.close()
    return got


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
    vendor_echo = offer.options.get("vendor_class_id", b"")
    if not ipxe and isinstance(vendor_echo, bytes) and not vendor_echo.startswith(b"PXEClient"):
        problems.append("no option 60 PXEClient in the OFFER (PXE firmware ignores it)")
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
    import asyncio
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
    import asyncio
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


# ------------------------------------------------------------------------------ HTTP probes
def http_fetch(url: str, method: str = "GET", limit: int = 65536) -> tuple[int, bytes, str]:
    """(status, first ``limit`` bytes of the body, Content-Length); status 0: unreachable."""
    req = urllib.request.Request(url, method=method,
                                 headers={"User-Agent": "bootyard-doctor"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read(limit) if method == "GET" else b""
            return resp.status, body, resp.headers.get("Content-Length", "?")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(limit), exc.headers.get("Content-Length", "?")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason).encode(), "?"


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
    mapper = bootplan.PathMapper(base)
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
    url = bootplan.install_urls(base, mac, host_token(cfg.http.token_secret, mac))[key]
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


# ------------------------------------------------------------------------------ the deploy host
async def deploy_host_checks(report: Report, store: InventoryStore, cfg: DoctorSettings) -> None:
    for service, section in (("dhcp", cfg.dhcp), ("tftp", cfg.tftp), ("http", cfg.http)):
        host = section.metrics_host if section.metrics_host not in ("0.0.0.0", "") \
            else "127.0.0.1"
        url = f"http://{host}:{section.metrics_port}/healthz"
        status, body, _ = http_fetch(url)
        report.add("host", f"{service} service", status == 200,
                   f"{url}: " + (body.decode(errors="replace").strip()[:60] or "ok"
                                 if status == 200 else f"HTTP {status}" if status
                                 else "unreachable"),
                   f"start it (docker compose up -d {service}; docker compose logs {service})")
    try:
        await store.ping()
        report.add("host", "redis", True, f"{cfg.redis.url} answers")
    except InventoryUnavailable as exc:
        report.add("host", "redis", False, str(exc), "start redis-server; check redis.url")
        return
    try:
        persist = await store.persistence()
        durable = persist.get("appendonly") == "yes" or bool(persist.get("save"))
        report.add("host", "redis persistence", durable,
                   f"appendonly {persist.get('appendonly')}, appendfsync "
                   f"{persist.get('appendfsync')}, save {persist.get('save')!r}",
                   "redis.conf: appendonly yes (leases and the inventory survive a restart)")
    except InventoryUnavailable as exc:
        report.add("host", "redis persistence", None, f"not told: {exc}")
    from services.dhcp.transport import resolve_interfaces
    from shared.runtime import StartupError
    try:
        for iface in resolve_interfaces(cfg.dhcp.interfaces):
            report.add("host", f"dhcp interface {iface.name}", True, f"address {iface.address}")
    except StartupError as exc:
        report.add("host", "dhcp interfaces", False, str(exc), "set dhcp.interfaces")
    root = Path(cfg.tftp.root)
    profiles = {n: parse_record(KINDS["profile"], n, r)[0]
                for n, r in (await store.raw_all(KINDS["profile"])).items()}
    arches = {getattr(p, "arch", None) or "x86_64" for p in profiles.values()} or {"x86_64"}
    loaders = {"x86_64": (cfg.dhcp.ipxe_bios, cfg.dhcp.ipxe_efi),
               "i386": (cfg.dhcp.ipxe_bios, cfg.dhcp.ipxe_efi32),
               "arm64": (cfg.dhcp.ipxe_arm64,)}  # what the profiles' architectures boot
    for name in sorted({n for a in arches for n in loaders.get(a, ())}):
        try:
            path = paths.resolve_under(root, name)
        except paths.PathRefused as exc:
            report.add("host", f"loader {name}", False, str(exc), "fix the dhcp setting")
            continue
        report.add("host", f"loader {name}", path.is_file(),
                   str(path) + ("" if path.is_file() else " is missing"),
                   f"make tftp-root (fills {root})")
    images = Path(cfg.http.images_root)
    report.add("host", "images root", images.is_dir(), str(images) +
               ("" if images.is_dir() else " is missing"), "create it and copy the images")
    if images.is_dir():
        for name, profile in sorted(profiles.items()):
            if profile is None:
                continue
            for value in (profile.kernel, *profile.initrd, profile.root_image):
                if not value or "://" in value:
                    continue
                try:
                    path = paths.resolve_under(images, value)
                except paths.PathRefused:
                    continue
                if not path.is_file():
                    report.add("host", f"profile {name}", False, f"{path} is missing",
                               f"put {value} under {images}")
    if await store.keys(KINDS["mirror"]):
        report.add("host", "mirrors", None, "mirror freshness is not checked yet")


# ------------------------------------------------------------------------------ entry
async def run(args, store: InventoryStore, client, out) -> int:
    cfg = getattr(args, "doctor_settings", None) or DoctorSettings()
    report = Report(out)
    if not args.mac:
        await deploy_host_checks(report, store, cfg)
        return report.summary()
    mac = normalise_mac(args.mac)
    found = await inventory_checks(report, store, client, mac, cfg)
    if args.no_probe or found.host is None:
        if found.host is None:
            report.add("dhcp", "probes", None, "no host record to probe for")
        return report.summary()
    log = EventLog(client, "cli")
    log.emit("doctor.start", mac)
    await log.flush()
    try:
        answers = await dhcp_checks(report, client, mac, found, cfg, args.interface, args.force)
        tftp_checks(report, answers, cfg)
        await http_checks(report, client, mac, found, answers, cfg)
        if found.plan is not None and found.plan.target is not None:
            report.add("block", f"{found.plan.target.kind} target", None,
                       "block export reachability is not probed yet")
    finally:
        log.emit("doctor.end", mac)
        await log.flush()
    return report.summary()


def load_settings(environ=None) -> DoctorSettings:
    from shared import settings as settings_mod
    return settings_mod.load_settings(DoctorSettings, None, dict(environ or os.environ))
