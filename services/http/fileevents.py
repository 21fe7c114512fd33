"""What the boot listener tells about files under /images/: an ``http.file`` event per GET
(200, 206, 404: a host's boot state needs its kernel and initrd fetches, docs/http.md) and one
``image_not_found`` warning per missing image within the log budget any client can cause.

An event names the MAC the address belongs to: a reserved address's host from the inventory, else
the holder of the address's current lease, read from Redis once and then remembered for
``HOLDER_SECONDS`` (never past the lease's end): a booting machine fetches its kernel and then its
initrd seconds apart, and a boot storm would otherwise read a thousand leases twice. Where the
process follows the event stream (the board, services/http/board.py), a ``dhcp.ack`` it reads
names the holder too, for ``HOLDER_SECONDS`` from the ack (iPXE's ack comes just before its
script, kernel and initrd), and a release, decline or expiry of the address forgets it: then a
storm's machines need no lease read at all. Only these events use the remembered holder; who may
read a host's install files is always asked afresh (services/http/access.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from shared import logs
from shared.logbudget import LogBudget
from shared.store import InventoryUnavailable

log = logs.get_logger("http")
HOLDER_SECONDS = 10.0  # how long a lease's holder is remembered for file events
HOLDERS_MAX = 20_000  # remembered addresses; past it the memory starts over


class FileEvents:
    def __init__(self, cfg, inventory, events, leases) -> None:
        self.cfg = cfg  # the http settings section (file_events, images_root)
        self.inventory = inventory
        self.events = events
        self.leases = leases
        self._lookups: set[asyncio.Task] = set()  # http.file events waiting for a lease read
        self._holders: dict[str, tuple[str, float]] = {}  # ip -> (MAC, remembered until)
        self._waiting: dict[str, list[dict[str, Any]]] = {}  # ip -> events for its lease read
        self._missing = LogBudget(burst=10, interval=60.0)  # image_not_found lines
        self._missing_timer: asyncio.TimerHandle | None = None

    def seen(self, event) -> None:
        """An event read from the global stream (:class:`shared.events.Event`)."""
        ip = event.fields.get("ip")
        if not ip:
            return
        if event.kind == "dhcp.ack" and event.mac:
            until = event.ts + HOLDER_SECONDS
            if until > time.time():
                if len(self._holders) >= HOLDERS_MAX:
                    self._holders.clear()
                self._holders[ip] = (event.mac, until)
        elif event.kind in ("dhcp.release", "dhcp.decline", "dhcp.expire", "dhcp.nak"):
            self._holders.pop(ip, None)

    def answered(self, request: web.Request, status: int, sent: int, elapsed: float) -> None:
        """A GET under /images/ was answered."""
        if status == 404:
            self._image_missing(request)
        if self.cfg.file_events and status in (200, 206, 404):
            self._file_event(request, status, sent, elapsed)

    def _image_missing(self, request: web.Request) -> None:
        """One warning line per missing image, within the log budget any client can cause
        (shared/logbudget.py); what is held back is summed up once a minute."""
        now = time.monotonic()
        if self._missing.allow(request.remote or "", "not_found", now):
            log.warning("image_not_found", path=request.path, ip=request.remote,
                        root=self.cfg.images_root)
        if self._missing.summary_due is not None and self._missing_timer is None:
            self._missing_timer = asyncio.get_running_loop().call_later(
                max(0.0, self._missing.summary_due - now), self._missing_summary)

    def _missing_summary(self) -> None:
        self._missing_timer = None
        fields = self._missing.summary(time.monotonic())
        if fields:
            log.warning("image_not_found_summary", **fields)

    def _file_event(self, request: web.Request, status: int, sent: int, elapsed: float) -> None:
        ip = request.remote or ""
        try:
            host = self.inventory.host_by_ip(ip)
        except InventoryUnavailable:
            host = None
        fields = dict(ip=request.remote, path=request.path, status=status, bytes=sent,
                      duration_ms=f"{elapsed * 1000:.1f}", range="yes" if status == 206 else None,
                      result="not_found" if status == 404 else None)
        if host is not None or not ip:
            self.events.emit("http.file", host.mac if host else None, **fields)
            return
        held = self._holders.get(ip)
        if held is not None:
            if time.time() < held[1]:
                self.events.emit("http.file", held[0], **fields)
                return
            del self._holders[ip]
        waiting = self._waiting.get(ip)
        if waiting is not None:  # the address's lease is being read: its answer names this too
            waiting.append(fields)
            return
        # not a reserved address: its lease says whose it is (the host's boot state needs the
        # MAC on its kernel and initrd fetches); one Redis read, after the response
        self._waiting[ip] = [fields]
        task = asyncio.get_running_loop().create_task(self._file_events_by_lease(ip))
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def _file_events_by_lease(self, ip: str) -> None:
        try:
            lease = await self.leases.lease(ip)
        except InventoryUnavailable:
            lease = None
        finally:
            waiting = self._waiting.pop(ip, [])
        now = time.time()
        mac = None
        if lease is not None and lease.current(now) and lease.mac:
            mac = lease.mac
            if len(self._holders) >= HOLDERS_MAX:
                self._holders.clear()
            self._holders[ip] = (mac, min(now + HOLDER_SECONDS, lease.expires))
        for fields in waiting:
            self.events.emit("http.file", mac, **fields)
