"""A raw-socket AoE initiator for the service tests: its socket is made inside a lab namespace
(setns in a short-lived thread, so the test process itself never leaves its namespace)."""

from __future__ import annotations

import ctypes
import os
import select
import socket
import threading
import time

from services.blockexport import codec
from services.blockexport.codec import Ata, Command, Config, Frame, Header

CLONE_NEWNET = 0x40000000


def raw_socket_in(namespace: str, ifname: str = "eth0") -> socket.socket:
    made: dict = {}

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {namespace}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(codec.ETHERTYPE))
            sock.bind((ifname, codec.ETHERTYPE))
            made["sock"] = sock
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            made["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    return made["sock"]


class Initiator:
    def __init__(self, namespace: str, ifname: str = "eth0") -> None:
        self.sock = raw_socket_in(namespace, ifname)
        self.mac = bytes(self.sock.getsockname()[4])
        self.tag = 0x1000

    def close(self) -> None:
        self.sock.close()

    def next_tag(self) -> int:
        self.tag += 1
        return self.tag

    def send(self, command: int, body, major: int, minor: int, dst: bytes = codec.BROADCAST_MAC,
             tag: int | None = None, **header) -> int:
        tag = self.next_tag() if tag is None else tag
        frame = Frame(Header(dst=dst, src=self.mac, major=major, minor=minor, command=command,
                             tag=tag, **header), body)
        self.sock.send(codec.encode(frame))
        return tag

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def drain(self) -> int:
        """Drop what the socket holds (a packet socket also queues the frames this host sent:
        after a burst its buffer is full, and a reply arriving then is dropped by the kernel);
        returns how many frames were dropped."""
        dropped = 0
        while select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(65536)
            dropped += 1
        return dropped

    def replies(self, tag: int, count: int = 1, timeout: float = 5.0) -> list[Frame]:
        """The next ``count`` replies carrying ``tag`` (others are skipped)."""
        got: list[Frame] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(got)} of {count} replies to tag {tag:#x}")
            if not select.select([self.sock], [], [], left)[0]:
                continue
            data = self.sock.recv(10000)
            try:
                frame = codec.decode(data)
            except codec.DecodeError:
                continue
            if frame.header.is_response and frame.header.tag == tag and \
                    frame.header.dst == self.mac:
                got.append(frame)
        return got

    def queued(self, tag: int) -> list[Frame]:
        """Replies carrying ``tag`` already received (no waiting)."""
        got = []
        while select.select([self.sock], [], [], 0)[0]:
            try:
                frame = codec.decode(self.sock.recv(10000))
            except codec.DecodeError:
                continue
            if frame.header.is_response and frame.header.tag == tag:
                got.append(frame)
        return got

    def request(self, command: int, body, major: int, minor: int, dst=codec.BROADCAST_MAC,
                timeout: float = 5.0, **header) -> Frame:
        tag = self.send(command, body, major, minor, dst, **header)
        return self.replies(tag, 1, timeout)[0]

    def discover(self, expected: int, major: int = 0xFFFF, minor: int = 0xFF) -> list[Frame]:
        tag = self.send(Command.QUERY_CONFIG, Config(), major, minor)
        return self.replies(tag, expected)

    def ata(self, target: Frame, command: int, count: int = 1, lba: int = 0, data: bytes = b"",
            aflags: int = 0x40, timeout: float = 5.0) -> Frame:
        h = target.header
        if data:
            aflags |= 0x01
        return self.request(Command.ATA, Ata(aflags=aflags, count=count, command=command,
                                             lba=lba, data=data), h.major, h.minor, dst=h.src,
                            timeout=timeout)

    def read(self, target: Frame, lba: int, count: int, timeout: float = 5.0) -> bytes:
        reply = self.ata(target, 0x24, count, lba, timeout=timeout)
        assert reply.body.command == 0x40, f"read failed: status {reply.body.command:#x}"
        return reply.body.data[:count * 512]

    def write(self, target: Frame, lba: int, data: bytes) -> Frame:
        return self.ata(target, 0x34, len(data) // 512, lba, data)
