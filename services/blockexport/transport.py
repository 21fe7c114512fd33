"""The raw Ethernet socket of the AoE target: AF_PACKET, ethertype 0x88A2, one interface.

The socket is bound to the one configured interface and to the AoE ethertype, so it neither
receives nor sends anything else: no interface is served unless named. Frames this host sends
itself are not read back (PACKET_IGNORE_OUTGOING, and the packet type as a second check).
Each received frame is handed at once to the handler the server sets (``transport.handler``):
deciding a frame is quick and does no I/O (storage I/O goes to the exports' bounded queues, see
server.py), so no queue in front of it adds a hop of the event loop to every request's latency.
At most 256 frames are handled per wake-up. The transport does no AoE work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import socket
import struct
import time
from collections.abc import Callable

from services.blockexport import metrics as m
from services.blockexport.codec import ETHERTYPE
from shared import logs
from shared.runtime import StartupError

log = logs.get_logger("blockexport")

SIOCGIFMTU = 0x8921
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
MAX_FRAME = 9216 + 14  # the largest jumbo frame we read whole
RCVBUF = 8 << 20  # the kernel caps it at net.core.rmem_max


@dataclasses.dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: bytes
    mtu: int


def interface_mtu(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, struct.pack("16sI", name.encode()[:15], 0))
    return struct.unpack_from("16sI", raw)[1]


@dataclasses.dataclass(slots=True)
class Received:
    data: bytes
    received: float  # time.perf_counter() at arrival


class Transport:
    def __init__(self, interface_name: str, mtu: int = 0) -> None:
        if not interface_name:
            raise StartupError("blockexport.interface is empty: name the interface to serve AoE "
                               "on (e.g. BOOTYARD_BLOCKEXPORT__INTERFACE=eth1); the service "
                               "never serves every interface by default")
        self.name = interface_name
        self._mtu = mtu
        self.handler: Callable[[Received], None] | None = None
        self.fast: Callable[[bytes, float], bool] | None = None  # tried first: True = done
        self.drained: Callable[[], None] | None = None  # called after each wake-up's frames
        self._outgoing_seen = True  # False once the kernel keeps our own frames from us
        self.sock: socket.socket | None = None
        self.interface: Interface | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> Interface:
        try:
            index = socket.if_nametoindex(self.name)
        except OSError:
            raise StartupError(f"blockexport.interface: no interface {self.name!r} in this "
                               "network namespace") from None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
        except PermissionError:
            raise StartupError("cannot open a raw Ethernet socket for AoE: needs CAP_NET_RAW "
                               "(run as root or grant the capability)") from None
        try:
            sock.bind((self.name, ETHERTYPE))
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._outgoing_seen = False
            except OSError:
                pass  # kernels before 4.20: the packet type check below does it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            mac = sock.getsockname()[4]
            mtu = self._mtu or interface_mtu(self.name)
        except OSError as exc:
            sock.close()
            raise StartupError(f"cannot serve AoE on {self.name}: {exc.strerror}") from None
        sock.setblocking(False)
        self.sock = sock
        self.interface = Interface(self.name, index, bytes(mac), mtu)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return self.interface

    def close(self) -> None:
        if self.sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        sock, handler, fast = self.sock, self.handler, self.fast
        recv, clock = sock.recv, time.perf_counter
        for _ in range(256):  # bounded work per wake-up
            try:
                if self._outgoing_seen:  # the packet type says whether we sent it
                    data, address = sock.recvfrom(MAX_FRAME)
                    if address[2] == PACKET_OUTGOING:
                        continue
                else:
                    data = recv(MAX_FRAME)  # no address tuple to build for each frame
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if handler is None:
                continue
            try:
                now = clock()
                if fast is None or not fast(data, now):
                    handler(Received(data, now))
            except Exception as exc:  # noqa: BLE001 - a bug for one frame must not stop the reader
                m.ERRORS_BY["malformed"].inc()
                log.exception("frame_failed", reason=str(exc), length=len(data))
        if self.drained is not None:
            self.drained()

    def send(self, frame: bytes) -> bool:
        try:
            self.sock.send(frame)
            return True
        except OSError:
            m.DROPPED_BY["send_failed"].inc()
            return False

    def send_parts(self, head: bytes, data) -> bool:
        """One frame of ``head`` then ``data`` (one sendmsg: the data is not copied into a
        joined buffer first)."""
        try:
            self.sock.sendmsg((head, data))
            return True
        except OSError:
            m.DROPPED_BY["send_failed"].inc()
            return False
