"""bootyard's own stack in the lab: a private Redis and the services as separate processes.

As their containers run them: ``python -m services.dhcp`` / ``services.tftp`` / ``services.http``,
configured only through ``BOOTYARD_<SECTION>__<KEY>`` environment variables and
``BOOTYARD_REDIS_URL``, inside the lab's server namespace. Redis listens on a Unix socket in the
lab's directory (no TCP port), so the services in the namespace and the test (or ``make demo``)
outside it share it. The inventory is loaded with ``bootyard import FILE``, as an operator would.

The lab also writes the guest's console stages into the host's event stream (service ``lab``:
``lab.power_on``, ``lab.guest_init``, ``lab.guest_network``, ``lab.rootfs_fetched``,
``lab.live_root``, ``lab.marker``), as they happen, so ``bootyard events --host MAC`` shows the
whole boot: DHCP, TFTP/HTTP, kernel, root.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lab.plan import BootPlan

SERVICES = ("dhcp", "tftp", "http")
METRICS_PORTS = {"dhcp": 9101, "tftp": 9102, "http": 9103}
GUEST_STAGES = (
    (re.compile(r"bootyard-lab: stage=init"), "lab.guest_init"),
    (re.compile(r"bootyard-lab: stage=network"), "lab.guest_network"),
    (re.compile(r"bootyard-lab: stage=rootfs-fetched"), "lab.rootfs_fetched"),
    (re.compile(r"bootyard-lab: stage=live-root"), "lab.live_root"),
    (re.compile(r"BOOTYARD-MARKER"), "lab.marker"),
)


def inventory(plan: BootPlan) -> dict:
    """The lab's inventory as ``bootyard import`` reads it: one subnet, a profile per host."""
    subnet = {"network": plan.network, "ranges": [f"{plan.pool[0]}-{plan.pool[1]}"],
              "router": plan.server_ip, "next_server": plan.server_ip, "lease_time": "3600"}
    profiles, hosts = {}, {}
    for host in plan.hosts:
        profile = {"kernel": "vmlinuz", "initrd": ["initrd.img"], "cmdline": host.cmdline,
                   "install": "none", "description": f"lab profile of {host.name}"}
        record = {"hostname": host.name, "ip": host.ip, "profile": host.name,
                  "boot_mode": {"kernel": "install", "live": "live", "local": "local"}[host.kind]}
        if host.kind == "live":
            profile.update(root_image="root.squashfs", live_style="rooturl")
        if host.boot == "grub":  # TFTP only: GRUB from the TFTP root, per-host grub.cfg
            record["vars"] = {"boot_file_uefi": "grub/x86_64-efi/core.efi"}
        profiles[host.name] = profile
        hosts[host.mac] = record
    return {"subnets": {"lab": subnet}, "profiles": profiles, "hosts": hosts}


class BootyardStack:
    name = "bootyard"

    def __init__(self, plan: BootPlan, server_ns, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.plan = plan
        self.extra_env = dict(extra_env or {})
        self.ns = server_ns
        self.workdir = workdir
        self.socket = workdir / "redis.sock"
        self.redis_url = f"unix://{self.socket}?db=0"
        self.redis = None
        self.procs: dict[str, subprocess.Popen] = {}
        self._client = None

    # -- processes -----------------------------------------------------------------------------
    def start(self) -> None:
        self._start_redis()
        inv = self.workdir / "inventory.yaml"
        inv.write_text(yaml.safe_dump(inventory(self.plan), sort_keys=True))
        self.cli("import", str(inv))
        env = self.env()
        for svc in SERVICES:
            log = open(self.workdir / f"{svc}.log", "w")
            self.procs[svc] = self.ns.popen(sys.executable, "-m", f"services.{svc}", env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            cwd=str(Path(__file__).resolve().parent.parent))
        self._wait_ready()

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server missing: run 'make install'")
        rdir = self.workdir / "redis"
        rdir.mkdir(exist_ok=True)
        # Not in a namespace: the Unix socket reaches across (a lab.Namespace only wraps argv).
        self.redis = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(rdir), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--daemonize", "no", "--logfile", str(rdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.ns.lab.processes.append(self.redis)  # killed by Lab.close even if stop() is skipped
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {rdir / 'redis.log'}")
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        import os
        srv = self.plan.server_ip
        base = self.plan.http_base
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        env.update({
            "BOOTYARD_REDIS_URL": self.redis_url,
            "BOOTYARD_LOG__LEVEL": "info",
            "BOOTYARD_DHCP__INTERFACES": "eth0",
            "BOOTYARD_DHCP__EVENTS": "all",
            "BOOTYARD_DHCP__HTTP_BASE_URL": base,
            "BOOTYARD_DHCP__SERVER_ADDRESS": srv,
            "BOOTYARD_DHCP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_DHCP__METRICS_PORT": str(METRICS_PORTS["dhcp"]),
            "BOOTYARD_TFTP__ROOT": str(self.plan.tftp_root),
            "BOOTYARD_TFTP__BIND": "0.0.0.0",
            "BOOTYARD_TFTP__PORT": "69",
            "BOOTYARD_TFTP__HTTP_BASE_URL": base,
            "BOOTYARD_TFTP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_TFTP__METRICS_PORT": str(METRICS_PORTS["tftp"]),
            "BOOTYARD_HTTP__HOST": srv,
            "BOOTYARD_HTTP__PORT": str(self.plan.http_port),
            "BOOTYARD_HTTP__PUBLIC_URL": base,
            "BOOTYARD_HTTP__IMAGES_ROOT": str(self.plan.www_root / "images"),
            "BOOTYARD_HTTP__MIRROR_ROOT": str(self.plan.www_root / "mirror"),
            "BOOTYARD_HTTP__TOKEN_SECRET": secrets.token_hex(32),
            "BOOTYARD_HTTP__ADMIN_ENABLED": "false",
            "BOOTYARD_HTTP__UNKNOWN_DELAY": "1",
            "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_HTTP__METRICS_PORT": str(METRICS_PORTS["http"]),
        })
        env.update(self.plan.settings)
        env.update(self.extra_env)
        (self.plan.www_root / "mirror").mkdir(parents=True, exist_ok=True)
        return env

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending:
            for svc in list(pending):
                proc = self.procs[svc]
                if proc.poll() is not None:
                    raise RuntimeError(f"services.{svc} exited with {proc.returncode}: "
                                       f"{self.log_tail(svc)}")
                url = f"http://127.0.0.1:{METRICS_PORTS[svc]}/healthz"
                r = self.ns.run("curl", "-sf", "-o", "/dev/null", "--max-time", "1", url,
                                check=False)
                if r.returncode == 0:
                    pending.discard(svc)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not healthy within {timeout}s: {sorted(pending)}; " +
                                   "; ".join(f"{s}: {self.log_tail(s)}" for s in pending))
            time.sleep(0.1)

    def log_tail(self, svc: str, lines: int = 6) -> str:
        try:
            return " | ".join((self.workdir / f"{svc}.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cli(self, *args: str) -> str:
        """Run the ``bootyard`` CLI against the lab's Redis (argument list, no shell)."""
        result = subprocess.run([sys.executable, "-m", "cli", "--redis-url",
                                 self.redis_url, *args], capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"bootyard {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    # -- events ----------------------------------------------------------------------------------
    def _sync_client(self):
        if self._client is None:
            import redis
            self._client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        return self._client

    def guest_event(self, mac: str, kind: str, ts: float, **fields: str) -> None:
        """Write one lab event in the format of :mod:`shared.events` (both streams)."""
        from shared.events import GLOBAL_MAXLEN, GLOBAL_STREAM, HOST_MAXLEN, host_stream
        entry = {"ts": f"{ts:.3f}", "service": "lab", "kind": kind, "mac": mac, **fields}
        client = self._sync_client()
        client.xadd(GLOBAL_STREAM, entry, maxlen=GLOBAL_MAXLEN, approximate=True)
        client.xadd(host_stream(mac), entry, maxlen=HOST_MAXLEN, approximate=True)

    def console_watcher(self, mac: str):
        """A VM console callback that records the guest's stages as events, once each."""
        seen = set()

        def on_line(vm, line) -> None:
            for regex, kind in GUEST_STAGES:
                if kind not in seen and regex.search(line.text):
                    seen.add(kind)
                    detail = line.text.split("bootyard-lab: ", 1)[-1][:200]
                    self.guest_event(mac, kind, vm.started_at + line.t, console=detail,
                                     since_power_on=f"{line.t:.3f}")
        return on_line

    def events(self, mac: str) -> list:
        from shared.events import GLOBAL_STREAM, host_stream, merge_host_entries
        client = self._sync_client()
        # A MAC outside the inventory (a machine booting for discovery) has no stream of its
        # own: its events are in the global one. In time order, not stream order: services write
        # their events in batches (DHCP every 50 ms), so under load an http.script can reach the
        # stream before the dhcp.ack that came first. ``ts`` is taken when the event happened.
        everything = [(i, d) for i, d in client.xrange(GLOBAL_STREAM) if d.get("mac") == mac]
        return merge_host_entries(everything, client.xrange(host_stream(mac)))

    def stop(self) -> None:
        stop_all(self.procs.values())
        if self._client is not None:
            self._client.close()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(5)
            except subprocess.TimeoutExpired:
                self.redis.kill()


def stop_all(procs) -> None:
    """SIGTERM every process still running, then wait for each (5 s) and SIGKILL what stays."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
