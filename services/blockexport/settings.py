"""Settings of the block export service (section ``blockexport``); docs/blockexport.md lists
them with their defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from shared.settings import CommonSettings, non_negative, port_number, positive, setting


def _block_size(value: int) -> None:
    if value < 4096 or value & (value - 1):
        raise ValueError("must be a power of two of at least 4096 bytes")


def _dsl(value: int) -> None:
    if not 512 <= value <= 2**24 - 1:
        raise ValueError("must be between 512 and 16777215 bytes (RFC 7143 13.12)")


def _buffer_count(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError("must be between 1 and 65535")


@dataclasses.dataclass(frozen=True)
class BlockexportSection:
    interface: str = setting(
        "", help="network interface AoE is served on (empty: no AoE; the service then needs "
                 "iSCSI, and sends AoE frames nowhere)")
    mtu: int = setting(0, help="MTU used for sectors per frame; 0: the interface's MTU",
                       check=non_negative)
    overlay_root: str = setting("/var/lib/bootyard/overlays",
                                help="directory of the per-host copy-on-write overlays of "
                                     "exports with cow: yes")
    overlay_block: int = setting(4096, help="overlay block size in bytes (docs/blockexport.md: "
                                            "why 4096); fixed per overlay when it is made",
                                 check=_block_size)
    buffer_count: int = setting(64, help="frames each initiator may have outstanding "
                                         "(advertised in Query Config; Linux uses at most 64)",
                                check=_buffer_count)
    queue_size: int = setting(8192, help="I/O requests waiting per export before new ones "
                                         "are dropped (the initiator retransmits)",
                              check=positive)
    batch_size: int = setting(128, help="I/O requests of one export handled together, with "
                                        "one sync per host for all their writes",
                              check=positive)
    attach_timeout: float = setting(600.0, help="seconds after its last frame an initiator "
                                               "still counts as attached", check=positive)
    housekeeping_interval: float = setting(5.0, help="seconds between updates of the overlay, "
                                                     "free space and attachment metrics",
                                           check=positive)
    iscsi_port: int = setting(3260, help="TCP port of the iSCSI target (0: no iSCSI)",
                              check=port_number)
    iscsi_host: str = setting("", help="address the iSCSI target listens on (empty: all)")
    iscsi_max_connections: int = setting(1024, help="iSCSI connections at once; more are "
                                                    "closed at once (counted)", check=positive)
    iscsi_login_timeout: float = setting(30.0, help="seconds a connection has to finish its "
                                                    "login", check=positive)
    iscsi_idle_timeout: float = setting(0.0, help="seconds of silence after which a session is "
                                                  "closed (0: never; TCP keepalive still finds "
                                                  "dead peers)", check=non_negative)
    iscsi_nop_interval: float = setting(30.0, help="seconds of silence before the target sends "
                                                   "a NOP-In ping (0: never); an unanswered "
                                                   "ping never ends a session",
                                        check=non_negative)
    iscsi_window: int = setting(128, help="commands each session may have outstanding (the "
                                          "CmdSN window)", check=positive)
    iscsi_max_recv_dsl: int = setting(262144, help="MaxRecvDataSegmentLength the target "
                                                   "declares (bytes)", check=_dsl)
    iscsi_max_burst: int = setting(1048576, help="MaxBurstLength the target offers (bytes)",
                                   check=_dsl)
    iscsi_first_burst: int = setting(262144, help="FirstBurstLength the target offers (bytes)",
                                     check=_dsl)
    initiator_prefix: str = setting("iqn.2026-11.org.bootyard",
                                    help="iSCSI initiator names bootyard renders are "
                                         "<prefix>:<hostname or MAC>: keep it equal to "
                                         "http.initiator_prefix (sessions are matched to "
                                         "hosts by it)")
    metrics_host: str = setting("0.0.0.0", help="address of the /metrics and /healthz listener")
    metrics_port: int = setting(9104, help="port of the /metrics and /healthz listener",
                                check=port_number)


@dataclasses.dataclass(frozen=True)
class BlockexportSettings(CommonSettings):
    blockexport: BlockexportSection = field(default_factory=BlockexportSection)
