"""The boot/file application: wires requests to the inventory, the policy, templates and files.

Routes (docs/http.md has the contract):

- ``/boot/ipxe?mac=M`` and ``/boot/M.ipxe``: the host's iPXE script; ``/boot/grub.cfg?mac=M``:
  GRUB config for UEFI HTTP boot; ``/boot/discover?mac=M&...``: an unknown machine's report.
- ``/install/M/{ks.cfg,preseed.cfg,user-data,meta-data,vendor-data}``: install files (only to the
  host itself); ``/install/ks.cfg`` picks the host from anaconda's ``X-RHN-Provisioning-MAC-*``
  headers; ``/install/M/done``: the installed host's callback (boot mode becomes ``local``);
  ``/booted/M`` and ``/booted``: a live, netroot or sanboot system is up (services/http/booted.py).
- ``/images/...``, ``/mirror/...``: files; ``/metrics``, ``/healthz``.

The base URL, the SAN server address, who may read a host's install files (:class:`Access`) and
the accounting of a request (:class:`~services.http.accounting.Accounting`: metrics and the
``event=request`` log line) are decided here once, for both ways a request arrives: through
aiohttp (:meth:`BootService.middleware` and the handlers) and, for a render-cache hit that needs
no I/O, through :meth:`BootService.fast_answer`, which the transport asks before aiohttp parses
the request (services/http/transport.py).
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from typing import Any

from aiohttp import hdrs, web

from services.http import booted, files, metrics as m, oneshot, policy
from services.http.access import Access
from services.http.accounting import Accounting, Record
from services.http.fileevents import FileEvents
from services.http.render import INSTALL_FILES, Renderer, RenderError, build_context, template_for
from shared import audit, bootplan, logs, metrics as shared_metrics
from shared.addresses import AddressError, normalise_mac
from shared.records import Host
from shared.schema import KINDS
from shared.store import InventoryStore, InventoryUnavailable, PreconditionFailed

log = logs.get_logger("http")
HOST_HEADER = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
_REPORT_FIELDS = ("arch", "platform", "manufacturer", "product", "serial", "uuid")
ANACONDA_MAC_HEADER = "X-RHN-Provisioning-MAC-"
TEXT_PLAIN = {"Content-Type": "text/plain; charset=utf-8"}
AUTH = web.RequestKey("auth", str)  # how an install file or callback was allowed (log line)


def family_of(path: str) -> str:
    if path.startswith("/boot/"):
        if path.startswith("/boot/grub"):
            return "grub"
        return "discovery" if path.startswith("/boot/discover") else "script"
    if path.startswith("/discovery/"):
        return "discovery"
    if path.startswith("/install/"):
        return "callback" if path.endswith("/done") else "install"
    if path.startswith("/booted"):
        return "callback"
    if path.startswith("/images/") or path == "/images":
        return "images"
    if path.startswith("/mirror/") or path == "/mirror":
        return "mirror"
    if path in ("/metrics", "/healthz"):
        return "metrics"
    return "api" if path.startswith("/api/") else "other"


class RenderCache:
    """Rendered text by key, dropped whole whenever the inventory or templates change."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
        self._stamp: tuple | None = None

    def get(self, stamp: tuple, key: tuple) -> Any:
        if stamp != self._stamp:
            self._items.clear()
            self._stamp = stamp
            return None
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple, value: Any) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        m.RENDER_CACHE_ENTRIES.set(len(self._items))


class BootService:
    """Request handlers for the boot/file listener."""

    def __init__(self, cfg, inventory, events, store: InventoryStore, renderer: Renderer,
                 access: Access, accounting: Accounting | None = None, *,
                 discovery_cfg=None) -> None:
        self.cfg = cfg  # the http settings section
        self.inventory = inventory
        self.events = events
        self.store = store
        self.renderer = renderer
        self.access = access
        self.accounting = accounting or Accounting()
        self.cache = RenderCache(cfg.render_cache_size)
        self._recent: dict[tuple, float] = {}
        self.file_events = FileEvents(cfg, inventory, events, access.leases)
        self._macs: dict[str | None, str] = {}  # spelling in the request -> canonical MAC
        # the discovery boot (docs/discovery.md): its facts for the boot plan when enabled
        self.discovery_cfg = discovery_cfg
        self.discovery = bootplan.Discovery(
            discovery_cfg.kernel, tuple(discovery_cfg.initrd), discovery_cfg.cmdline,
            discovery_cfg.after, discovery_cfg.poll_seconds) \
            if discovery_cfg is not None and discovery_cfg.enabled else None
        self._once: set[asyncio.Task] = set()  # one-shot boots being cleared (oneshot.py)

    # -- application ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        r = app.router
        r.add_get("/boot/ipxe", self.ipxe)
        r.add_get("/boot/grub.cfg", self.grub)
        r.add_get("/boot/discover", self.discover)
        r.add_get("/boot/discovery.ipxe", self.discovery_ipxe)  # before {mac}.ipxe
        r.add_get("/boot/{mac}.ipxe", self.ipxe)
        r.add_get("/install/ks.cfg", self.kickstart_by_header)
        r.add_route("*", "/install/{mac}/done", self.install_done)
        r.add_route("*", "/booted/{mac}", self.booted)
        r.add_route("*", "/booted", self.booted)
        r.add_get("/install/{mac}/{file}", self.install_file)
        r.add_get("/images", self.to_directory)
        r.add_get("/mirror", self.to_directory)
        r.add_get("/images/{path:.*}", self.images)
        r.add_get("/mirror/{path:.*}", self.mirror)
        if self.discovery_cfg is not None:
            from services.http.discovery import Reports
            Reports(self.discovery_cfg, self.inventory, self.events, self.store,
                    self.access.leases).add_routes(r)
        shared_metrics.add_routes(app, self.healthy)
        return app

    def healthy(self) -> bool:
        return bool(self.inventory.ready)

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        start = time.perf_counter()
        family = family_of(request.path)
        try:
            response = await handler(request)
            if family in ("images", "mirror") and not response.prepared:
                try:
                    await response.prepare(request)  # send it here: the duration covers it
                    await response.write_eof()
                except ConnectionError:  # the client went away mid-file: not our error
                    self._account(request, family, 499, 0, start)
                    return response
            if request.get(files.CLIENT_GONE):
                self._account(request, family, 499, 0, start)
                return response
        except web.HTTPException as exc:
            self._account(request, family, exc.status, len(exc.body or b""), start)
            raise
        except InventoryUnavailable as exc:
            m.INVENTORY_ERRORS.labels(family).inc()
            log.warning("inventory_unavailable", path=request.path, reason=str(exc))
            response = web.Response(status=503, text=f"bootyard: inventory unavailable: {exc}\n",
                                    headers={"Retry-After": "5"})
        except (ConnectionError, asyncio.CancelledError):
            self._account(request, family, 499, 0, start)
            raise
        except Exception:  # noqa: BLE001 - one request's bug is a 500, never a dead server
            log.exception("request_failed", path=request.path)
            response = web.Response(status=500, text="bootyard: internal error (see the log)\n")
        sent = 0
        if request.method != "HEAD" and response.status not in (204, 304):
            sent = response.content_length or response.body_length or 0
        self._account(request, family, response.status, sent, start)
        return response

    def _account(self, request: web.Request, family: str, status: int, sent: int,
                 start: float) -> None:
        elapsed = time.perf_counter() - start
        mac_text = request.match_info.get("mac") or request.query.get("mac")
        self.accounting.record(Record(family, status, sent, elapsed, request.method,
                                      request.path, request.remote,
                                      self._macs.get(mac_text) if mac_text else None,
                                      auth=request.get(AUTH)))
        if family == "images" and request.method == "GET":
            self.file_events.answered(request, status, sent, elapsed)

    def emit_coalesced(self, kind: str, mac: str | None, ip: str | None, **fields: Any) -> None:
        """Emit an event unless the same event (kind, host, address, fields) was emitted in the last
        second: an iPXE boot loop or a load test must not flood the capped timeline. Skipped
        repeats are counted in bootyard_http_events_coalesced_total."""
        now = time.monotonic()
        key = (kind, mac, ip, *fields.values())
        last = self._recent.get(key)
        if last is not None and now - last < 1.0:
            m.COALESCED_BY[kind].inc()
            return
        if len(self._recent) > 50_000:
            self._recent = {k: t for k, t in self._recent.items() if now - t < 1.0}
        self._recent[key] = now
        self.events.emit(kind, mac, ip=ip, **fields)

    # -- helpers -------------------------------------------------------------------------------
    def base_url(self, host_header: str | None, sockname) -> str:
        """The base URL of scripts and install files: ``http.public_url``, else the request's
        Host header, else the address the request arrived on."""
        if self.cfg.public_url:
            return self.cfg.public_url.rstrip("/")
        if host_header and HOST_HEADER.fullmatch(host_header):
            return f"http://{host_header}"
        return f"http://{sockname[0]}:{sockname[1]}" if sockname else "http://localhost"

    def san_server(self, sockname) -> str:
        """The AoE/iSCSI target address in scripts: ``http.san_server``, else the address the
        request arrived on."""
        if self.cfg.san_server:
            return self.cfg.san_server
        return sockname[0] if sockname else "127.0.0.1"

    @staticmethod
    def _sockname(request: web.Request):
        return request.transport.get_extra_info("sockname") if request.transport else None


    def mac(self, text: str | None) -> str:
        mac = self._macs.get(text)
        if mac is not None:
            return mac
        if not text:
            raise web.HTTPBadRequest(text="bootyard: give the MAC: ?mac=${net0/mac}\n")
        try:
            mac = normalise_mac(text)
        except AddressError as exc:
            raise web.HTTPBadRequest(text=f"bootyard: {exc}\n") from None
        if len(self._macs) > 10_000:
            self._macs.clear()
        self._macs[text] = mac
        return mac

    def _records(self, mac: str):
        return bootplan.records(self.inventory, mac, self.cfg.unknown_host)

    def stamp(self) -> tuple:
        return (self.inventory.version, self.renderer.generation())

    def _subnet(self, ip: str | None, host: Host | None):
        ip = host.ip if host and host.ip else ip
        try:
            return self.inventory.subnet_containing(ip) if ip else None
        except ValueError:
            return None

    def _context(self, remote: str | None, mac: str, host: Host | None, profile, base: str,
                 san: str) -> dict:
        subnet = self._subnet(remote, host)
        token = self.access.token(mac)
        return build_context(mac, host, profile, subnet, base, token, server_ip=san,
                             url_token=token if self.cfg.token_in_scripts else None)

    def _render_failed(self, request: web.Request, mac: str, exc: RenderError,
                       label: str) -> web.Response:
        self._render_error(request, mac, exc, label)
        # the reason and the template's name go to the log and the event, not to the client
        return web.Response(status=500, text=f"bootyard: cannot render this host's {label}; "
                                             "the HTTP service log says why\n")

    def _render_error(self, request: web.Request, mac: str, exc: RenderError,
                      label: str) -> None:
        m.RENDERS_BY[label, "error"].inc()
        log.warning("render_error", mac=mac, template=exc.template, reason=exc.reason)
        self.emit_coalesced("http.render_error", mac, request.remote, template=exc.template,
                            reason=exc.reason, path=request.path)

    # -- the fast path: a render-cache hit answered before aiohttp parses the request ---------
    def fast_answer(self, target: str, host_header: str | None, peer: str, sockname,
                    start: float) -> bytes | None:
        """The body for a ``GET target`` that is a render-cache hit needing no I/O (a script, or
        an install file its requester may read by token or reserved address), accounted and
        recorded as the normal path does; None: let aiohttp handle the request the normal way
        (it then decides and records everything itself)."""
        if "%" in target or "+" in target:
            return None  # percent-encoded: aiohttp decodes it
        path, _, query = target.partition("?")
        how = None  # an install file's authorisation: token, reserved or lease
        try:
            if path.startswith("/boot/"):
                if path == "/boot/ipxe" and query.startswith("mac=") and "&" not in query:
                    mac_text = query[4:]
                elif path.endswith(".ipxe") and path.count("/") == 2 and not query:
                    mac_text = path[6:-5]
                else:
                    return None
                mac = self.mac(mac_text)
                script = self.script_answer("ipxe", mac, self.base_url(host_header, sockname),
                                            self.san_server(sockname), peer, render=False)
                if script is None:
                    return None
                body, family = script.body, "script"
            elif path.startswith("/install/"):
                parts = path.split("/")
                if len(parts) != 4 or parts[3] not in INSTALL_FILES:
                    return None
                token = query[6:] if query.startswith("token=") and "&" not in query else None
                if query and token is None:
                    return None
                mac, filename = self.mac(parts[2]), parts[3]
                if self.inventory.host(mac) is None:
                    return None
                how = self.access.allowed_now(mac, peer, token)
                if how is None:
                    return None  # a lease, a refusal or an error: the normal path decides
                body = self.install_answer(filename, mac, self.base_url(host_header, sockname),
                                           self.san_server(sockname), peer, how, render=False)
                if body is None:
                    return None
                family = "install"
            else:
                return None
        except (InventoryUnavailable, web.HTTPException):
            return None
        self.accounting.record(Record(family, 200, len(body), time.perf_counter() - start,
                                      "GET", path, peer, mac, "fast", how))
        return body

    # -- boot scripts --------------------------------------------------------------------------
    async def ipxe(self, request: web.Request) -> web.Response:
        mac = self.mac(request.match_info.get("mac") or request.query.get("mac"))
        return self._script(request, mac, "ipxe")

    async def grub(self, request: web.Request) -> web.Response:
        return self._script(request, self.mac(request.query.get("mac")), "grub")

    def _script(self, request: web.Request, mac: str, kind: str) -> web.Response:
        sock = self._sockname(request)
        try:
            script = self.script_answer(
                kind, mac, self.base_url(request.headers.get(hdrs.HOST), sock),
                self.san_server(sock), request.remote, request.query.get("arch"))
        except RenderError as exc:
            # a script that says so and stops (a 500 would only show iPXE's error number); the
            # template's error goes to the log and the http.render_error event
            self._render_error(request, mac, exc, "cmdline")
            script = policy.cannot_render(kind, mac, self.inventory.host(mac))
        return web.Response(body=script.body, headers=TEXT_PLAIN)

    def script_answer(self, kind: str, mac: str, base: str, san: str, ip: str | None,
                      arch: str | None = None, *, render: bool = True) -> policy.Script | None:
        """The host's script from the render cache, or rendered (``render``; else None on a
        miss), with its event. Raises RenderError for a profile cmdline that does not render."""
        script = self.cache.get(self.stamp(), (kind, mac, base, san))
        if script is not None:
            self.accounting.tally(m.RENDERS_BY[kind, "cached"])
            host = self._records(mac)[0]
        elif not render:
            return None
        else:
            host, profile, export = self._records(mac)
            script = self._render_script(kind, mac, base, san, ip, host, profile, export)
        self.script_event(mac, host, script, kind, ip, arch)
        if script.outcome == "error":
            log.warning("boot_config_error", mac=mac, reason=script.reason)
        elif host is not None and host.once_profile:
            oneshot.served(self, mac, host.once_profile, ip)
        return script

    def _render_script(self, kind: str, mac: str, base: str, san: str, ip: str | None,
                       host, profile, export) -> policy.Script:
        """Render (the boot plan, then iPXE or GRUB) and cache the host's script. Raises
        RenderError for a profile cmdline that does not render."""
        token = self.access.token(mac) if self.cfg.token_in_scripts else None
        ctx = policy.BootContext(base_url=base, san_server=san,
                                 initiator_prefix=self.cfg.initiator_prefix,
                                 unknown_host=self.cfg.unknown_host,
                                 unknown_delay=self.cfg.unknown_delay, token=token,
                                 subnet=self._subnet(ip, host), discovery=self.discovery,
                                 menu=self._menu() if host is None else ())
        make = policy.ipxe_script if kind == "ipxe" else policy.grub_config
        script = make(mac, host, profile, export, ctx)
        self.cache.put((kind, mac, base, san), script)
        m.RENDERS_BY[kind, "ok"].inc()
        return script

    def _menu(self) -> tuple:
        """The unknown-host menu's entries (http.unknown_host menu), from the boot plan."""
        if self.cfg.unknown_host != "menu":
            return ()
        return bootplan.menu_entries(self.inventory.all("profile"), self.discovery,
                                     self.inventory.export)

    def script_event(self, mac: str, host: Host | None, script: policy.Script, kind: str,
                      ip: str | None, arch: str | None = None) -> None:
        if host is None:
            self.emit_coalesced("http.discovery", mac, ip, stage=kind, arch=_clean(arch))
        else:
            self.emit_coalesced("http.script", mac, ip, script=kind, outcome=script.outcome,
                                profile=host.profile, reason=script.reason or None)

    async def discovery_ipxe(self, request: web.Request) -> web.Response:
        """The discovery boot for any MAC (a menu entry, or a known host to inventory again)."""
        mac = self.mac(request.query.get("mac"))
        sock = self._sockname(request)
        ctx = policy.BootContext(base_url=self.base_url(request.headers.get(hdrs.HOST), sock),
                                 discovery=self.discovery)
        script = policy.discovery_ipxe(mac, ctx)
        self.emit_coalesced("http.discovery", mac, request.remote, stage="discovery-boot",
                            outcome=script.outcome)
        if script.outcome == "error":
            log.warning("discovery_boot_error", mac=mac, reason=script.reason)
        return web.Response(body=script.body, headers=TEXT_PLAIN)

    async def discover(self, request: web.Request) -> web.Response:
        mac = self.mac(request.query.get("mac"))
        details = {k: _clean(request.query.get(k)) for k in _REPORT_FIELDS}
        self.events.emit("http.discovery", mac, ip=request.remote, stage="report", **details)
        log.info("discovery", mac=mac, ip=request.remote,
                 **{k: v for k, v in details.items() if v})
        return web.Response(text="recorded\n")

    # -- install files -------------------------------------------------------------------------
    async def _authorise(self, request: web.Request, mac: str, what: str) -> str:
        how = await self.access.allowed(mac, request.remote, request.query.get("token"))
        if how is None:
            reason = "bad_token" if request.query.get("token") else "address"
            m.DENIED.labels(reason).inc()
            log.warning("denied", mac=mac, ip=request.remote, path=request.path, reason=reason)
            self.emit_coalesced("http.denied", mac, request.remote, path=request.path,
                             reason=reason, file=what)
            raise web.HTTPForbidden(text=f"bootyard: {what} of {mac} is served only to that "
                                         "host's reserved or leased address, or with its "
                                         "token\n")
        return how

    def _deny_unknown(self, request: web.Request, mac: str | None, what: str):
        m.DENIED.labels("unknown_host").inc()
        self.emit_coalesced("http.denied", mac, request.remote, path=request.path,
                         reason="unknown_host", file=what)
        return web.HTTPForbidden(text="bootyard: no such host in the inventory\n")

    async def install_file(self, request: web.Request) -> web.Response:
        filename = request.match_info["file"]
        if filename not in INSTALL_FILES:
            raise web.HTTPNotFound(text=f"bootyard: no install file {filename!r} (known: "
                                        f"{', '.join(INSTALL_FILES)})\n")
        mac = self.mac(request.match_info["mac"])
        host = self.inventory.host(mac)
        if host is None:
            raise self._deny_unknown(request, mac, filename)
        how = await self._authorise(request, mac, filename)
        return self._install_response(request, mac, filename, how)

    async def kickstart_by_header(self, request: web.Request) -> web.Response:
        """``inst.ks=http://S/install/ks.cfg inst.ks.sendmac``: anaconda names its NICs in
        ``X-RHN-Provisioning-MAC-<n>: eth0 52:54:00:...`` headers. The first known host among
        them whose address (or token) checks out gets its kickstart."""
        macs = []
        for name, value in request.headers.items():
            if name.upper().startswith(ANACONDA_MAC_HEADER.upper()):
                try:
                    macs.append(normalise_mac(value.split()[-1]))
                except (AddressError, IndexError):
                    continue
        known = [mac for mac in macs if self.inventory.host(mac) is not None]
        if not known:
            raise self._deny_unknown(request, macs[0] if macs else None, "ks.cfg")
        for mac in known[:-1]:
            how = await self.access.allowed(mac, request.remote, request.query.get("token"))
            if how:
                return self._install_response(request, mac, "ks.cfg", how)
        how = await self._authorise(request, known[-1], "ks.cfg")
        return self._install_response(request, known[-1], "ks.cfg", how)

    def _install_response(self, request: web.Request, mac: str, filename: str,
                          how: str) -> web.Response:
        request[AUTH] = how  # the request's log line says how it was allowed
        try:
            sock = self._sockname(request)
            text = self.install_answer(
                filename, mac, self.base_url(request.headers.get(hdrs.HOST), sock),
                self.san_server(sock), request.remote, how)
        except RenderError as exc:
            return self._render_failed(request, mac, exc, INSTALL_FILES[filename][2])
        return web.Response(body=text, headers=TEXT_PLAIN)

    def install_answer(self, filename: str, mac: str, base: str, san: str, ip: str | None,
                       how: str, *, render: bool = True) -> bytes | None:
        """An install file the requester may read (``how``: token, reserved, lease), from the
        render cache or rendered (``render``; else None on a miss), with its event. Raises
        HTTPNotFound when the host's profile does not provide it, RenderError when its template
        does not render."""
        host, profile, _export = self._records(mac)
        label = INSTALL_FILES[filename][2]
        if profile is None:
            raise web.HTTPNotFound(text=f"bootyard: host {mac} has no profile\n")
        template = template_for(profile, filename)
        if template is None:
            raise web.HTTPNotFound(text=f"bootyard: profile {profile.name} (install="
                                        f"{profile.install}) does not provide {filename}\n")
        key = ("install", filename, mac, base)
        text = self.cache.get(self.stamp(), key)
        if text is not None:
            self.accounting.tally(m.RENDERS_BY[label, "cached"])
        elif not render:
            return None
        else:
            text = self.renderer.render_file(
                template, self._context(ip, mac, host, profile, base, san)).encode()
            m.RENDERS_BY[label, "ok"].inc()
            self.cache.put(key, text)
        self.emit_coalesced("http.install", mac, ip, file=filename, template=template, via=how)
        return text

    async def install_done(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST", "PUT"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "PUT"])
        mac = self.mac(request.match_info["mac"])
        if self.inventory.host(mac) is None:
            raise self._deny_unknown(request, mac, "done")
        how = await self._authorise(request, mac, "done")
        request[AUTH] = how
        kind = KINDS["host"]

        def not_yet(current: dict[str, str]) -> str | None:
            return "already local" if current.get("boot_mode") == "local" else None

        try:
            await self.store.write(kind, mac, {"boot_mode": "local"}, mode="set",
                                   precondition=not_yet, record=lambda pipe, before, after:
                                   audit.queue(pipe, "http:install-done", kind.key(mac), before,
                                               after))
        except PreconditionFailed:
            log.info("install_done_again", mac=mac, ip=request.remote)
            return web.Response(text="bootyard: already done; this host boots from its disk\n")
        self.events.emit("http.install_done", mac, ip=request.remote, via=how,
                         boot_mode="local")
        log.info("install_done", mac=mac, ip=request.remote, via=how)
        return web.Response(text="bootyard: recorded; this host now boots from its disk\n")

    async def booted(self, request: web.Request) -> web.Response:
        return await booted.booted(self, request)

    # -- files ---------------------------------------------------------------------------------
    async def to_directory(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(location=request.path + "/")

    async def images(self, request: web.Request) -> web.StreamResponse:
        return await files.serve(request, self.cfg.images_root, request.match_info["path"])

    async def mirror(self, request: web.Request) -> web.StreamResponse:
        return await files.serve(request, self.cfg.mirror_root, request.match_info["path"])


def _clean(value: str | None) -> str | None:
    """A client-reported detail for an event: printable, at most 128 characters."""
    if not value:
        return None
    return "".join(c for c in value if c.isprintable())[:128] or None
