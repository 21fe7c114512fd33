"""A tiny IPv6 router advertiser for the lab segment (``python -m lab.radvd IFNAME``).

Why: the iPXE builds in Debian (2019) wait about 16 s for IPv6 router discovery on a segment
without router advertisements before they carry on with IPv4 (lab-facts pitfall 1). A deploy
network without RAs costs every iPXE boot those seconds; the lab sends RAs so that boot times
measure the services, not that wait.

It answers router solicitations at once and advertises every 2 s, with no default route (router
lifetime 0) and one on-link, autonomous ULA prefix, for a bounded time (``--duration``). Run it in
the lab's server namespace only: it never runs against the root namespace's interfaces.
"""

from __future__ import annotations

import argparse
import select
import socket
import struct
import sys
import time

ICMPV6_RS = 133
ICMPV6_RA = 134


def router_advertisement(prefix: bytes, mac: bytes) -> bytes:
    # RFC 4861 4.2: type, code, checksum (kernel fills it), hop limit, flags M/O = 0,
    # router lifetime 0 (not a default router), reachable time, retrans timer.
    ra = struct.pack("!BBHBBHII", ICMPV6_RA, 0, 0, 64, 0, 0, 0, 0)
    # 4.6.1 source link-layer address option.
    ra += struct.pack("!BB", 1, 1) + mac
    # 4.6.2 prefix information: /64, on-link + autonomous, lifetimes 1 h / 30 min.
    ra += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 3600, 1800, 0) + prefix
    return ra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("interface")
    parser.add_argument("--prefix", default="fd18:b007::", help="ULA /64 prefix to advertise")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=1800.0, help="stop after this long")
    args = parser.parse_args(argv)
    ifindex = socket.if_nametoindex(args.interface)
    with open(f"/sys/class/net/{args.interface}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    prefix = socket.inet_pton(socket.AF_INET6, args.prefix)
    packet = router_advertisement(prefix, mac)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.interface.encode())
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    # Join all-routers so solicitations reach us (IPV6_JOIN_GROUP = ADD_MEMBERSHIP).
    group = socket.inet_pton(socket.AF_INET6, "ff02::2") + struct.pack("@I", ifindex)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
    all_nodes = ("ff02::1", 0, 0, ifindex)
    end = time.monotonic() + args.duration
    next_periodic = 0.0
    sent = 0
    print(f"radvd: advertising {args.prefix}/64 on {args.interface}", flush=True)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_periodic:
            try:
                sock.sendto(packet, all_nodes)
                sent += 1
            except OSError as exc:  # link-local address not ready yet (DAD): try again soon
                print(f"radvd: send failed: {exc}", flush=True)
            next_periodic = now + args.interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_periodic - time.monotonic()))
        if ready:
            data, _addr = sock.recvfrom(2048)
            if data and data[0] == ICMPV6_RS:
                next_periodic = 0.0  # answer at once
    return 0


if __name__ == "__main__":
    sys.exit(main())
