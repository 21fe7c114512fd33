"""What to answer: a pure function of the request, the inventory's answers and the lease decision.

``screen(request, host, subnet, ctx)`` says whether a request is for us at all (before any lease
work); ``decide(request, host, profile, subnet, lease, ctx)`` builds the reply and its destination
(RFC 2131 §4.1) or says why there is none. ``choose_boot`` is the boot-file policy (docs/dhcp.md).
No sockets, clock, Redis or logging here.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re

from services.dhcp import codec
from services.dhcp.codec import FLAG_BROADCAST, ZERO_IP, Message, MessageType, Opt
from shared import bootcontext, dhcpoptions
from shared.fields import FieldError, parse_hostname
from shared.records import Host, Profile, Subnet

BROADCAST_IP = "255.255.255.255"
# Every reason a request goes unanswered (a closed set: it is a metrics label).
IGNORE_REASONS = (
    "not_request", "not_dhcp", "unsupported_type", "host_disabled", "no_subnet",
    "other_server", "pool_exhausted", "unknown_client", "no_reply_expected", "redis_down",
    "malformed", "wrong_interface", "lease_conflict", "not_pxe", "reply_too_big",
)
# RFC 4578 §2.1 client system architecture types (option 93).
ARCH_BIOS = 0
ARCH_EFI_IA32 = 6
ARCH_EFI_X64 = (7, 9)  # 7 = EFI BC, 9 = EFI x86-64 (firmware uses both for x86-64)
ARCH_EFI_ARM64 = 11
ARCH_HTTP_X64 = 16
ARCH_HTTP_ARM64 = 19
# PXE 2.1 option 43 sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: boot from the file name given,
# skip boot-server discovery (what every PXE ROM does with a plain DHCP server).
PXE_VENDOR_OPTIONS = bytes((6, 1, 8, 255))
IPXE_NO_PXEDHCP = bytes((176, 1, 1))  # iPXE option 175.176 (no-pxedhcp) = 1


@dataclasses.dataclass(frozen=True)
class ServerContext:
    """What the policy needs to know about this server and the interface the request came in on."""

    server_ip: str  # our address on that interface: server identifier (54), default siaddr
    http_base_url: str  # e.g. http://198.18.0.1:8080 (no trailing slash)
    ipxe_bios: str = "undionly.kpxe"
    ipxe_efi: str = "ipxe.efi"
    ipxe_efi32: str = "ipxe-i386.efi"
    ipxe_arm64: str = "ipxe-arm64.efi"
    http_boot_x64: str = "/images/ipxe.efi"
    http_boot_arm64: str = "/images/ipxe-arm64.efi"
    server_port: int = 67
    client_port: int = 68


# The answers below are built for every packet: plain slotted dataclasses, not frozen ones (a
# frozen dataclass's __init__ costs about 0.15 us per field). Treat them as immutable.
@dataclasses.dataclass(slots=True)
class Lease:
    """The lease layer's answer: this address, for this long."""

    ip: str
    lease_time: int

    # (__init__ written out: compiled, it runs natively; codec.Message says why)
    def __init__(self, ip: str, lease_time: int) -> None:
        self.ip = ip
        self.lease_time = lease_time


@dataclasses.dataclass(slots=True)
class Refusal:
    """The lease layer refused the requested address (answered with a NAK)."""

    reason: str


@dataclasses.dataclass(slots=True)
class Destination:
    ip: str
    port: int
    broadcast: bool = False

    # (__init__ written out: compiled, it runs natively; codec.Message says why)
    def __init__(self, ip: str, port: int, broadcast: bool = False) -> None:
        self.ip = ip
        self.port = port
        self.broadcast = broadcast


@dataclasses.dataclass(slots=True)
class BootChoice:
    file: str  # file name (TFTP) or URL (HTTP boot, iPXE script)
    reason: str  # why, for events and logs: "ipxe-script", "bios", "uefi-x64", ...
    http: bool = False  # UEFI HTTP boot: answer with vendor class HTTPClient

    # (__init__ written out: compiled, it runs natively; codec.Message says why)
    def __init__(self, file: str, reason: str, http: bool = False) -> None:
        self.file = file
        self.reason = reason
        self.http = http


@dataclasses.dataclass(slots=True)
class Reply:
    message: Message
    destination: Destination
    boot: BootChoice | None = None


@dataclasses.dataclass(slots=True)
class Ignore:
    reason: str  # one of IGNORE_REASONS
    detail: str = ""


ANSWERED = (MessageType.DISCOVER, MessageType.REQUEST, MessageType.DECLINE,
            MessageType.RELEASE, MessageType.INFORM)


def screen(request: Message, host: Host | None, subnet: Subnet | None,
           ctx: ServerContext) -> Ignore | None:
    """Why this request is not ours to answer, or None if it is."""
    if request.op != codec.BOOTREQUEST:
        return Ignore("not_request")
    mtype = request.message_type
    if mtype is None:
        return Ignore("not_dhcp", "no option 53 (a BOOTP client?)")
    if mtype not in ANSWERED:
        return Ignore("unsupported_type", f"message type {mtype}")
    if host is not None and not host.enabled:
        return Ignore("host_disabled", f"host {host.mac} has enabled: no")
    server_id = request.ip_option(codec.OPT_SERVER_ID)
    if server_id is not None and server_id != ctx.server_ip and mtype != codec.INFORM:
        return Ignore("other_server", f"client chose server {server_id}")
    if subnet is None:
        return Ignore("no_subnet", "no enabled subnet for this interface or relay")
    return None


def requested_address(request: Message) -> str | None:
    """The address a REQUEST asks for: option 50 (SELECTING, INIT-REBOOT) or ciaddr (RENEWING,
    REBINDING), RFC 2131 §4.3.2."""
    asked = request.ip_option(codec.OPT_REQUESTED_IP)
    if asked:
        return asked
    return request.ciaddr if request.ciaddr != ZERO_IP else None


def reserved_address(host: Host | None, subnet: Subnet) -> str | None:
    """The host's fixed address, if it has one in this subnet."""
    if host is None or not host.ip:
        return None
    return host.ip if ipaddress.IPv4Address(host.ip) in subnet.network else None


def client_hostname(request: Message, host: Host | None) -> str | None:
    """The host name recorded with the lease: the host's own, else the client's option 12 when
    it is a host name (RFC 1123: ASCII letters, digits and '-'; trailing NULs dropped), in lower
    case; "" without either. None: the client's option 12 is not a host name (not ASCII, '_',
    spaces, an empty label ...): it is ignored, and the caller counts it."""
    if host is not None and host.hostname:
        return host.hostname
    raw = request.options.get(codec.OPT_HOSTNAME)
    if raw is None:
        return ""
    try:
        return parse_hostname(raw.rstrip(b"\0").decode("ascii"))
    except (UnicodeDecodeError, FieldError):
        return None


# ---------------------------------------------------------------- boot policy

def is_ipxe(request: Message) -> bool:
    return codec.OPT_IPXE_ENCAP in request.options or b"iPXE" in request.user_classes


def _url(base: str, path: str) -> str:
    if "://" in path:
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")


def choose_boot(request: Message, host: Host | None, profile: Profile | None,
                subnet: Subnet | None, ctx: ServerContext, mac: str) -> BootChoice | None:
    """The boot file for this client, or None for a client that is not network-booting.

    Order for each case: the host's ``var.<key>``, its profile's ``var.<key>``, the subnet's
    ``boot_file_*`` field, the built-in default from the settings. A client already running
    iPXE gets its script (not iPXE again), unless the host or its profile names a loader for
    its architecture that is not an iPXE build (pxelinux.0, lpxelinux.0, a GRUB core.efi ...):
    that named loader wins (docs/inventory.md "Choosing the loader").
    """
    if is_ipxe(request):
        named = _named_loader(request, host, profile)
        if named is None or _is_ipxe_build(named, ctx):
            return BootChoice(_url(ctx.http_base_url, f"/boot/ipxe?mac={mac}"), "ipxe-script")
        return BootChoice(named[0], named[1])  # e.g. PXELINUX on an iPXE NIC ROM
    vendor = request.options.get(codec.OPT_VENDOR_CLASS_ID, b"")
    arches = request.client_arches
    if not arches:
        if not vendor.startswith(b"PXEClient"):
            return None  # an ordinary DHCP client (an installed OS, udhcpc ...)
        arches = (ARCH_BIOS,)  # old PXE ROMs without option 93 are BIOS
    arch = arches[0]

    def pick(var: str, subnet_value: str | None, builtin: str) -> str:
        return bootcontext.var(var, host, profile) or subnet_value or builtin

    if arch in (ARCH_HTTP_X64, ARCH_HTTP_ARM64):
        if arch == ARCH_HTTP_X64:
            path = bootcontext.var("http_boot_file", host, profile) or ctx.http_boot_x64
            reason = "http-x64"
        else:
            path = bootcontext.var("http_boot_file_arm64", host, profile) or ctx.http_boot_arm64
            reason = "http-arm64"
        return BootChoice(_url(ctx.http_base_url, path), reason, http=True)
    bios, uefi, arm64 = ((subnet.boot_file_bios, subnet.boot_file_uefi, subnet.boot_file_arm64)
                         if subnet is not None else (None, None, None))
    if arch == ARCH_BIOS:
        return BootChoice(pick("boot_file_bios", bios, ctx.ipxe_bios), "bios")
    if arch in ARCH_EFI_X64:
        return BootChoice(pick("boot_file_uefi", uefi, ctx.ipxe_efi), "uefi-x64")
    if arch == ARCH_EFI_IA32:
        return BootChoice(pick("boot_file_uefi32", None, ctx.ipxe_efi32), "uefi-ia32")
    if arch == ARCH_EFI_ARM64:
        return BootChoice(pick("boot_file_arm64", arm64, ctx.ipxe_arm64), "uefi-arm64")
    return None  # an architecture we have no boot file for (documented)


_LOADER_VARS = {ARCH_BIOS: ("boot_file_bios", "bios"), ARCH_EFI_IA32: ("boot_file_uefi32",
                                                                       "uefi-ia32"),
                ARCH_EFI_ARM64: ("boot_file_arm64", "uefi-arm64"),
                **{a: ("boot_file_uefi", "uefi-x64") for a in ARCH_EFI_X64}}
_IPXE_BUILD = re.compile(r"ipxe|undionly|snponly|\.k*pxe$", re.IGNORECASE)


def _named_loader(request: Message, host: Host | None, profile: Profile | None
                  ) -> tuple[str, str] | None:
    """(file, reason) when the host or its profile names a loader for the client's
    architecture (``var.boot_file_bios`` / ``_uefi`` / ``_uefi32`` / ``_arm64``)."""
    arches = request.client_arches or (ARCH_BIOS,)
    found = _LOADER_VARS.get(arches[0])
    if found is None:
        return None
    file = bootcontext.var(found[0], host, profile)
    return (file, found[1]) if file else None


def _is_ipxe_build(named: tuple[str, str], ctx: ServerContext) -> bool:
    """Whether a named loader is iPXE itself (chaining it from iPXE would loop)."""
    base = named[0].rsplit("/", 1)[-1]
    return base in (ctx.ipxe_bios, ctx.ipxe_efi, ctx.ipxe_efi32, ctx.ipxe_arm64) or \
        bool(_IPXE_BUILD.search(base))


# ---------------------------------------------------------------- replies

def destination(request: Message, reply_type: int, yiaddr: str,
                ctx: ServerContext) -> Destination:
    """RFC 2131 §4.1: where a server's reply goes."""
    if request.giaddr != ZERO_IP:
        return Destination(request.giaddr, ctx.server_port)  # to the relay, port 67
    if reply_type == codec.NAK:
        return Destination(BROADCAST_IP, ctx.client_port, broadcast=True)
    if request.ciaddr != ZERO_IP:
        return Destination(request.ciaddr, ctx.client_port)
    # Unicast to yiaddr needs an ARP entry for a client that has no address yet; we broadcast
    # instead, which RFC 2131 allows and every client accepts.
    return Destination(BROADCAST_IP, ctx.client_port, broadcast=True)


def _base_options(reply_type: int, ctx: ServerContext) -> dict[int, bytes]:
    return {Opt.MESSAGE_TYPE: bytes((reply_type,)), Opt.SERVER_ID: codec.ip_bytes(ctx.server_ip)}


_SUBNET_OPTIONS: dict[int, tuple[Subnet, tuple[tuple[int, bytes], ...]]] = {}


def _subnet_options(subnet: Subnet) -> tuple[tuple[int, bytes], ...]:
    """The subnet's options, built once per Subnet object (looked up by identity: hashing a
    Subnet hashes every field, network included, which costs more than the lookup saves)."""
    cached = _SUBNET_OPTIONS.get(id(subnet))
    if cached is not None and cached[0] is subnet:
        return cached[1]
    if len(_SUBNET_OPTIONS) >= 1024:
        _SUBNET_OPTIONS.clear()
    options = _build_subnet_options(subnet)
    _SUBNET_OPTIONS[id(subnet)] = (subnet, options)
    return options


def _build_subnet_options(subnet: Subnet) -> tuple[tuple[int, bytes], ...]:
    net = subnet.network
    out = [(Opt.SUBNET_MASK, net.netmask.packed), (Opt.BROADCAST_ADDRESS,
                                                   net.broadcast_address.packed)]
    if subnet.router:
        out.append((Opt.ROUTER, codec.ip_bytes(subnet.router)))
    if subnet.dns:
        out.append((Opt.DNS_SERVERS, codec.ip_list(subnet.dns)))
    if subnet.domain:
        out.append((Opt.DOMAIN_NAME, subnet.domain.encode()))
    return tuple(out)


_CUSTOM: dict[tuple[int, int], tuple[Subnet, Host | None, tuple[tuple[int, bytes], ...]]] = {}


def custom_options(subnet: Subnet, host: Host | None) -> tuple[tuple[int, bytes], ...]:
    """The custom DHCP options (``option.<name>`` fields) for ``host`` in ``subnet``: the
    subnet's, then the host's (its effective record, groups already layered under its own:
    shared/groups.py), encoded once per pair of records (by identity: the records are replaced
    when the inventory changes), not per packet."""
    if not subnet.options and (host is None or not host.options):
        return ()
    key = (id(subnet), id(host))
    cached = _CUSTOM.get(key)
    if cached is not None and cached[0] is subnet and cached[1] is host:
        return cached[2]
    if len(_CUSTOM) >= 4096:
        _CUSTOM.clear()
    layers = dhcpoptions.layered((subnet.options, host.options if host is not None else {}))
    found = tuple((code, dhcpoptions.parse(name, value)[1])
                  for code, (name, value) in sorted(layers.items()))
    _CUSTOM[key] = (subnet, host, found)
    return found


def custom_sent(request: Message, custom: tuple[tuple[int, bytes], ...],
                boot: BootChoice | None) -> tuple[tuple[int, bytes], ...]:
    """The custom options a reply carries: those the client asks for (option 55), except a
    custom 67 when the boot plan chose a boot file (docs/dhcp.md "Custom options")."""
    prl = request.options.get(codec.OPT_PARAMETER_REQUEST_LIST, b"")
    return tuple((code, value) for code, value in custom
                 if code in prl and not (code == codec.OPT_BOOTFILE_NAME and boot is not None))


def _network_options(options: dict[int, bytes], subnet: Subnet) -> None:
    options.update(_subnet_options(subnet))


@functools.lru_cache(maxsize=256)
def _lease_options(lease_time: int) -> tuple[tuple[int, bytes], ...]:
    """Options 51, 58 (T1 = half) and 59 (T2 = 7/8) for a lease time (RFC 2131 §4.4.5)."""
    return ((Opt.LEASE_TIME, codec.u32(lease_time)),
            (Opt.RENEWAL_TIME, codec.u32(lease_time // 2)),
            (Opt.REBINDING_TIME, codec.u32(lease_time * 7 // 8)))


def _boot_fields(request: Message, boot: BootChoice | None, options: dict[int, bytes],
                 subnet: Subnet | None, ctx: ServerContext) -> tuple[str, bytes]:
    """(siaddr, file) and boot options for ``boot``."""
    if boot is None:
        return ZERO_IP, b""
    name = boot.file.encode()
    prl = request.options.get(Opt.PARAMETER_REQUEST_LIST, b"")
    if boot.http:
        options[Opt.VENDOR_CLASS_ID] = b"HTTPClient"  # RFC: UEFI spec 2.5+ §24.7 HTTP boot
    elif boot.reason != "ipxe-script" and request.options.get(
            Opt.VENDOR_CLASS_ID, b"").startswith(b"PXEClient"):  # PXE ROMs, not iPXE itself
        options[Opt.VENDOR_CLASS_ID] = b"PXEClient"
        options[Opt.VENDOR_SPECIFIC] = PXE_VENDOR_OPTIONS
    if boot.reason == "ipxe-script":
        # iPXE (seen with the 2019 builds in the lab) keeps collecting offers for about 3 s,
        # waiting for ProxyDHCP, unless the offer says there is none: its encapsulated option
        # 175, sub-option 176 "no-pxedhcp" = 1. Measured in the QEMU lab: iPXE's DHCP takes
        # 0.05 s instead of 3 s (docs/lab.md). bootyard never uses ProxyDHCP.
        options[Opt.IPXE_ENCAP] = IPXE_NO_PXEDHCP
    if len(name) > 128 or Opt.BOOTFILE_NAME in prl:
        options[Opt.BOOTFILE_NAME] = name
    siaddr = (subnet.next_server if subnet is not None else None) or ctx.server_ip
    return siaddr, (name if len(name) <= 128 else b"")


NOT_CHOSEN = object()  # decide(boot=...) default: choose the boot file here


def decide(request: Message, host: Host | None, profile: Profile | None, subnet: Subnet | None,
           lease: Lease | Refusal | None, ctx: ServerContext,
           mac: str = "", boot=NOT_CHOSEN, screened: bool = False) -> Reply | Ignore:
    """The reply to ``request`` given the lease layer's answer ``lease``. ``boot`` is
    ``choose_boot``'s answer when the caller already has it; ``screened``: the caller already
    had ``screen`` pass this request (with the same host, subnet and context)."""
    if not screened:
        refused = screen(request, host, subnet, ctx)
        if refused is not None:
            return refused
    mtype = request.message_type
    if mtype in (MessageType.RELEASE, MessageType.DECLINE):
        return Ignore("no_reply_expected")
    if mtype == MessageType.DISCOVER:
        if not isinstance(lease, Lease):
            return Ignore("pool_exhausted", getattr(lease, "reason", ""))
        reply_type = MessageType.OFFER
    elif mtype == MessageType.REQUEST:
        if lease is None:
            return Ignore("unknown_client", "no lease and no free address to confirm")
        reply_type = MessageType.ACK if isinstance(lease, Lease) else MessageType.NAK
    else:  # INFORM (RFC 2131 §4.3.5): configuration only, no address, no lease time
        reply_type = MessageType.ACK
        lease = None

    options = _base_options(reply_type, ctx)
    siaddr, file = ZERO_IP, b""
    yiaddr = ZERO_IP
    if reply_type == MessageType.NAK:
        boot = None
        options[Opt.MESSAGE] = (lease.reason if isinstance(lease, Refusal) else "").encode()[:255]
    else:
        assert subnet is not None  # screen() answers a request without a subnet: no_subnet
        _network_options(options, subnet)
        if isinstance(lease, Lease):
            yiaddr = lease.ip
            options.update(_lease_options(lease.lease_time))
        if host is not None and host.hostname:  # what client_hostname() gives such a host
            options[Opt.HOSTNAME] = host.hostname.encode()
        if boot is NOT_CHOSEN:
            boot = choose_boot(request, host, profile, subnet, ctx, mac)
        siaddr, file = _boot_fields(request, boot, options, subnet, ctx)
        custom = custom_options(subnet, host)
        if custom:  # after the subnet's and the boot plan's (43 replaces PXE's, documented)
            options.update(custom_sent(request, custom, boot))
    if Opt.RELAY_AGENT_INFO in request.options:  # RFC 3046 §2.2: echo it back unchanged
        options[Opt.RELAY_AGENT_INFO] = request.options[Opt.RELAY_AGENT_INFO]
    flags = request.flags & FLAG_BROADCAST
    message = Message(op=codec.Op.BOOTREPLY, htype=request.htype, hlen=request.hlen, hops=0,
                      xid=request.xid, secs=0, flags=flags,
                      ciaddr=request.ciaddr if mtype != MessageType.DISCOVER else ZERO_IP,
                      yiaddr=yiaddr, siaddr=siaddr, giaddr=request.giaddr,
                      chaddr=request.chaddr, file=file, options=options)
    return Reply(message, destination(request, reply_type, yiaddr, ctx), boot)


def max_message_size(request: Message) -> int | None:
    """Option 57 (RFC 2132 §9.10), when the client gives a sensible one."""
    value = request.options.get(codec.OPT_MAX_MESSAGE_SIZE)
    if value and len(value) == 2:
        size = int.from_bytes(value, "big")
        return size if size >= 576 else None
    return None


def reply_size_limit(request: Message) -> int | None:
    """The largest DHCP message (UDP payload) the client takes: ``codec.encode``'s max_size."""
    size = max_message_size(request)
    return size - codec.IP_UDP_OVERHEAD if size else None


def decide_proxy(request: Message, host: Host | None, profile: Profile | None,
                 subnet: Subnet | None, ctx: ServerContext, mac: str,
                 boot_server: bool) -> Reply | Ignore:
    """proxyDHCP (PXE 2.1 §2.2.5): boot information for PXE clients, never an address.

    On port 67 a PXE DISCOVER gets an OFFER with yiaddr 0 and the boot file (another server
    gives the address); on port 4011 (``boot_server``) the client's REQUEST gets the same
    answer as an ACK, sent back to where it came from by the caller."""
    if request.op != codec.Op.BOOTREQUEST:
        return Ignore("not_request")
    mtype = request.message_type
    if mtype is None:
        return Ignore("not_dhcp")
    if host is not None and not host.enabled:
        return Ignore("host_disabled", f"host {host.mac} has enabled: no")
    if boot_server:
        if mtype not in (MessageType.REQUEST, MessageType.INFORM):
            return Ignore("unsupported_type", f"message type {mtype} on the boot server port")
        reply_type = MessageType.ACK
    elif mtype == MessageType.DISCOVER:
        reply_type = MessageType.OFFER
    else:
        return Ignore("no_reply_expected")  # REQUEST etc. are for the address server
    vendor = request.options.get(Opt.VENDOR_CLASS_ID, b"")
    if not vendor.startswith((b"PXEClient", b"HTTPClient")):
        return Ignore("not_pxe", "proxyDHCP answers PXE clients only")
    boot = choose_boot(request, host, profile, subnet, ctx, mac)
    if boot is None:
        return Ignore("not_pxe", "no boot file for this client architecture")
    options = _base_options(reply_type, ctx)
    siaddr, file = _boot_fields(request, boot, options, subnet, ctx)
    options.setdefault(Opt.VENDOR_CLASS_ID, b"PXEClient")  # PXE spec: a proxy always sends it
    if Opt.CLIENT_UUID in request.options:  # PXE spec: echo the client machine identifier
        options[Opt.CLIENT_UUID] = request.options[Opt.CLIENT_UUID]
    message = Message(op=codec.Op.BOOTREPLY, htype=request.htype, hlen=request.hlen, xid=request.xid,
                      flags=request.flags & FLAG_BROADCAST, ciaddr=request.ciaddr,
                      siaddr=siaddr, giaddr=request.giaddr, chaddr=request.chaddr, file=file,
                      options=options)
    return Reply(message, destination(request, reply_type, ZERO_IP, ctx), boot)
