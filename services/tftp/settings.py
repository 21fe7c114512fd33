"""The TFTP service's settings: section ``tftp`` (environment ``BOOTYARD_TFTP__<KEY>``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.bootplan import check_unknown_host
from shared.settings import CommonSettings, http_url, non_negative, port_number, positive, setting


def _blksize(value: int) -> None:
    if not 8 <= value <= 65464:
        raise ValueError("RFC 2348 allows 8..65464")


@dataclass(frozen=True)
class TftpSection:
    root: str = setting("/srv/bootyard/tftp", help="directory served (make tftp-root fills it)")
    bind: str = setting("0.0.0.0", help="address the listener and the transfer sockets bind to")
    port: int = setting(69, help="UDP port of the listener", check=port_number)
    metrics_host: str = setting("0.0.0.0", help="address of /metrics and /healthz")
    metrics_port: int = setting(9102, help="port of /metrics and /healthz", check=port_number)
    blksize_max: int = setting(65464, help="largest blksize accepted (RFC 2348); clients "
                               "asking more get this", check=_blksize)
    windowsize_max: int = setting(64, help="largest windowsize accepted (RFC 7440)",
                                  check=positive)
    timeout_initial: float = setting(0.5, help="retransmission timeout before the first RTT "
                                     "sample, seconds", check=positive)
    timeout_min: float = setting(0.05, help="smallest adaptive retransmission timeout, seconds",
                                 check=positive)
    timeout_max: float = setting(4.0, help="largest retransmission timeout (after doubling), "
                                 "seconds", check=positive)
    retries: int = setting(6, help="consecutive timeouts before a transfer is given up, "
                           "and never sooner than retries x timeout_max since the client's last "
                           "ACK",
                           check=positive)
    max_transfers: int = setting(500, help="concurrent transfers; more requests wait for a "
                                 "slot while their client keeps asking (queue_timeout)",
                                 check=positive)
    workers: int = setting(0, help="processes serving transfers; 0: one per CPU this process "
                           "may run on, at most 8 (1 on a single CPU); above 1 each binds the "
                           "listener port with SO_REUSEPORT and gets max_transfers // workers "
                           "and queue_max // workers of the admission limits, and this process "
                           "supervises them and serves the summed /metrics (docs/tftp.md)",
                           check=non_negative)
    pin_workers: bool = setting(True, help="with workers above 1, worker i runs only on the "
                                "i-th CPU this process may run on (modulo their number): a "
                                "worker and the clients it wakes stay on one CPU's caches, and "
                                "a transfer moves at its first ACK to the worker on the CPU its "
                                "client's datagrams arrive on (docs/tftp.md)")
    queue_timeout: float = setting(5.0, help="seconds a request may wait for a transfer slot "
                                   "after the client last sent it (a firmware retransmitting "
                                   "its RRQ keeps its place)", check=non_negative)
    queue_max: int = setting(1000, help="requests allowed to wait for a slot at once",
                             check=non_negative)
    busy_error: bool = setting(False, help="answer a request that found no slot with ERROR "
                               "'busy' instead of no answer; firmware gives up the boot on an "
                               "ERROR but retransmits an unanswered RRQ (docs/tftp.md)")
    transfer_threads: int = setting(1, help="up to this many transfers at once run each in its "
                                    "own thread with blocking I/O (lowest latency per block); "
                                    "the others share the event loop; 0: all on the event loop",
                                    check=non_negative)
    listener_buffer: int = setting(4 << 20, help="receive buffer of the listener socket "
                                   "(bytes), so a boot storm's requests are not dropped",
                                   check=non_negative)
    cache_file_max: int = setting(8 << 20, help="files up to this size (bytes) are kept in "
                                  "memory; larger ones stream from disk", check=non_negative)
    cache_total: int = setting(256 << 20, help="memory (bytes) for cached files, least "
                               "recently used evicted", check=non_negative)
    dynamic: bool = setting(True, help="render per-host PXELINUX/GRUB/iPXE configs")
    images_prefix: str = setting("images", help="directory of the TFTP root holding profile "
                                 "kernels and initrds (the HTTP service's /images/)")
    images_root: str = setting("", help="if set, names under /<images_prefix>/ are read from "
                               "this directory (the HTTP service's http.images_root) instead of "
                               "the TFTP root: one images directory for both, no copy")
    http_base_url: str | None = setting(None, help="if set, boot.ipxe chains to the HTTP "
                                        "service's per-host script at <this>/boot/ipxe",
                                        check=http_url)
    unknown_host: str = setting("local", help="what an unknown host's generic config does "
                                "(one vocabulary with http.unknown_host): local (boot the local "
                                "disk), discovery (the same, noted in the config), none (file "
                                "not found), menu (the HTTP service's iPXE menu through "
                                "boot.ipxe; local in other loaders) or profile:<name> (boot "
                                "that profile)", check=check_unknown_host)


@dataclass(frozen=True)
class TftpSettings(CommonSettings):
    tftp: TftpSection = field(default_factory=TftpSection)
