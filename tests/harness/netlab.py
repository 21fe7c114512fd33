"""A private network lab: namespaces, a bridge, veth pairs and tap devices, made and removed here.

Network safety: nothing in a lab touches the root namespace's interfaces. Every namespace is
named ``by-<pid>-<n>-<role>`` and removed by :meth:`Lab.close` (also on failure, via the pytest
fixture), after its processes are killed; a later run removes namespaces whose creating process
is gone. Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range), one /24 per lab.

Topology made by :meth:`Lab.segment`::

    [switch ns: bridge br0] --veth-- [server ns: eth0 198.18.N.1/24]
                            --veth-- [client ns k: eth0, address optional]
                            --tap--  (for QEMU, created in the switch ns)
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

_counter = itertools.count()
PREFIX = "by-"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def cleanup_stale() -> None:
    """Remove lab namespaces whose creating process no longer exists."""
    for ns in list_namespaces():
        try:
            pid = int(ns.split("-")[1])
        except (IndexError, ValueError):
            continue
        if not os.path.exists(f"/proc/{pid}"):
            _kill_namespace_processes(ns)
            _ip("netns", "delete", ns, check=False)


def list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def _kill_namespace_processes(ns: str) -> None:
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@dataclass
class Namespace:
    lab: Lab
    name: str
    address: str | None = None  # the eth0 address, if one was assigned
    ifname: str = "eth0"

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside this namespace (argument list, never a shell string)."""
        result = subprocess.run(self.cmd(*argv), capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, shlex.join(argv),
                                                result.stdout, result.stderr)
        return result

    def popen(self, *argv: str, **kwargs) -> subprocess.Popen:
        """Start a long-running process here; the lab kills it on close."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self.cmd(*argv), start_new_session=True, **kwargs)
        self.lab.processes.append(proc)
        return proc


@dataclass
class Segment:
    """One L2 segment: a bridge in its own namespace, a server, and clients."""

    lab: Lab
    switch: Namespace
    server: Namespace
    network: str  # e.g. 198.18.7.0/24
    clients: list[Namespace] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)

    def address(self, host: int) -> str:
        return self.network.rsplit(".", 1)[0] + f".{host}"

    def add_client(self, address: str | None = None) -> Namespace:
        """A new client namespace with eth0 on the bridge (no address unless given: DHCP)."""
        ns = self.lab.namespace(f"c{len(self.clients)}")
        self.lab._wire(self.switch, ns, address)
        self.clients.append(ns)
        return ns

    def add_tap(self) -> str:
        """A tap device on the bridge for QEMU (run QEMU with ``switch.cmd``)."""
        name = f"tap{self.lab.id}{len(self.taps)}"[:15]
        self.switch.run("ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.switch.run("ip", "link", "set", name, "master", "br0", "up")
        self.taps.append(name)
        return name


class Lab:
    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the network lab needs root (ip netns)")
        cleanup_stale()
        self.id = next(_counter)
        self.namespaces: list[Namespace] = []
        self.processes: list[subprocess.Popen] = []
        self._veths = itertools.count()

    def namespace(self, role: str) -> Namespace:
        name = f"{PREFIX}{os.getpid()}-{self.id}-{role}"
        _ip("netns", "add", name)
        ns = Namespace(self, name)
        self.namespaces.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def segment(self, clients: int = 0, client_addresses: bool = False) -> Segment:
        third = (os.getpid() + self.id * 7) % 250 + 2
        network = f"198.18.{third}.0/24"
        switch = self.namespace("sw")
        switch.run("ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        switch.run("ip", "link", "set", "br0", "type", "bridge", "stp_state", "0")
        switch.run("ip", "link", "set", "br0", "up")
        server = self.namespace("srv")
        seg = Segment(self, switch, server, network)
        self._wire(switch, server, seg.address(1) + "/24")
        for k in range(clients):
            seg.add_client(seg.address(10 + k) + "/24" if client_addresses else None)
        return seg

    def _wire(self, switch: Namespace, ns: Namespace, address: str | None) -> None:
        n = next(self._veths)
        outer = f"vb{self.id}x{n}"[:15]
        _ip("link", "add", outer, "netns", switch.name, "type", "veth",
            "peer", "name", "eth0", "netns", ns.name)
        switch.run("ip", "link", "set", outer, "master", "br0", "up")
        ns.run("ip", "link", "set", "eth0", "up")
        if address:
            ns.run("ip", "addr", "add", address, "dev", "eth0")
            ns.address = address.split("/")[0]

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for ns in reversed(self.namespaces):
            _kill_namespace_processes(ns.name)
            _ip("netns", "delete", ns.name, check=False)
        self.namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM ``proc``, wait up to ``grace`` seconds, then SIGKILL; a no-op if it has ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_checked(argv: Sequence[str], **kwargs) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout
