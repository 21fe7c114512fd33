"""``/booted/<mac>`` and ``/booted``: a live, netroot or sanboot system says it is up.

The boot plan puts ``bootyard.booted=<url>`` on the kernel command line of live and netroot
boots (shared/bootplan.py), and install files can name it (``urls.booted``); the booted OS
calls it once its services run (docs/http.md has ready-to-use snippets). The call is allowed as
the done callback is: the host's token, or a request from its reserved or leased address. A
sanboot disk shared by many hosts (a golden image with per-host overlays) cannot carry a
per-host URL, so ``/booted`` without a MAC finds the host by the caller's address (reserved,
else leased). The answer is an ``http.booted`` event: the host's boot state reaches ``up``
(docs/console.md). Nothing in the inventory changes.
"""

from __future__ import annotations

from aiohttp import web

from shared import logs

log = logs.get_logger("http")
METHODS = ("GET", "POST", "PUT")


async def booted(service, request: web.Request) -> web.Response:
    """The handler of both routes; ``service`` is the :class:`BootService`."""
    if request.method not in METHODS:
        raise web.HTTPMethodNotAllowed(request.method, list(METHODS))
    text = request.match_info.get("mac")
    if text:
        mac = service.mac(text)
        if service.inventory.host(mac) is None:
            raise service._deny_unknown(request, mac, "booted")
        how = await service._authorise(request, mac, "booted")
    else:
        mac, how = await by_address(service, request.remote)
        if mac is None:
            raise service._deny_unknown(request, None, "booted")
    service.emit_coalesced("http.booted", mac, request.remote, via=how)
    log.info("booted", mac=mac, ip=request.remote, via=how)
    return web.Response(text=f"bootyard: {mac} is up\n")


async def by_address(service, ip: str | None) -> tuple[str | None, str]:
    """The inventory host calling from ``ip`` (its reserved address, else its lease)."""
    if not ip:
        return None, ""
    host = service.inventory.host_by_ip(ip)
    if host is not None:
        return host.mac, "reserved"
    mac = await service.access.leases.holder(ip)
    if mac and service.inventory.host(mac) is not None:
        return mac, "lease"
    return None, ""
