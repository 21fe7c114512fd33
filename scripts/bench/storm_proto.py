"""The boot storm's TFTP read and HTTP connection, as firmware and iPXE do them (one machine's).

Used by scripts/bench/storm_client.py. Every byte is checked as it arrives: against the served
file (``compare``: bytes.startswith at the offset, memcmp speed) or by SHA-256 (``sha256``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import struct

TFTP_TIMEOUT, TFTP_RETRIES = 4.0, 6  # OVMF PxeBc: PXEBC_MTFTP_TIMEOUT, PXEBC_MTFTP_RETRIES
HTTP_CONNECT_TIMEOUT, HTTP_IDLE_TIMEOUT, HTTP_ATTEMPTS = 10.0, 30.0, 3


class Failed(Exception):
    """A stage gave up; the message is the reason printed in the report."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason = stage, reason


class TftpReceiver(asyncio.DatagramProtocol):
    """One TFTP read (RFC 1350, 2347-2349, 7440) checking the bytes as they arrive."""

    def __init__(self, machine, ref: bytes, probe: bool,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.m, self.ref, self.probe, self.loop = machine, ref, probe, loop
        self.done = loop.create_future()
        self.tid = None
        self.blksize, self.window = 512, 1
        self.expected = 1  # next block wanted
        self.acked = 0  # last block acknowledged
        self.offset = 0
        self.last_sent = b""
        self.timer = None
        self.tries = 0
        self.hasher = hashlib.sha256() if machine.w.verify == "sha256" else None

    def start(self, transport, server, rrq: bytes) -> None:
        self.transport, self.server = transport, server
        self._send(rrq, server)

    def _send(self, data: bytes, addr) -> None:
        self.last_sent, self.last_addr = data, addr
        self.transport.sendto(data, addr)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(TFTP_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        self.tries += 1
        if self.tries > TFTP_RETRIES:
            what = "no answer to the RRQ" if self.tid is None else \
                f"stalled at block {self.expected}"
            self._fail(f"{what} after {TFTP_RETRIES} retransmissions")
            return
        self.m.retries["tftp"] += 1
        self.transport.sendto(self.last_sent, self.last_addr)
        self._arm()

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(Failed("tftp", reason))
        if self.timer is not None:
            self.timer.cancel()

    def _finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            self.done.set_result(None)

    def _ack(self, block: int) -> None:
        self._send(struct.pack("!HH", 4, block & 0xFFFF), self.tid)

    def datagram_received(self, data: bytes, addr) -> None:
        if self.done.done() or len(data) < 4:
            return
        if self.tid is None:
            if addr[0] != self.server[0]:
                return
            self.tid = addr
        elif addr != self.tid:  # RFC 1350: another transfer's packet, ERROR 5 to it
            self.transport.sendto(b"\0\5\0\5unknown transfer ID\0", addr)
            return
        op = data[1]
        if op == 5:
            code = int.from_bytes(data[2:4], "big")
            self._fail(f"server error {code}: {data[4:].rstrip(bytes(1)).decode(errors='replace')}")
            return
        if op == 6:  # OACK
            if self.expected != 1 or self.offset:
                return
            parts = data[2:].split(b"\0")
            opts = {parts[i].decode().lower(): parts[i + 1].decode()
                    for i in range(0, len(parts) - 1, 2)}
            self.blksize = int(opts.get("blksize", 512))
            self.window = int(opts.get("windowsize", 1))
            if "tsize" in opts and int(opts["tsize"]) != len(self.ref):
                self._fail(f"tsize {opts['tsize']} but the file has {len(self.ref)} bytes")
                return
            if self.probe:  # OVMF: the size is all it wanted
                self.transport.sendto(b"\0\5\0\x08size probe\0", addr)
                self._finish()
                return
            self.tries = 0
            self._ack(0)
            return
        if op != 3:
            return
        block = int.from_bytes(data[2:4], "big")
        if block != (self.expected & 0xFFFF):
            # a duplicate or a gap: re-acknowledge the last block in order (RFC 7440)
            if self.expected > 1 or self.offset:
                self.acked = self.expected - 1
                self._ack(self.expected - 1)
            return
        if self.probe:
            self._fail("the server sent data without an OACK to the size probe")
            return
        chunk = data[4:]
        end = self.offset + len(chunk)
        if end > len(self.ref) or (self.hasher is None
                                   and not self.ref.startswith(chunk, self.offset)):
            self._fail(f"block {self.expected} differs from the served file")
            return
        if self.hasher is not None:
            self.hasher.update(chunk)
        self.offset = end
        self.tries = 0
        last = len(chunk) < self.blksize
        if last or self.expected - self.acked >= self.window:
            self.acked = self.expected
            self._ack(self.expected)
        else:
            self._arm()
        self.expected += 1
        if last:
            if self.offset != len(self.ref):
                self._fail(f"{self.offset} bytes received, the file has {len(self.ref)}")
            elif self.hasher is not None and \
                    self.hasher.hexdigest() != self.m.w.digest(self.ref):
                self._fail("sha256 differs from the served file")
            else:
                self._finish()

    def error_received(self, exc) -> None:
        pass  # ICMP errors: the retransmission timer decides

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()


class HttpConnection:
    """A keep-alive HTTP/1.1 connection from the machine's address, as iPXE's pool keeps one."""

    BUF = 128 << 10

    def __init__(self, machine) -> None:
        self.m = machine
        self.sock: socket.socket | None = None
        self.peer = None
        self.buf = bytearray(self.BUF)
        self.view = memoryview(self.buf)
        self.pending = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.pending = None, b""

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.m.ifname.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
            sock.bind((self.m.ip, 0))
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), HTTP_CONNECT_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        self.sock, self.peer = sock, (host, port)

    async def _recv(self) -> int:
        loop = asyncio.get_running_loop()
        n = await asyncio.wait_for(loop.sock_recv_into(self.sock, self.view), HTTP_IDLE_TIMEOUT)
        if n == 0:
            raise ConnectionError("the server closed the connection")
        return n

    async def get(self, url: str, ref: bytes | None, stage: str) -> bytes:
        m = re.match(r"http://([^/:]+)(?::(\d+))?(/.*)?$", url)
        if m is None:
            raise Failed(stage, f"not an http URL: {url!r}")
        host, port, path = m.group(1), int(m.group(2) or 80), m.group(3) or "/"
        if self.sock is None or self.peer != (host, port):
            self.close()
            await self._connect(host, port)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.sock, (
            f"GET {path} HTTP/1.1\r\nConnection: keep-alive\r\nUser-Agent: iPXE/1.21.1\r\n"
            f"Host: {host}:{port}\r\n\r\n").encode())
        head = bytearray(self.pending)
        self.pending = b""
        while b"\r\n\r\n" not in head:
            if len(head) > 65536:
                raise ValueError("response header longer than 64 KiB")
            n = await self._recv()
            head += self.view[:n]
        raw, _, rest = bytes(head).partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise ValueError(f"no Content-Length in the answer to {path} "
                             f"({headers.get('transfer-encoding', '')})")
        length = int(headers["content-length"])
        keep = headers.get("connection", "").lower() != "close"
        code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
        if code != 200:
            body = await self._body(length, rest, None, stage, url)
            if not keep:
                self.close()
            if 500 <= code or code in (408, 429):
                raise ValueError(f"HTTP {code} for {path}")  # tried again
            raise Failed(stage, f"HTTP {code} for {url}: {body[:80]!r}")
        if ref is not None and length != len(ref):
            raise Failed(stage, f"{url}: {length} bytes, the served file has {len(ref)}")
        body = await self._body(length, rest, ref, stage, url)
        if not keep:
            self.close()
        return body

    async def _body(self, length: int, rest: bytes, ref: bytes | None, stage: str,
                    url: str) -> bytes:
        keep = ref is None  # small bodies (scripts, errors) are returned; files are checked
        parts = []
        hasher = hashlib.sha256() if ref is not None and self.m.w.verify == "sha256" else None
        got = 0

        def take(chunk) -> None:
            nonlocal got
            if keep:
                parts.append(bytes(chunk))
            elif hasher is not None:
                hasher.update(chunk)
            elif not ref.startswith(chunk, got):
                raise Failed(stage, f"{url}: bytes {got}.. differ from the served file")
            got += len(chunk)

        first = rest[:length]
        self.pending = rest[length:]
        if first:
            take(first)
        while got < length:
            n = await self._recv()
            want = length - got
            if n > want:
                self.pending = bytes(self.view[want:n])
                n = want
            take(self.view[:n])
        if hasher is not None and hasher.hexdigest() != self.m.w.digest(ref):
            raise Failed(stage, f"{url}: sha256 differs from the served file")
        return b"".join(parts)
