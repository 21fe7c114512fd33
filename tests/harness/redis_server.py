"""A real redis-server for tests, on a free loopback port, with AOF persistence in a temp dir.

Durability is the one bootyard relies on in production: ``appendonly yes`` with
``appendfsync everysec`` (docs/operations.md). ``stop()`` is a clean shutdown (Redis fsyncs the
AOF); ``kill()`` is a crash (SIGKILL), after which at most the last second of writes may be lost.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness.netlab import stop_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None,
                 extra_args: tuple[str, ...] = (), unix_socket: bool = False) -> None:
        """``unix_socket``: listen on a Unix socket only (``url`` is ``unix://...``), so that
        processes in network namespaces, which do not share loopback, reach it too."""
        self.extra_args = tuple(extra_args)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock" if unix_socket else None
        self.port = 0 if unix_socket else (port or free_port())
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed: run 'make install' "
                               "(Debian package redis-server)")

    @property
    def url(self) -> str:
        if self.socket:
            return f"unix://{self.socket}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--daemonize", "no", "--protected-mode", "no",
             "--logfile", str(self.dir / "redis.log"), *self._socket_args(), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout}s: {self.log_tail()}")

    def _socket_args(self) -> tuple[str, ...]:
        if not self.socket:
            return ()
        return ("--unixsocket", str(self.socket), "--unixsocketperm", "777")

    def ping(self) -> bool:
        try:
            if self.socket:
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(0.5)
                sock.connect(str(self.socket))
            else:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            with sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, crash: bool = False) -> None:
        (self.kill if crash else self.stop)()
        self.start()

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.dir / "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"
