"""A minimal asyncio TFTP client for the service tests: exact control over options and ACKs."""

from __future__ import annotations

import asyncio
import socket

from services.tftp import codec
from services.tftp.codec import Ack, Data, Opcode, Request


class TftpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"ERROR {code}: {message}")
        self.code, self.message = code, message


class RawClient:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        self.sock.close()

    async def send(self, data: bytes, addr) -> None:
        await self.loop.sock_sendto(self.sock, data, addr)

    async def recv(self, timeout: float = 2.0):
        return await asyncio.wait_for(self.loop.sock_recvfrom(self.sock, 70000), timeout)

    async def fetch(self, server, name: str, options: dict | None = None, mode: str = "octet",
                    timeout: float = 2.0, max_blocks: int = 1_000_000):
        """Lock-step (or windowed, if asked) download; returns (data, oack options, peer)."""
        opts = tuple((k, str(v)) for k, v in (options or {}).items())
        await self.send(codec.encode(Request(Opcode.RRQ, name, mode, opts)), server)
        blksize, window, oack = 512, 1, {}
        expected, received, since = 1, bytearray(), 0
        peer = None
        for _ in range(max_blocks):
            datagram, addr = await self.recv(timeout)
            message = codec.decode(datagram)
            if peer is None:
                peer = addr
            if isinstance(message, codec.Error):
                raise TftpError(message.code, message.message)
            if isinstance(message, codec.OAck):
                oack = dict(message.options)
                blksize = int(oack.get("blksize", 512))
                window = int(oack.get("windowsize", 1))
                await self.send(codec.encode(Ack(0)), peer)
                continue
            assert isinstance(message, Data)
            if message.block != expected & 0xFFFF:
                await self.send(codec.encode(Ack((expected - 1) & 0xFFFF)), peer)
                continue
            received += message.data
            expected += 1
            since += 1
            last = len(message.data) < blksize
            if last or since >= window:
                since = 0
                await self.send(codec.encode(Ack(message.block)), peer)
            if last:
                return bytes(received), oack, peer
        raise AssertionError("too many blocks")
