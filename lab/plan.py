"""What a lab run serves: the server's addresses and roots, and the hosts with how each boots.

Both stacks (classic and bootyard) are configured from the same plan, so they serve the same
files to the same machines.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

KINDS = ("kernel", "live", "local")  # what the host runs: initramfs marker, live root, local disk
# How it gets there: iPXE script over HTTP, PXELINUX over TFTP, GRUB (UEFI) over TFTP.
BOOTS = ("ipxe", "pxelinux", "grub")


@dataclasses.dataclass(frozen=True)
class HostSpec:
    name: str
    mac: str
    ip: str
    kind: str = "kernel"
    boot: str = "ipxe"
    marker: str = ""

    @property
    def cmdline(self) -> str:
        return kernel_cmdline(self.marker)


def kernel_cmdline(marker: str) -> str:
    return f"console=ttyS0 quiet panic=-1 bootyard.marker={marker}"


@dataclasses.dataclass
class BootPlan:
    server_ip: str
    network: str  # e.g. 198.18.7.0/24
    www_root: Path
    tftp_root: Path
    http_port: int = 80
    hosts: list[HostSpec] = dataclasses.field(default_factory=list)
    default_marker: str = dataclasses.field(default_factory=lambda: "discovery-"
                                            + secrets.token_hex(4))
    # more BOOTYARD_* settings for bootyard's services (BOOTYARD_HTTP__UNKNOWN_HOST, BOOTYARD_DISCOVERY__ENABLED)
    settings: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.server_ip.rsplit(".", 1)[0]

    @property
    def pool(self) -> tuple[str, str]:
        return f"{self.prefix}.100", f"{self.prefix}.199"

    @property
    def http_base(self) -> str:
        return f"http://{self.server_ip}:{self.http_port}"

    @property
    def default_cmdline(self) -> str:
        return kernel_cmdline(self.default_marker)

    def add_host(self, name: str, kind: str = "kernel", boot: str = "ipxe") -> HostSpec:
        if kind not in KINDS or boot not in BOOTS:
            raise ValueError(f"kind must be one of {KINDS}, boot one of {BOOTS}")
        n = len(self.hosts)
        host = HostSpec(name=name, mac=f"52:54:00:b0:07:{n + 0x10:02x}",
                        ip=f"{self.prefix}.{50 + n}", kind=kind, boot=boot,
                        marker=f"{name}-{secrets.token_hex(4)}")
        self.hosts.append(host)
        return host

    def unknown_mac(self, n: int = 0) -> str:
        return f"52:54:00:e0:00:{n + 1:02x}"
