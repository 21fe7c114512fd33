"""What a host's boot scripts and templates see (pure: no sockets, no Redis, no clock).

The variables (:func:`merged_vars`: the profile's ``var.*`` under the host's; :func:`var`, one of
them), the per-host URLs (:func:`install_urls`, the contract in docs/http.md; :func:`booted_url`)
and the template context built from them (:func:`template_context`, docs/http.md "Template
contexts"): it holds no secret (token, done URL) unless ``http.token_in_scripts`` is on.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from shared.records import Host, Profile, Subnet, plain


def merged_vars(host: Host | None, profile: Profile | None) -> dict[str, str]:
    """The one host-over-profile variable overlay: the profile's ``var.*``, then the host's
    (a host's empty value does not hide the profile's: :func:`var` answers the same)."""
    out: dict[str, str] = dict(profile.vars) if profile else {}
    if host:
        out.update((k, v) for k, v in host.vars.items() if v)
    return out


def var(name: str, host: Host | None, profile: Profile | None) -> str | None:
    """One variable of :func:`merged_vars` without building the overlay (DHCP asks this per
    packet): the host's non-empty value, else the profile's, else None."""
    for record in (host, profile):
        if record is not None and record.vars.get(name):
            return record.vars[name]
    return None


def install_urls(base_url: str, mac: str, token: str | None = None) -> dict[str, str]:
    """The per-host install URLs (the contract in docs/http.md); ``token`` is appended if given."""
    suffix = f"?token={token}" if token else ""
    root = f"{base_url}/install/{mac}"
    return {
        "kickstart": f"{root}/ks.cfg{suffix}",
        "preseed": f"{root}/preseed.cfg{suffix}",
        "nocloud": f"{root}/",  # cloud-init ds=nocloud;s=<this> appends user-data, meta-data
        "user_data": f"{root}/user-data{suffix}",
        "meta_data": f"{root}/meta-data{suffix}",
        "vendor_data": f"{root}/vendor-data{suffix}",
        "done": f"{root}/done{suffix}",
        "booted": booted_url(base_url, mac, token),
        "script": f"{base_url}/boot/{mac}.ipxe",
    }


BOOTED_ARG = "bootyard.booted"  # the kernel argument naming the host's booted URL
BOOTED_MODES = ("live", "netroot", "sanboot")  # the OS says it is up (docs/http.md)


def booted_url(base_url: str, mac: str, token: str | None = None) -> str:
    """The URL a live, netroot or sanboot system calls once it is up (docs/http.md): its
    reserved or leased address, or its token, lets it in, as for the done callback."""
    return f"{base_url}/booted/{mac}" + (f"?token={token}" if token else "")


def template_context(mac: str, host: Host | None, profile: Profile | None,
                     subnet: Subnet | None, base_url: str | None, *, url_token: str | None,
                     done_token: str | None, server_ip: str = "") -> dict[str, Any]:
    """The variables a template sees (docs/http.md "Template contexts").

    ``url_token`` goes on the install URLs (``urls.kickstart`` ...). ``done_token`` is the
    host's token for the done callback: with it the context holds ``token``, ``done_url`` and
    ``urls.done``; without it none of the three. Install files (served only to the host) get
    both; boot scripts and kernel command lines (which anyone may fetch) get neither unless
    ``http.token_in_scripts`` is on.
    """
    host_d = plain(host)
    out: dict[str, Any] = {"mac": mac, "host": host_d or {"mac": mac},
                           "profile": plain(profile), "vars": merged_vars(host, profile),
                           "hw": host_d.get("hw") or {}}
    subnet_d = plain(subnet) or None
    if subnet is not None:
        subnet_d["netmask"] = str(subnet.network.netmask)
        subnet_d["prefixlen"] = subnet.network.prefixlen
    out["subnet"] = subnet_d
    if base_url:
        base = base_url.rstrip("/")
        urls = install_urls(base, mac, url_token)
        urls.update(base=base, images=f"{base}/images", mirror=f"{base}/mirror")
        del urls["done"]
        if done_token:
            urls["done"] = install_urls(base, mac, done_token)["done"]
            out["done_url"] = urls["done"]
            out["token"] = done_token
        out["urls"] = urls
        out["server"] = {"url": base, "ip": server_ip,
                         "host": urllib.parse.urlsplit(base).netloc}
    return out
