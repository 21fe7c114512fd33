"""A Sentinel-managed Redis inside a lab namespace: a master, a replica and three sentinels,
all Debian's binaries, all started by the test.

They listen on the namespace's own loopback (a service in that namespace reaches them as a
deployed one would, through ``redis+sentinel://``); the master and the replica also listen on
a Unix socket in the test's directory, so the test (root namespace) reads what each holds.
Every process is started with the namespace's ``popen``: the lab kills them on close.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from harness.netlab import wait_for

SERVICE = "bootyard"
MASTER_PORT, REPLICA_PORT = 6380, 6381
SENTINEL_PORTS = (26380, 26381, 26382)


class RedisNode:
    def __init__(self, ns, workdir: Path, port: int, replica_of: int | None = None) -> None:
        self.ns, self.port, self.dir = ns, port, workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        replica = ("--replicaof", "127.0.0.1", str(replica_of)) if replica_of else ()
        self.proc = ns.popen(
            shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket), "--unixsocketperm", "777", "--dir", str(self.dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--logfile", str(self.dir / "redis.log"), "--enable-debug-command", "local",
            *replica,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 10, what=f"redis-server on port {port}")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server {self.port} exited: {self.log_tail()}")
        try:
            return self.socket.exists() and self.client().ping()
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), decode_responses=True,
                           socket_timeout=5)

    def sleep(self, seconds: int) -> None:
        """Block this server for ``seconds`` (DEBUG SLEEP): a replica reads nothing meanwhile."""
        self.ns.run("redis-cli", "-p", str(self.port), "DEBUG", "SLEEP", str(seconds),
                    check=False, timeout=seconds + 10)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join((self.dir / "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


class SentinelStack:
    """``url`` is what the services are given."""

    def __init__(self, ns, workdir: Path, down_after_ms: int = 1000) -> None:
        self.ns = ns
        self.master = RedisNode(ns, workdir / "master", MASTER_PORT)
        self.replica = RedisNode(ns, workdir / "replica", REPLICA_PORT, replica_of=MASTER_PORT)
        wait_for(lambda: self.replica.client().info("replication").get(
            "master_link_status") == "up", 15, what="the replica to sync with the master")
        self.sentinels = []
        for port in SENTINEL_PORTS:
            conf = workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {MASTER_PORT} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")
            self.sentinels.append(ns.popen(
                shutil.which("redis-sentinel"), str(conf),
                stdout=(workdir / f"sentinel-{port}.log").open("w"),
                stderr=subprocess.STDOUT))
        wait_for(lambda: all(str(REPLICA_PORT) in self._sentinel(p, "SENTINEL", "replicas",
                                                                 SERVICE).split()
                             for p in SENTINEL_PORTS), 20,
                 what="every sentinel to know the replica")
        wait_for(lambda: all(self._other_sentinels(p) >= 2 for p in SENTINEL_PORTS), 20,
                 what="the sentinels to find each other")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _sentinel(self, port: int, *command: str) -> str:
        return self.ns.run("redis-cli", "-p", str(port), *command, check=False,
                           timeout=10).stdout

    def _other_sentinels(self, port: int) -> int:
        out = self._sentinel(port, "SENTINEL", "master", SERVICE).split()
        return int(out[out.index("num-other-sentinels") + 1]) if "num-other-sentinels" in out \
            else 0

    def master_port(self) -> int | None:
        """The master's port as a majority of the sentinels name it now."""
        ports = [self._sentinel(p, "SENTINEL", "get-master-addr-by-name", SERVICE).split()
                 for p in SENTINEL_PORTS]
        named = [int(p[1]) for p in ports if len(p) == 2 and p[1].isdigit()]
        best = max(set(named), key=named.count, default=None)
        return best if best is not None and named.count(best) >= 2 else None
