"""Running the real TFTP service in a lab segment, with its own redis-server in the server
namespace (reached over a unix socket from the test), and the real clients' command lines."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from harness.netlab import Segment, wait_for

REPO = Path(__file__).resolve().parents[2]
MAC = "52:54:00:12:34:56"
PROFILE = {"kernel": "debian12/linux", "initrd": "debian12/initrd.gz",
           "cmdline": "console=ttyS0 hostname={{ host.hostname }}"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TftpService:
    def __init__(self, seg: Segment, root: Path, workdir: Path, **settings) -> None:
        self.seg, self.root, self.workdir = seg, root, workdir
        self.sock = workdir / "redis.sock"
        self.log = workdir / "tftp.log"
        seg.server.popen("redis-server", "--port", "0", "--unixsocket", str(self.sock),
                         "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                         "--dir", str(workdir), stdout=subprocess.DEVNULL)
        wait_for(self.sock.exists, 10, what="redis-server socket")
        self.redis = redis.Redis(unix_socket_path=str(self.sock), decode_responses=True)
        wait_for(lambda: self._ping(), 10, what="redis-server ping")
        env = dict(os.environ)
        env.update({"BOOTYARD_REDIS_URL": f"unix://{self.sock}", "BOOTYARD_TFTP__ROOT": str(root),
                    "BOOTYARD_TFTP__PORT": "69", "BOOTYARD_TFTP__BIND": "0.0.0.0",
                    "BOOTYARD_TFTP__METRICS_HOST": "127.0.0.1", "PYTHONPATH": str(REPO)})
        for key, value in settings.items():
            env[f"BOOTYARD_TFTP__{key.upper()}"] = str(value)
        self.proc = seg.server.popen(sys.executable, "-m", "services.tftp", env=env, cwd=REPO,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: b"event=inventory_loaded" in self.log.read_bytes() or
                 self.proc.poll() is not None, 20, what="tftp service start")
        assert self.proc.poll() is None, self.log.read_text()

    def _ping(self) -> bool:
        try:
            return self.redis.ping()
        except redis.ConnectionError:
            return False

    def add_host(self, mac: str = MAC, **fields) -> None:
        self.redis.hset("bootyard:profile:debian12", mapping=PROFILE)
        self.redis.hset(f"bootyard:host:{mac}", mapping={"hostname": "web1",
                                                          "profile": "debian12", **fields})

    def add_lease(self, ip: str, mac: str = MAC) -> None:
        self.redis.hset(f"bootyard:lease:{ip}", mapping={
            "mac": mac, "state": "bound", "expires": str(int(time.time()) + 3600),
            "subnet": "lab", "hostname": ""})

    def events(self, mac: str = MAC) -> list[dict]:
        # every event is in the global stream (a MAC outside the inventory has no stream of
        # its own)
        return [fields for _id, fields in self.redis.xrange("bootyard:events")
                if fields.get("mac") == mac]

    def alive(self) -> bool:
        return self.proc.poll() is None


def client_command(kind: str, server: str, remote: str, local: Path,
                   options: dict | None = None) -> list[str]:
    options = options or {}
    if kind == "tftp-hpa":
        return ["tftp", "-m", "binary", server, "-c", "get", remote, str(local)]
    if kind == "atftp":
        argv = ["atftp", "--tftp-timeout", "1"]
        for name, value in options.items():
            argv += ["--option", f"{name} {value}"]
        return argv + ["-g", "-r", remote, "-l", str(local), server, "69"]
    if kind == "curl":
        argv = ["curl", "-sS", "--max-time", "600", "-o", str(local)]
        if "blksize" in options:
            argv += ["--tftp-blksize", str(options["blksize"])]
        return argv + [f"tftp://{server}/{remote}"]
    if kind == "busybox":
        argv = ["busybox", "tftp", "-g", "-r", remote, "-l", str(local)]
        if "blksize" in options:
            argv += ["-b", str(options["blksize"])]
        return argv + [server]
    if kind == "tftpy":
        code = ("import sys, tftpy; tftpy.TftpClient(sys.argv[1], 69, eval(sys.argv[4]))"
                ".download(sys.argv[2], sys.argv[3], timeout=2)")
        return [sys.executable, "-c", code, server, remote, str(local), repr(options)]
    raise ValueError(kind)


def impair(ns, loss_percent: float = 5, reorder_percent: float = 25) -> str:
    """Make ``ns``'s eth0 lose and reorder outgoing packets; returns how it was done.

    ``tc netem`` when the kernel has it. This machine's kernel has no sch_netem (nor prio), so
    the fallback does the same with what it has: iptables' ``statistic`` match drops
    ``loss_percent`` of arriving packets at random, and sends ``reorder_percent`` to a slower HTB class
    (CLASSIFY) with a short queue, where they wait behind each other and arrive after later
    packets (a bounded delay, like netem's; a full queue drops, adding a little loss).
    """
    netem = ns.run("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "loss",
                   f"{loss_percent}%", "delay", "1ms", "reorder", f"{100 - reorder_percent}%",
                   "50%", check=False)
    if netem.returncode == 0:
        return "netem"
    ns.run("tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10")
    ns.run("tc", "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb",
           "rate", "10gbit")
    ns.run("tc", "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb",
           "rate", "200mbit", "ceil", "200mbit")
    ns.run("tc", "qdisc", "add", "dev", "eth0", "parent", "1:20", "pfifo", "limit", "32")
    # dropped on the way in: a drop on the way out would fail the sender's sendto() with EPERM
    ns.run("iptables", "-A", "INPUT", "-i", "eth0", "-p", "udp", "-m", "statistic",
           "--mode", "random", "--probability", str(loss_percent / 100), "-j", "DROP")
    ns.run("iptables", "-t", "mangle", "-A", "POSTROUTING", "-o", "eth0", "-p", "udp",
           "-m", "statistic", "--mode", "random", "--probability", str(reorder_percent / 100),
           "-j", "CLASSIFY", "--set-class", "1:20")
    return "iptables+htb"


def impairment_counters(ns) -> str:
    return ns.run("iptables", "-L", "INPUT", "-v", "-n", "-x", check=False).stdout
