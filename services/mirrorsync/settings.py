"""The mirror sync service's settings: section ``mirrorsync`` (environment
``BOOTYARD_MIRRORSYNC__<KEY>``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.settings import CommonSettings, non_negative, port_number, positive, setting


def _fraction(value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError("must be between 0 and 1")


@dataclass(frozen=True)
class MirrorsyncSection:
    root: str = setting("/var/lib/bootyard/mirror", help="the mirror volume: published trees "
                        "and their snapshots (the HTTP service's http.mirror_root)")
    rsync: str = setting("rsync", help="the rsync program")
    metrics_host: str = setting("0.0.0.0", help="address of /metrics and /healthz")
    metrics_port: int = setting(9105, help="port of /metrics and /healthz", check=port_number)
    io_timeout: int = setting(300, help="rsync --timeout: seconds without data before rsync "
                              "gives up (exit 30)", check=positive)
    contimeout: int = setting(30, help="rsync --contimeout: seconds to connect to an rsync "
                              "daemon (exit 35)", check=positive)
    deadline: float = setting(21600.0, help="seconds a whole sync may take; rsync is stopped "
                              "after that and nothing is published", check=positive)
    jitter: float = setting(0.1, help="a sync starts up to this fraction of its interval late, "
                            "so that mirrors with one interval do not start together",
                            check=_fraction)
    retry_delay: float = setting(300.0, help="seconds before a sync that failed for a passing "
                                 "reason (upstream updating, half-updated, rsync 23/30, "
                                 "unreachable) is tried again, doubled per consecutive failure "
                                 "up to the interval", check=positive)
    keep: int = setting(2, help="old snapshots kept besides the published one (a mirror "
                        "record's keep overrides it)", check=non_negative)
    max_concurrent: int = setting(2, help="syncs this replica runs at once", check=positive)
    lock_ttl: float = setting(60.0, help="seconds of the Redis lock's lease; the holder renews "
                              "it every lock_ttl/4 for the whole sync", check=positive)
    min_free_bytes: int = setting(1 << 30, help="a sync does not start, or is stopped, when the "
                                  "volume has less free space than this (its partial snapshot "
                                  "is removed; the published tree is untouched)",
                                  check=non_negative)
    space_factor: float = setting(1.0, help="before a sync, also require this many times the "
                                  "bytes the mirror's last sync copied to be free",
                                  check=non_negative)
    max_shrink: float = setting(0.5, help="refuse a snapshot with this fraction fewer files than "
                                "the published one (an emptied upstream)", check=_fraction)
    trace_name: str = setting("bootyard", help="name of the trace file written into each "
                              "snapshot: project/trace/<trace_name>")
    tick: float = setting(1.0, help="seconds between looks at the schedule, the inventory "
                          "and sync requests", check=positive)


@dataclass(frozen=True)
class MirrorsyncSettings(CommonSettings):
    mirrorsync: MirrorsyncSection = field(default_factory=MirrorsyncSection)
