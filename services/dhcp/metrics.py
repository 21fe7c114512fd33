"""The DHCP service's metrics (names ``bootyard_dhcp_*``); docs/dhcp.md describes them."""

from __future__ import annotations

from services.dhcp.policy import IGNORE_REASONS
from shared import metrics

IN_TYPES = ("discover", "request", "decline", "release", "inform", "other")
OUT_TYPES = ("offer", "ack", "nak")
PACKETS = metrics.counter(
    "bootyard_dhcp_packets_total", "DHCP packets received and sent, by message type",
    {"direction": ("in", "out"), "type": IN_TYPES + OUT_TYPES})
IGNORED = metrics.counter(
    "bootyard_dhcp_ignored_total", "Requests not answered, by reason", {"reason": IGNORE_REASONS})
DROPPED = metrics.counter(
    "bootyard_dhcp_dropped_total", "Packets dropped before handling or sending",
    {"cause": ("queue_full", "send_failed", "truncated")})
OPTIONS_DROPPED = metrics.counter(
    "bootyard_dhcp_options_dropped_total",
    "Request options not used: a host name (12) that is not an RFC 1123 name, relay agent "
    "information (82) that would not fit the reply (answered without the echo)",
    {"option": ("host_name", "relay_agent_info")})
OWN_ADDRESS_IN_RANGE = metrics.counter(
    "bootyard_dhcp_own_address_in_range_total",
    "This server's own address found inside a subnet's dynamic range (kept out of the pool); "
    "once per subnet, range and address")
LATENCY = metrics.histogram(
    "bootyard_dhcp_response_duration_seconds", "Time from receiving a request to sending its reply",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
QUEUE = metrics.gauge("bootyard_dhcp_queue_packets", "Packets waiting for a worker")
POOL_SIZE = metrics.gauge("bootyard_dhcp_pool_addresses",
                          "Dynamic addresses in each subnet's pool", {"subnet": ()})
POOL_USED = metrics.gauge("bootyard_dhcp_pool_used_addresses",
                          "Pool addresses offered, leased or quarantined", {"subnet": ()})

TYPE_NAMES = {1: "discover", 3: "request", 4: "decline", 7: "release", 8: "inform",
              2: "offer", 5: "ack", 6: "nak"}
# Children resolved once: the per-packet path does no label lookups.
IN = {t: PACKETS.labels("in", t) for t in IN_TYPES}
OUT = {t: PACKETS.labels("out", t) for t in OUT_TYPES}
IGNORED_BY = {r: IGNORED.labels(r) for r in IGNORE_REASONS}
QUEUE_FULL = DROPPED.labels("queue_full")
SEND_FAILED = DROPPED.labels("send_failed")
TRUNCATED = DROPPED.labels("truncated")
BAD_HOSTNAME = OPTIONS_DROPPED.labels("host_name")
RELAY_INFO_NOT_ECHOED = OPTIONS_DROPPED.labels("relay_agent_info")
