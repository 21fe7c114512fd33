"""Which inventory host an iSCSI session belongs to (pure).

A session belongs to a host when its initiator name is the one bootyard renders for that host
(:func:`shared.boottarget.initiator_iqn`: ``var.initiator_iqn``, else
``<initiator_prefix>:<hostname or MAC>``; iPXE sends it from ``set initiator-iqn``, the iBFT
and dracut's ``rd.iscsi.initiator`` carry it on) **and** the connection comes from that host's
address: its reservation (``ip``) or a current lease the host holds. A name alone proves
nothing (anyone can send any name), so a session whose address does not match gets no host:
the export then serves it the plain disk (read-only golden image for ``cow`` exports) or
refuses it (``unmatched: refuse``), never another host's overlay.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared import boottarget
from shared.records import Host, Profile


def names_index(hosts: Iterable[Host], profile_of, prefix: str) -> dict[str, list[Host]]:
    """Rendered initiator name (lower case) -> the hosts it is rendered for."""
    out: dict[str, list[Host]] = {}
    for host in hosts:
        profile: Profile | None = profile_of(host.profile) if host.profile else None
        name = boottarget.initiator_iqn(host, profile, prefix).lower()
        out.setdefault(name, []).append(host)
    return out


def match(candidates: list[Host], address: str, lease_holder: str | None) -> Host | None:
    """The candidate whose reservation is ``address`` or who holds its lease, or None."""
    for host in candidates:
        if host.ip and host.ip == address:
            return host
    for host in candidates:
        if lease_holder and host.mac == lease_holder:
            return host
    return None
