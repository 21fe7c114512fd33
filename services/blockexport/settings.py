"""Settings of the block export service (section ``blockexport``); docs/blockexport.md lists
them with their defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from shared.settings import CommonSettings, non_negative, port_number, positive, setting


def _block_size(value: int) -> None:
    if value < 4096 or value & (value - 1):
        raise ValueError("must be a power of two of at least 4096 bytes")


def _buffer_count(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError("must be between 1 and 65535")


@dataclasses.dataclass(frozen=True)
class BlockexportSection:
    interface: str = setting(
        "", help="network interface AoE is served on (required: the service refuses to start "
                 "without one, and sends AoE frames nowhere else)")
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
    metrics_host: str = setting("0.0.0.0", help="address of the /metrics and /healthz listener")
    metrics_port: int = setting(9104, help="port of the /metrics and /healthz listener",
                                check=port_number)


@dataclasses.dataclass(frozen=True)
class BlockexportSettings(CommonSettings):
    blockexport: BlockexportSection = field(default_factory=BlockexportSection)
