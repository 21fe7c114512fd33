"""Wake-on-LAN: the magic packet, sent only on a deploy interface.

Choice (docs/power.md): a UDP datagram to the limited broadcast 255.255.255.255, port 9
(``power.wol_port``), from a socket bound to the deploy interface (``SO_BINDTODEVICE``), not a
raw Ethernet frame of ethertype 0x0842. A NIC wakes on the pattern anywhere in a frame, so both
work; UDP needs no raw socket (no CAP_NET_RAW for the sending itself, only for binding to a
device on older kernels), passes the switches and VLANs a broadcast passes, and is what every
BMC-less "wakeonlan" tool sends, so packet captures and firewalls recognise it. The limited
broadcast never leaves the interface the socket is bound to: the packet cannot reach any other
network.

Only ``on`` exists: Wake-on-LAN cannot power a machine off, cycle it, or read its state.
"""

from __future__ import annotations

import socket
import time

from shared.power import WOL_PORT, PowerError, Result, Target, magic_packet, wol_interfaces

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
COPIES = 3  # magic packets per interface (UDP: one may be lost on a busy segment)


def send(interface: str, mac: str, port: int = WOL_PORT, copies: int = COPIES) -> None:
    """Broadcast the magic packet for ``mac`` on ``interface``; OSError if it cannot."""
    payload = magic_packet(mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode() + b"\0")
        for _ in range(copies):
            sock.sendto(payload, ("255.255.255.255", port))


def run(target: Target, action: str, *, allowed: tuple[str, ...], port: int = WOL_PORT
        ) -> Result:
    """``on``: the magic packet on the deploy interfaces; anything else is unsupported."""
    start = time.monotonic()
    if action != "on":
        what = "read the power state" if action == "status" else f"power {action}"
        raise PowerError("unsupported", f"host {target.mac}: Wake-on-LAN cannot {what} "
                         "(it only powers on; use IPMI or Redfish for the rest)")
    interfaces = wol_interfaces(target, allowed)
    sent = []
    for interface in interfaces:
        try:
            send(interface, target.wol_mac, port)
        except OSError as exc:
            raise PowerError("interface_refused", f"host {target.mac}: cannot send the magic "
                             f"packet on {interface}: {exc.strerror or exc}") from None
        sent.append(interface)
    return Result(target.mac, action, "wol", "ok", "unknown",
                  detail=f"magic packet for {target.wol_mac} sent on {', '.join(sent)} "
                         f"(UDP port {port}); Wake-on-LAN does not report the power state",
                  seconds=time.monotonic() - start)
