"""The servers a boot storm runs against, in the storm's server namespace.

- ``bootyard``: redis-server with AOF (``appendfsync everysec``) on a Unix socket, the inventory
  loaded with ``bootyard import`` (one subnet with the dynamic pool, one profile booting the lab's
  kernel and initrd, one host per machine), and ``python -m services.dhcp``, ``services.tftp``,
  ``services.http`` with their default settings (as lab/bootyard.py starts them, timeline events
  at their default ``leases``).
- ``classic``: dnsmasq for DHCP and TFTP (its defaults: ``tftp-max`` 50, the ping check before an
  offer) and nginx for HTTP (Debian's defaults: ``worker_processes auto``,
  ``worker_connections 768``, sendfile), the per-host iPXE scripts written out as static files and
  dnsmasq handing iPXE ``http://SERVER/boot/${net0/mac}.ipxe`` (iPXE expands the MAC), as the
  seeds' setups do; ``classic-raised`` is the same with ``tftp-max`` raised to the storm's size;
  ``classic-tuned`` also has ``no-ping``, gives iPXE option 175.176 (no-pxedhcp) and gets an
  8 MiB socket receive buffer (``net.core.rmem_default`` raised while it starts: dnsmasq has no
  setting; bootyard's DHCP asks for as much), as an operator who had read docs/benchmarks.md
  would set dnsmasq up for a storm.

Every server process gets a file-descriptor limit of 65,536 or the hard limit (the storm holds ~1,000 TCP
connections and TFTP transfers at once; a shell's 1,024 would be the limit otherwise).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from lab import classic  # noqa: E402
from lab.bootyard import METRICS_PORTS, BootyardStack, stop_all  # noqa: E402
from lab.plan import BootPlan  # noqa: E402

NOFILE = 65536
# --profile-http: the HTTP service under cProfile (CPU time of its event loop's thread; the
# profiler about doubles it, so shares only), its stats written when it stops
CPROFILE = """
import cProfile, sys, time
from services.http.__main__ import main
profile = cProfile.Profile(time.thread_time)
try:
    profile.runcall(main, [])
finally:
    profile.dump_stats(sys.argv[1])
"""
CMDLINE = "console=ttyS0 quiet panic=-1"


def _limits() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def host_name(i: int) -> str:
    return f"storm{i:04d}"


class StormPlan(BootPlan):
    """The lab's plan on a bigger segment: the pool is ``pool`` (first, last)."""

    def __init__(self, server_ip: str, network: str, pool: tuple[str, str], workdir: Path,
                 macs: list[str]) -> None:
        super().__init__(server_ip=server_ip, network=network, www_root=workdir / "www",
                         tftp_root=workdir / "tftp")
        self.storm_pool = pool
        self.macs = macs
        self.prefixlen = int(network.split("/")[1])

    @property
    def pool(self) -> tuple[str, str]:
        return self.storm_pool

    @property
    def netmask(self) -> str:
        bits = (0xFFFFFFFF << (32 - self.prefixlen)) & 0xFFFFFFFF
        return ".".join(str(bits >> s & 255) for s in (24, 16, 8, 0))


class Bootyard(BootyardStack):
    name = "bootyard"

    def __init__(self, plan: StormPlan, server_ns, workdir: Path,
                 settings: dict[str, str] | None = None, profile_http: Path | None = None) -> None:
        super().__init__(plan, server_ns, workdir, extra_env=settings)
        self.profile_http = profile_http

    def inventory(self) -> dict:
        plan = self.plan
        subnet = {"network": plan.network, "ranges": [f"{plan.pool[0]}-{plan.pool[1]}"],
                  "router": plan.server_ip, "next_server": plan.server_ip, "lease_time": "3600"}
        profile = {"kernel": "vmlinuz", "initrd": ["initrd.img"], "cmdline": CMDLINE,
                   "install": "none", "description": "the boot storm's machines: the lab's image"}
        hosts = {mac: {"hostname": host_name(i), "profile": "storm", "boot_mode": "install",
                       "kernel_args": f"storm.host={mac}"} for i, mac in enumerate(plan.macs)}
        return {"subnets": {"storm": subnet}, "profiles": {"storm": profile}, "hosts": hosts}

    def start(self) -> None:
        self._start_redis()
        inv = self.workdir / "inventory.yaml"
        inv.write_text(yaml.safe_dump(self.inventory(), sort_keys=True))
        self.cli("import", str(inv))
        env = self.env()
        env.pop("BOOTYARD_DHCP__EVENTS", None)  # the default (leases), as deployed
        env["PYTHONPATH"] = str(REPO)
        for svc in ("dhcp", "tftp", "http"):
            log = open(self.workdir / f"{svc}.log", "w")
            command = ("-c", CPROFILE, str(self.profile_http)) \
                if svc == "http" and self.profile_http else ("-m", f"services.{svc}")
            self.procs[svc] = self.ns.popen(sys.executable, *command, env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            cwd=str(REPO), preexec_fn=_limits)
        self._wait_ready(60)

    def pids(self) -> dict[str, int]:
        """The services (and their worker processes, when a setting asks for workers) and
        Redis."""
        out = _with_children({name: proc.pid for name, proc in self.procs.items()})
        if self.redis is not None:
            out["redis"] = self.redis.pid
        return out

    def redis_memory(self) -> dict[str, int]:
        info = self._sync_client().info("memory")
        return {"used": int(info["used_memory"]), "peak": int(info["used_memory_peak"]),
                "rss": int(info["used_memory_rss"])}

    def leases(self) -> int:
        client = self._sync_client()
        return sum(1 for _ in client.scan_iter("bootyard:lease:*", count=1000))


def ipxe_script(plan: StormPlan, mac: str) -> str:
    base = f"{plan.http_base}/images"
    return ("#!ipxe\n"
            f"kernel {base}/vmlinuz initrd=initrd.img {CMDLINE} storm.host={mac}\n"
            f"initrd {base}/initrd.img\n"
            "boot\n")


def dnsmasq_conf(plan: StormPlan, workdir: Path, tftp_max: int | None,
                 tuned: bool = False) -> str:
    srv = plan.server_ip
    lines = [
        "port=0", "user=root", "interface=eth0", "bind-interfaces",
        f"log-facility={workdir / 'dnsmasq.log'}",
        f"pid-file={workdir / 'dnsmasq.pid'}",
        f"dhcp-leasefile={workdir / 'dnsmasq.leases'}",
        f"dhcp-range={plan.pool[0]},{plan.pool[1]},{plan.netmask},1h",
        "enable-tftp", f"tftp-root={plan.tftp_root}",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        f"dhcp-option=option:router,{srv}",
        f"dhcp-boot=tag:ipxe,{plan.http_base}/boot/${{net0/mac}}.ipxe",
        f"dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,{srv}",
        f"dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,{srv}",
    ]
    if len(plan.macs) > 1000:  # dnsmasq's default dhcp-lease-max is 1,000: not the subject here
        lines.append(f"dhcp-lease-max={len(plan.macs) + 100}")
    if tftp_max is not None:
        lines.append(f"tftp-max={tftp_max}")
    if tuned:  # no 3 s ping check before an offer; iPXE told not to wait for ProxyDHCP
        lines += ["no-ping", "dhcp-option=tag:ipxe,encap:175,176,1b"]
    return "\n".join(lines) + "\n"


def nginx_conf(plan: StormPlan, workdir: Path) -> str:
    """The lab's nginx with Debian's defaults (workers per CPU, 768 connections, keep-alive)."""
    return classic.nginx_conf(plan, workdir, workers="auto", connections=768,
                              tuning="    tcp_nopush on;\n    keepalive_timeout 65;\n")


class Classic:
    def __init__(self, plan: StormPlan, server_ns, workdir: Path,
                 tftp_max: int | None = None, tuned: bool = False) -> None:
        self.plan, self.ns, self.workdir, self.tftp_max = plan, server_ns, workdir, tftp_max
        self.tuned = tuned
        self.name = "classic-tuned" if tuned else \
            "classic" if tftp_max is None else "classic-raised"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        for binary in ("dnsmasq", "nginx"):
            if shutil.which(binary) is None:
                raise RuntimeError(f"{binary} missing: run 'make install' (dnsmasq, nginx-light)")
        boot = self.plan.www_root / "boot"
        boot.mkdir(parents=True, exist_ok=True)
        for mac in self.plan.macs:
            (boot / f"{mac}.ipxe").write_text(ipxe_script(self.plan, mac))
        (self.workdir / "nginx-tmp").mkdir(exist_ok=True)
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(dnsmasq_conf(self.plan, self.workdir, self.tftp_max, self.tuned))
        nconf = self.workdir / "nginx.conf"
        nconf.write_text(nginx_conf(self.plan, self.workdir))
        out = open(self.workdir / "dnsmasq.out", "w")
        # tuned: dnsmasq's sockets get the 8 MiB receive buffer bootyard's DHCP asks for (it has
        # no setting of its own: the kernel's default, raised while it starts, as bench-dhcp does)
        rmem = _RmemDefault(8 << 20) if self.tuned else None
        try:
            self.procs["dnsmasq"] = self.ns.popen("dnsmasq", "--keep-in-foreground",
                                                  f"--conf-file={conf}", stdout=out,
                                                  stderr=subprocess.STDOUT, preexec_fn=_limits)
            if rmem is not None:
                self._wait_log("DHCP, sockets bound")
        finally:
            if rmem is not None:
                rmem.restore()
        nout = open(self.workdir / "nginx.out", "w")
        self.procs["nginx"] = self.ns.popen("nginx", "-c", str(nconf), "-p", str(self.workdir),
                                            stdout=nout, stderr=subprocess.STDOUT,
                                            preexec_fn=_limits)
        deadline = time.monotonic() + 20
        url = f"{self.plan.http_base}/boot/{self.plan.macs[0]}.ipxe"
        while True:
            r = self.ns.run("curl", "-sf", "-o", "/dev/null", url, check=False)
            if r.returncode == 0:
                break
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: see {self.workdir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not serve {url}: see {self.workdir}")
            time.sleep(0.1)

    def _wait_log(self, text: str, timeout: float = 10) -> None:
        log = self.workdir / "dnsmasq.log"
        deadline = time.monotonic() + timeout
        while not (log.exists() and text in log.read_text()):
            if time.monotonic() > deadline or self.procs["dnsmasq"].poll() is not None:
                raise RuntimeError(f"dnsmasq did not log {text!r}: see {log}")
            time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        """dnsmasq, and nginx's master and workers (ip netns exec runs them in place)."""
        return _with_children({name: proc.pid for name, proc in self.procs.items()})

    def redis_memory(self) -> dict[str, int]:
        return {}

    def stop(self) -> None:
        stop_all(self.procs.values())


class _RmemDefault:
    """net.core.rmem_default raised (never lowered) until restore()."""

    PATH = Path("/proc/sys/net/core/rmem_default")

    def __init__(self, value: int) -> None:
        self.old = self.PATH.read_text().strip()
        if int(self.old) < value:
            self.PATH.write_text(str(value))

    def restore(self) -> None:
        self.PATH.write_text(self.old)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _with_children(pids: dict[str, int]) -> dict[str, int]:
    """``pids`` and every process under them, named ``<name>-<pid>``."""
    out = dict(pids)
    todo = list(pids.items())
    while todo:
        name, pid = todo.pop()
        for child in _children(pid):
            out[f"{name}-{child}"] = child
            todo.append((name, child))
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """(user+system, user) CPU seconds of each process (children it has waited for
    included). System time includes the kernel's packet work done in the process's context
    (a veth delivers into the peer namespace during the send)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user = (int(fields[11]) + int(fields[13])) / tick
        out[name] = (user + (int(fields[12]) + int(fields[14])) / tick, user)
    return out


__all__ = ["Bootyard", "Classic", "StormPlan", "cpu_seconds", "METRICS_PORTS"]
