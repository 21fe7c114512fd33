"""UDP sockets for the DHCP service: one per configured interface, with IP_PKTINFO.

Each socket is bound to ``0.0.0.0:<server port>`` and to its interface (``SO_BINDTODEVICE``), so
broadcast replies leave through the interface the request came in on, and nothing arrives from an
interface we were not asked to serve. IP_PKTINFO tells us the interface index and the address a
packet was sent to; a packet whose index is not the socket's interface is dropped (belt and
braces). A datagram longer than MAX_PACKET is dropped and counted, never decoded cut short (no
DHCP client sends one: it would need IP fragments). Received packets go into a bounded queue;
when it is full, new packets are dropped and counted. The transport does no DHCP work.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import fcntl
import socket
import struct
import time
from typing import Any, Protocol

from services.dhcp import metrics as m
from shared import logs
from shared.runtime import PortUnavailable, StartupError

log = logs.get_logger("dhcp")

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SIOCGIFADDR = 0x8915
PKTINFO = struct.Struct("I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
MAX_PACKET = 4096  # bytes of a datagram we read; longer ones are dropped (MSG_TRUNC)
RCVBUF = 4 << 20  # bytes asked for (the kernel doubles it; capped by net.core.rmem_max)
# plain ints for the per-packet tests: socket.MSG_TRUNC is an enum.IntFlag, and `int & IntFlag`
# runs enum's Python code for every datagram
MSG_TRUNC = int(socket.MSG_TRUNC)
IPPROTO_IP = int(socket.IPPROTO_IP)


@dataclasses.dataclass(frozen=True)
class Interface:
    name: str
    index: int
    address: str  # its primary IPv4 address


@dataclasses.dataclass(slots=True)
class Datagram:
    data: bytes
    interface: Interface
    source: tuple[str, int]
    received: float  # time.perf_counter() at arrival
    port: int = 67  # the local port it arrived on (4011: a PXE boot server request)

    # (__init__ written out: compiled, it runs natively; services/dhcp/codec.py Message says why)
    def __init__(self, data: bytes, interface: Interface, source: tuple[str, int],
                 received: float, port: int = 67) -> None:
        self.data = data
        self.interface = interface
        self.source = source
        self.received = received
        self.port = port


def interface_address(name: str) -> str:
    """The IPv4 address of interface ``name`` (in this network namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            raw = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                              struct.pack("256s", name.encode()[:15]))
        except OSError as exc:
            raise StartupError(f"dhcp.interfaces: interface {name!r} has no IPv4 address "
                               f"({exc.strerror}); give it one or remove it") from None
    return socket.inet_ntoa(raw[20:24])


def resolve_interfaces(names) -> list[Interface]:
    if not names:
        raise StartupError("dhcp.interfaces is empty: name the interfaces to serve "
                           "(e.g. BOOTYARD_DHCP__INTERFACES=eth1); the DHCP service never "
                           "serves every interface by default")
    out = []
    for name in names:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            raise StartupError(f"dhcp.interfaces: no interface {name!r} in this network "
                               "namespace") from None
        out.append(Interface(name, index, interface_address(name)))
    return out


class Sockets(Protocol):
    """What DhcpServer uses of a :class:`Transport` (tests and the pipeline bench give their
    own: a Protocol, so the compiled server does not insist on the class)."""

    interfaces: list[Interface]
    queue: collections.deque[Datagram]
    ready: asyncio.Event

    def send(self, iface: Interface, data: bytes, ip: str, port: int,
             local_port: int | None = None) -> bool: ...


class Transport:
    def __init__(self, interfaces: list[Interface], port: int, queue_size: int,
                 extra_ports: tuple[int, ...] = (),
                 port_settings: dict[int, str] | None = None) -> None:
        self.interfaces = interfaces
        self.port_settings = port_settings or {}  # port -> the setting that chose it
        self.port = port
        self.ports = (port, *extra_ports)
        self.queue: collections.deque[Datagram] = collections.deque()
        self.queue_size = queue_size
        self.ready = asyncio.Event()
        self._sockets: dict[tuple[str, int], socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        for iface in self.interfaces:
            for port in self.ports:
                self._open(iface, port)

    def _open(self, iface: Interface, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, iface.name.encode())
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            sock.close()
            self.close()
            raise PortUnavailable(self.port_settings.get(port, "dhcp.server_port"),
                                  f"0.0.0.0%{iface.name}", port, "udp",
                                  f"{exc.strerror} (another DHCP server? not root?)") from None
        sock.setblocking(False)
        self._sockets[(iface.name, port)] = sock
        assert self._loop is not None  # open() set it
        self._loop.add_reader(sock.fileno(), self._readable, sock, iface, port)

    def close(self) -> None:
        for sock in self._sockets.values():
            if self._loop is not None:
                # untyped: uvloop's remove_reader can return None where typeshed says bool, and
                # the compiled module would check the result (a TypeError that hid a refused port)
                remove: Any = self._loop.remove_reader
                remove(sock.fileno())
            sock.close()
        self._sockets.clear()

    def _readable(self, sock: socket.socket, iface: Interface, port: int) -> None:
        queue = self.queue
        for _ in range(64):  # bounded work per wake-up
            try:
                data, ancdata, flags, source = sock.recvmsg(MAX_PACKET, 64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if flags & MSG_TRUNC:  # the kernel cut it to MAX_PACKET bytes: not decoded
                m.TRUNCATED.inc()
                log.debug("datagram_truncated", interface=iface.name, source=source[0],
                          reason=f"longer than {MAX_PACKET} bytes")
                continue
            index = iface.index
            for level, kind, value in ancdata:
                if level == IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                    index = PKTINFO.unpack_from(value)[0]
            if index != iface.index:
                m.IGNORED_BY["wrong_interface"].inc()  # not from the interface this socket serves
                continue
            if len(queue) >= self.queue_size:
                m.QUEUE_FULL.inc()
                continue
            queue.append(Datagram(data, iface, source, time.perf_counter(), port))
        if queue:
            self.ready.set()

    def send(self, iface: Interface, data: bytes, ip: str, port: int,
             local_port: int | None = None) -> bool:
        try:
            self._sockets[(iface.name, local_port or self.port)].sendto(data, (ip, port))
            return True
        except (BlockingIOError, OSError):
            m.SEND_FAILED.inc()
            return False
