"""The request pattern of an AoE initiator and each target's answer times, from a capture
(``scripts/bench_aoe.py --capture DIR``: tcpdump of the AoE frames on the server's interface).

    python scripts/bench/aoe_pattern.py DIR/aoe-1500.pcap

Per shelf (bench-aoe: 1 bootyard, 2 vblade, 3 vblade -s) and ATA command: requests, sectors per
request, requests outstanding when one is sent (the initiator's window in use), the time from a
request to its reply, and for reads the service time: from the request's arrival, or the
previous reply if the target was still busy, to its reply (what a read costs the target, without
the queueing of a burst).
"""

from __future__ import annotations

import collections
import statistics
import struct
import sys


def frames(path: str):
    with open(path, "rb") as f:
        nano = struct.unpack("<I", f.read(24)[:4])[0] == 0xA1B23C4D
        while len(head := f.read(16)) == 16:
            sec, frac, incl, _ = struct.unpack("<IIII", head)
            yield sec + frac / (1e9 if nano else 1e6), f.read(incl)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(int(len(values) * p), len(values) - 1)] * 1e6


def exchanges(path: str, pause: float = 0.5) -> dict[int, dict[str, float]]:
    """Per shelf, for an initiator with one ATA command at a time (iPXE): requests, the time
    the target took (request to reply on the wire: median in us, sum in s) and the time the
    initiator took between a reply and its next request (median, sum; gaps over ``pause`` s,
    between boots, left out)."""
    sent: dict[tuple[int, int], float] = {}
    last_reply: dict[int, float] = {}
    target: dict[int, list[float]] = collections.defaultdict(list)
    guest: dict[int, list[float]] = collections.defaultdict(list)
    for t, data in frames(path):
        if len(data) < 36:
            continue
        verflags, _err, shelf, _slot, command, tag = struct.unpack_from("!BBHBBI", data, 14)
        if command != 0:
            continue
        if not verflags & 0x08:
            sent[(shelf, tag)] = t
            if shelf in last_reply and t - last_reply[shelf] < pause:
                guest[shelf].append(t - last_reply[shelf])
        elif (shelf, tag) in sent:
            target[shelf].append(t - sent.pop((shelf, tag)))
            last_reply[shelf] = t
    return {shelf: {"requests": len(values), "target_us": pct(values, .5),
                    "target_s": sum(values), "guest_us": pct(guest[shelf] or [0.0], .5),
                    "guest_s": sum(guest[shelf])} for shelf, values in target.items()}


def main(path: str) -> None:
    pending: dict[tuple[int, int], tuple[float, int]] = {}
    outstanding: collections.Counter = collections.Counter()
    window: dict[int, list[int]] = collections.defaultdict(list)
    sectors: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    latency: dict[tuple[int, int], list[float]] = collections.defaultdict(list)
    service: dict[int, list[float]] = collections.defaultdict(list)
    last_reply: dict[int, float] = collections.defaultdict(float)
    for t, data in frames(path):
        if len(data) < 36:
            continue
        verflags, _err, shelf, _slot, command, tag = struct.unpack_from("!BBHBBI", data, 14)
        if command != 0:  # ATA only
            continue
        ata = data[27]
        if not verflags & 0x08:  # a request
            pending[(shelf, tag)] = (t, ata)
            outstanding[shelf] += 1
            window[shelf].append(outstanding[shelf])
            sectors[shelf][(ata, data[26])] += 1
            continue
        if (shelf, tag) not in pending:
            continue
        sent, op = pending.pop((shelf, tag))
        outstanding[shelf] -= 1
        latency[(shelf, op)].append(t - sent)
        if op in (0x20, 0x24):
            service[shelf].append(t - max(sent, last_reply[shelf]))
        last_reply[shelf] = t
    for shelf in sorted(window):
        print(f"shelf {shelf}: requests (command, sectors): {dict(sectors[shelf].most_common(4))}; "
              f"outstanding at send: median {statistics.median(window[shelf]):.0f}, "
              f"max {max(window[shelf])}")
        for (s, op), values in sorted(latency.items()):
            if s == shelf and len(values) > 10:
                print(f"  ATA {op:#04x}: reply after median {pct(values, .5):.0f} us "
                      f"(p10 {pct(values, .1):.0f}, p90 {pct(values, .9):.0f})")
        if service[shelf]:
            print(f"  read service time: median {pct(service[shelf], .5):.1f} us "
                  f"(p10 {pct(service[shelf], .1):.1f}, p90 {pct(service[shelf], .9):.1f})")


if __name__ == "__main__":
    main(sys.argv[1])
