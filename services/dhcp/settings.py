"""Settings of the DHCP service (section ``dhcp``); docs/dhcp.md lists them with their defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from shared.addresses import normalise_ipv4
from shared.settings import CommonSettings, http_url, port_number, positive, setting


@dataclasses.dataclass(frozen=True)
class DhcpSection:
    interfaces: tuple[str, ...] = setting(
        (), help="network interfaces to serve (required: the service refuses to start without)")
    server_port: int = setting(67, help="UDP port the server listens on (and relays get replies "
                                        "on)", check=port_number)
    client_port: int = setting(68, help="UDP port replies to clients go to", check=port_number)
    proxy: bool = setting(False, help="proxyDHCP mode: answer PXE clients with boot information "
                                      "only (ports 67 and 4011); another server gives addresses")
    boot_server_port: int = setting(4011, help="PXE boot server port (proxy mode only)",
                                    check=port_number)
    server_address: str | None = setting(
        None, help="server identifier (option 54); default: the interface's IPv4 address",
        check=lambda value: value is None or normalise_ipv4(value))
    http_base_url: str = setting(
        "", help="base URL of the HTTP service for iPXE scripts and HTTP boot; default "
                 "http://<interface address>:8080", check=http_url)
    ipxe_bios: str = setting("undionly.kpxe", help="boot file for legacy BIOS PXE (arch 0)")
    ipxe_efi: str = setting("ipxe.efi", help="boot file for x86-64 UEFI PXE (arch 7, 9)")
    ipxe_efi32: str = setting("ipxe-i386.efi", help="boot file for IA32 UEFI PXE (arch 6)")
    ipxe_arm64: str = setting("ipxe-arm64.efi", help="boot file for ARM64 UEFI PXE (arch 11)")
    http_boot_x64: str = setting("/images/ipxe.efi",
                                 help="path (under http_base_url) or URL for x86-64 UEFI HTTP "
                                      "boot (arch 16)")
    http_boot_arm64: str = setting("/images/ipxe-arm64.efi",
                                   help="path or URL for ARM64 UEFI HTTP boot (arch 19)")
    offer_hold: int = setting(30, help="seconds an offered address is held for the client",
                              check=positive)
    decline_quarantine: int = setting(600, help="seconds a DECLINEd address stays out of the "
                                                "pool", check=positive)
    queue_size: int = setting(4096, help="packets waiting for a worker before new ones are "
                                         "dropped", check=positive)
    batches_in_flight: int = setting(
        1, help="batches in flight at once: one is handled in Python while another's lease "
                "steps run in Redis (formerly dhcp.workers; `workers` means processes in the "
                "other services)", check=positive, formerly="workers")
    batch_size: int = setting(64, help="packets handled (and lease steps sent to Redis) per "
                                       "batch", check=positive)
    events: str = setting("leases", help="boot timeline events: all (also dhcp.discover), "
                                         "leases (offer, ack, nak, ...), none",
                          choices=("all", "leases", "none"))
    housekeeping_interval: float = setting(5.0, help="seconds between pool syncs, pool metrics "
                                                     "and expire events", check=positive)
    replica_acks: str = setting(
        "auto", help="Redis replicas that must hold a lease batch before its replies go out "
                     "(Redis WAIT); auto: 1 with a redis+sentinel:// URL, 0 otherwise",
        choices=("auto", "0", "1", "2", "3"))
    replica_timeout: float = setting(
        0.1, help="seconds to wait for replica_acks before answering anyway (counted as short)",
        check=positive)
    metrics_host: str = setting("0.0.0.0", help="address of the /metrics and /healthz listener")
    metrics_port: int = setting(9101, help="port of the /metrics and /healthz listener",
                                check=port_number)


@dataclasses.dataclass(frozen=True)
class DhcpSettings(CommonSettings):
    dhcp: DhcpSection = field(default_factory=DhcpSection)
