"""The QEMU boot lab: a private segment, the servers of one stack, and VMs that boot from them.

Used by the pytest scenarios (tests/e2e) and by ``python -m lab`` (``make demo``,
``make bench-boot``)::

    with Lab() as netlab:
        boot = BootLab(netlab, workdir, stack="classic")      # or "bootyard"
        host = boot.plan.add_host("web1", kind="kernel")       # before start()
        boot.start()
        result = boot.boot(host, BIOS)                         # waits for the marker
        print(result.marker.t, result.stages)

Topology: the segment's switch namespace holds the bridge and one tap per VM (QEMU runs there);
the server namespace holds eth0 = 198.18.N.1, the stack's servers and an IPv6 router advertiser
(lab-facts pitfall 1). Everything is killed and removed when the ``Lab`` closes.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from lab import assets as assets_mod
from lab.plan import BootPlan, HostSpec
from lab.qemu import VM, BootFailed, Firmware, Line

REPO = assets_mod.REPO
try:
    from harness.netlab import Lab  # noqa: F401  (re-exported for the CLI)
except ImportError:  # run as python -m lab: the harness lives in tests/
    sys.path.insert(0, str(REPO / "tests"))
    from harness.netlab import Lab  # noqa: F401

MARKER_TIMEOUT = 120.0
# Console lines that mark the stages of a boot (first match of each), for timelines.
STAGES = (
    ("firmware", r"."),
    ("net-boot-program", r"iPXE initialising|PXELINUX \d|>>Start PXE|>>Start HTTP"),
    ("ipxe-dhcp-done", r"Configuring \(net0.*ok"),
    ("kernel-fetch", r"vmlinuz\.\.\. ok"),
    ("init", r"bootyard-lab: stage=init"),
    ("network", r"bootyard-lab: stage=network"),
    ("rootfs", r"bootyard-lab: stage=rootfs-fetched"),
    ("live-root", r"bootyard-lab: stage=live-root"),
    ("marker", r"BOOTYARD-MARKER"),
)


@dataclasses.dataclass
class BootResult:
    vm: VM
    marker: Line
    mac: str

    @property
    def seconds(self) -> float:
        return self.marker.t

    @property
    def stages(self) -> list[tuple[str, float]]:
        out = []
        for name, pattern in STAGES:
            line = self.vm.find(pattern)
            if line is not None:
                out.append((name, line.t))
        return out


class BootLab:
    def __init__(self, netlab, workdir: Path, stack: str = "classic",
                 assets: assets_mod.Assets | None = None,
                 stack_env: dict[str, str] | None = None) -> None:
        if stack not in ("classic", "bootyard"):
            raise ValueError("stack is classic or bootyard")
        self.netlab = netlab
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.assets = assets or assets_mod.ensure_assets()
        self.seg = netlab.segment()
        self.stack_name = stack
        self.plan = BootPlan(server_ip=self.seg.address(1), network=self.seg.network,
                             www_root=self.workdir / "www", tftp_root=self.workdir / "tftp")
        self.stack = None
        self.stack_env = dict(stack_env or {})  # bootyard stack: more BOOTYARD_* settings
        self.vms: list[VM] = []

    @property
    def server(self):
        return self.seg.server

    def start(self) -> None:
        assets_mod.populate(self.assets, self.plan.www_root, self.plan.tftp_root)
        self.radvd_log = open(self.workdir / "radvd.log", "w")
        self.server.popen(sys.executable, "-m", "lab.radvd", "eth0", stdout=self.radvd_log,
                          stderr=subprocess.STDOUT, cwd=str(REPO))
        if self.stack_name == "classic":
            from lab.classic import ClassicStack
            self.stack = ClassicStack(self.plan, self.server, self.workdir)
        else:
            from lab.bootyard import BootyardStack
            self.stack = BootyardStack(self.plan, self.server, self.workdir,
                                       extra_env=self.stack_env)
        self.stack.start()

    def vm(self, mac: str, firmware: Firmware, name: str | None = None,
           disk: Path | None = None, memory_mb: int = 512) -> VM:
        tap = self.seg.add_tap()
        vm = VM(self.seg.switch, tap, mac, firmware, self.workdir,
                name=name or f"vm{len(self.vms)}", disk=disk, memory_mb=memory_mb)
        self.vms.append(vm)
        return vm

    def boot(self, host: HostSpec | str, firmware: Firmware, pattern: str | None = None,
             timeout: float = MARKER_TIMEOUT, disk: Path | None = None) -> BootResult:
        """Power on a VM for ``host`` (a HostSpec, or a MAC the inventory does not know) and wait
        for its marker (``pattern`` overrides it). QEMU is killed afterwards, pass or fail."""
        mac = host.mac if isinstance(host, HostSpec) else host
        if pattern is None:
            marker = host.marker if isinstance(host, HostSpec) else self.plan.default_marker
            pattern = rf"BOOTYARD-MARKER {marker} "
        if disk is None and isinstance(host, HostSpec) and host.kind == "local":
            from lab.disk import make_disk
            disk = make_disk(self.workdir / f"{host.name}-disk.img",
                             f"BOOTYARD-MARKER {host.marker} stage=local-disk")
        vm = self.vm(mac, firmware, disk=disk)
        watcher = getattr(self.stack, "console_watcher", None)
        if watcher is not None:
            vm.on_line = watcher(mac)
        try:
            vm.start()
            if watcher is not None:
                self.stack.guest_event(mac, "lab.power_on", vm.started_at,
                                       firmware=firmware.name + ("-http" if firmware.http_boot
                                                                 else ""))
            line = vm.wait_for(pattern, timeout)
            vm.wait_exit(2)
        finally:
            vm.stop()
        return BootResult(vm, line, mac)

    def events(self, mac: str) -> list:
        return self.stack.events(mac) if self.stack else []

    def stop(self) -> None:
        for vm in self.vms:
            vm.stop()
        if self.stack is not None:
            self.stack.stop()


def format_stages(result: BootResult) -> str:
    lines = []
    previous = 0.0
    for name, t in result.stages:
        lines.append(f"  {t:7.2f}s  (+{t - previous:5.2f}s)  {name}")
        previous = t
    return "\n".join(lines)


__all__ = ["BootLab", "BootResult", "BootFailed", "Lab", "format_stages"]
