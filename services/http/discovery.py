"""``POST /discovery/report?mac=M``: the discovery image's hardware report (docs/discovery.md).

An unknown machine has no token, so what it may do is bounded instead (the trust model in
docs/discovery.md):

- only with ``discovery.enabled`` (else 404);
- at most ``discovery.reports_per_minute`` reports per MAC and per sending address, in this
  process (429);
- a body of at most ``discovery.max_report_bytes`` (413);
- only from the address that holds a current DHCP lease for that MAC (``leases.holder``), or a
  known host's reserved address (403): a machine can report only for the MAC it booted with;
- only a report of the shape :mod:`shared.hardware` checks (422);
- a new MAC only while fewer than ``discovery.max_records`` machines are discovered (507).

A report of a MAC the inventory does not know becomes (or refreshes) its ``discovered`` record;
of a known host, it replaces that host's ``hw``. Both writes are recorded in the audit trail
(``who`` = ``http:discovery``). A ``discovery_rule`` that matches a new report adopts the machine
at once (``who`` = ``http:rule:<name>``). Every report is a ``discovery.report`` event (and a
refused one ``discovery.refused``; an adoption ``discovery.adopted``); the answer's last line
``action=poweroff|wait|reboot`` tells the image what to do next (reboot: adopted, so that it
boots its profile now). ``GET /discovery/next?mac=M`` answers a waiting machine's question
(``action=wait`` until it is a host, then ``action=reboot``).
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from services.http import metrics as m
from shared import audit, discovery, hardware, logs
from shared.addresses import AddressError, normalise_mac
from shared.schema import KINDS
from shared.store import InventoryError, InventoryStore
from shared.validation import parse_record

log = logs.get_logger("http.discovery")
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
WHO = "http:discovery"


class RateLimit:
    """At most ``per_minute`` hits per key in any fixed minute; bounded memory."""

    def __init__(self, per_minute: int, max_keys: int = 50_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._hits: dict[tuple, tuple[int, int]] = {}

    def allow(self, key: tuple, now: float) -> bool:
        minute = int(now // 60)
        start, count = self._hits.get(key, (minute, 0))
        if start != minute:
            count = 0
        if count >= self.per_minute:
            return False
        if len(self._hits) >= self.max_keys and key not in self._hits:
            self._hits = {k: v for k, v in self._hits.items() if v[0] == minute}
            if len(self._hits) >= self.max_keys:
                return False
        self._hits[key] = (minute, count + 1)
        return True


class Reports:
    """The report handler (added to the boot listener by services/http/server.py)."""

    def __init__(self, cfg, inventory, events, store: InventoryStore, leases) -> None:
        self.cfg = cfg  # the discovery settings section
        self.inventory = inventory
        self.events = events
        self.store = store
        self.leases = leases
        self.limit = RateLimit(cfg.reports_per_minute)
        # a waiting machine asks every poll_seconds: allow twice that (and never fewer
        # questions than reports)
        self.questions = RateLimit(max(cfg.reports_per_minute, 120 // cfg.poll_seconds + 1))

    def add_routes(self, router) -> None:
        router.add_post("/discovery/report", self.report)
        router.add_get("/discovery/next", self.next_action)

    async def next_action(self, request: web.Request) -> web.Response:
        """What a machine waiting after its report (``discovery.after: wait``) does next:
        ``action=reboot`` once it is a host (adopted: it boots its profile), else
        ``action=wait``. The same bounds as a report: the MAC's lease, the rate limit."""
        try:
            mac = normalise_mac(request.query.get("mac", ""))
        except AddressError as exc:
            return web.Response(status=400, text=f"bootyard: give ?mac=: {exc}\n", headers=TEXT)
        if not self.cfg.enabled:
            return web.Response(status=404, text="bootyard: discovery is off "
                                "(discovery.enabled)\n", headers=TEXT)
        ip = request.remote or ""
        if not self.questions.allow(("next", mac), time.time()):
            return web.Response(status=429, text="bootyard: too many questions from this "
                                "MAC\n", headers=TEXT)
        host = self.inventory.host(mac)
        if not (host is not None and host.ip and host.ip == ip) and \
                await self.leases.holder(ip) != mac:
            return web.Response(status=403, text=f"bootyard: {ip} holds no lease for {mac}\n",
                                headers=TEXT)
        if host is None:
            return web.Response(text=f"bootyard: {mac} is not adopted yet\naction=wait\n",
                                headers=TEXT)
        return web.Response(text=f"bootyard: {mac} is host {host.hostname or mac} (profile "
                                 f"{host.profile or '-'})\naction=reboot\n", headers=TEXT)

    def _refuse(self, request: web.Request, mac: str | None, status: int, result: str,
                message: str) -> web.Response:
        m.DISCOVERY_BY[result].inc()
        log.warning("discovery_refused", mac=mac, ip=request.remote, reason=result,
                    detail=message)
        self.events.emit("discovery.refused", mac, ip=request.remote, reason=result,
                         detail=message[:200])
        return web.Response(status=status, text=f"bootyard: report refused: {message}\n",
                            headers=TEXT)

    async def report(self, request: web.Request) -> web.Response:
        try:
            mac = normalise_mac(request.query.get("mac", ""))
        except AddressError as exc:
            return web.Response(status=400, text=f"bootyard: give ?mac=: {exc}\n", headers=TEXT)
        ip = request.remote or ""
        if not self.cfg.enabled:
            return self._refuse(request, mac, 404, "disabled", "discovery is off "
                                "(discovery.enabled)")
        now = time.time()
        if not (self.limit.allow(("mac", mac), now) and self.limit.allow(("ip", ip), now)):
            return self._refuse(request, mac, 429, "rate_limited", "more than "
                                f"{self.cfg.reports_per_minute} reports a minute from this "
                                "MAC or address")
        limit = self.cfg.max_report_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(request, mac, 413, "too_large", f"over {limit} bytes")
        body = bytearray()  # read(n) may return less than n before the end: read to the end
        while len(body) <= limit:
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                break
            body += chunk
        if len(body) > limit:
            return self._refuse(request, mac, 413, "too_large", f"over {limit} bytes")
        host = self.inventory.host(mac)
        if not (host is not None and host.ip and host.ip == ip) and \
                await self.leases.holder(ip) != mac:
            return self._refuse(request, mac, 403, "no_lease", f"{ip} holds no lease for "
                                f"{mac}: a machine reports only from the address DHCP gave it")
        try:
            hw = hardware.check(json.loads(bytes(body)))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._refuse(request, mac, 422, "invalid", str(exc)[:300])
        text = hardware.dumps(hw)
        if host is not None:
            result, answer = await self._host_report(mac, text), self.cfg.after
        else:
            result, answer = await self._discovered(request, mac, ip, text, hw, int(now))
            if result is None:
                return answer
        m.DISCOVERY_BY[result].inc()
        summary = hardware.summary(hw)
        self.events.emit("discovery.report", mac, ip=ip, result=result,
                         **{k: v for k, v in summary.items() if v})
        log.info("discovery_report", mac=mac, ip=ip, result=result,
                 **{k: v for k, v in summary.items() if v})
        return web.Response(text=f"bootyard: {result} {mac}\naction={answer}\n", headers=TEXT)

    async def _host_report(self, mac: str, text: str) -> str:
        kind = KINDS["host"]
        await self.store.write(kind, mac, {"hw": text}, mode="set",
                               record=lambda pipe, before, after:
                               audit.queue(pipe, WHO, kind.key(mac), before, after))
        return "host_updated"

    async def _discovered(self, request: web.Request, mac: str, ip: str, text: str, hw,
                          now: int):
        kind = KINDS["discovered"]
        known = self.inventory.all("discovered")
        if len(known) >= self.cfg.max_records and all(d.mac != mac for d in known):
            return None, self._refuse(request, mac, 507, "full", f"{len(known)} machines are "
                                      "discovered already (discovery.max_records): adopt or "
                                      "remove some ('bootyard discovered rm')")
        key = kind.key(mac)
        written: dict = {}

        async def compute():
            current = await self.store.raw(kind, mac)
            record = parse_record(kind, mac, current)[0] if current else None
            after = {"ip": ip, "last_seen": str(now), "hw": text,
                     "first_seen": str(record.first_seen if record and record.first_seen
                                       else now),
                     "reports": str((record.reports if record else 0) + 1)}
            if record and record.description:
                after["description"] = record.description
            written.update(before=current, after=after)
            return {key: after}

        await self.store.atomically([key], compute, lambda pipe: audit.queue(
            pipe, WHO, key, written["before"], written["after"]))
        adopted = await self._by_rule(mac, hw)
        return ("adopted", "reboot") if adopted else ("recorded", self.cfg.after)

    async def _by_rule(self, mac: str, hw) -> bool:
        """Adopt ``mac`` if a discovery rule matches its report (one rule: the lowest
        priority; a tie adopts nothing and says so)."""
        rule, tie = discovery.choose_rule(self.inventory.all("discovery_rule"), mac, hw)
        if tie:
            log.warning("discovery_rule_tie", mac=mac, reason=tie)
            self.events.emit("discovery.rule_tie", mac, reason=tie)
        if rule is None:
            return False
        who = f"http:rule:{rule.name}"
        try:
            written = await discovery.adopt(
                self.store, mac, rule.profile, who=who, boot_mode=rule.boot_mode,
                tags=rule.tags, hostname_pattern=rule.hostname)
        except InventoryError as exc:
            log.warning("discovery_rule_failed", mac=mac, rule=rule.name, reason=str(exc))
            self.events.emit("discovery.rule_failed", mac, rule=rule.name,
                             reason=str(exc)[:300])
            return False
        host = written.after.get(KINDS["host"].key(mac)) or {}
        log.info("discovery_adopted", mac=mac, rule=rule.name, profile=rule.profile,
                 hostname=host.get("hostname"))
        self.events.emit("discovery.adopted", mac, by=who, rule=rule.name,
                         profile=rule.profile, hostname=host.get("hostname"))
        return True
