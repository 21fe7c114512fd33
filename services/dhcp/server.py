"""The DHCP service: decode -> inventory -> lease steps (one Redis round trip per batch) ->
policy -> encode -> send. A bad packet is a counter and a log line, never the end of the server.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from typing import Any

from services.dhcp import bsdp, codec, metrics as m, policy
from services.dhcp.codec import ZERO_IP, DecodeError, Opt
from services.dhcp.policy import Ignore, Lease, Refusal, Reply, ServerContext
from services.dhcp.replies import ReplyEncoder, Template, encode_reply, too_big
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import Datagram, Interface, Sockets
from shared import bootplan, logs, metrics as shared_metrics
from shared.leases import LeaseStore, Outcome, Step
from shared.records import Host, Profile, Subnet
from shared.schema import KINDS
from shared.store import InventoryUnavailable
from shared.validation import range_containing

log = logs.get_logger("dhcp")
EVENTS_BY_SCRIPT = shared_metrics.EVENTS_EMITTED.labels("dhcp")
OFFER_MEMORY = 65536
_MISSING = object()  # offers remembered to release them when the client picks another server
# Ignore reasons worth a timeline event (the others are "not for us").
# The ACK line's fields (logs.info_pairs): the MAC and address per row, the others (mostly the
# same from one ACK to the next) as one tuple whose text the formatter keeps
ACK_LEAD = ("mac", "ip")
ACK_TAIL = ("subnet", "boot_file", "boot", "relay", "reserved")
EVENT_REASONS = {"host_disabled", "no_subnet", "pool_exhausted", "lease_conflict", "redis_down",
                 "unknown_client", "reply_too_big"}


@dataclasses.dataclass(slots=True)
class Work:
    dgram: Datagram
    msg: codec.Message
    mtype: int
    mac: str
    ctx: ServerContext
    host: Host | None = None
    profile: Profile | None = None
    subnet: Subnet | None = None
    pre: Ignore | None = None
    step: Step | None = None
    reserved: str | None = None
    requested: str | None = None
    recorded: bool = False  # the lease script wrote this packet's event
    client: str = ""  # the client identity its leases belong to (shared.leases)
    boot: Any = policy.NOT_CHOSEN  # choose_boot's answer (BootChoice or None), once computed
    template: Template | None = None  # the OFFER/ACK this request gets if its lease step grants

    # (__init__ written out: compiled, it runs natively; codec.Message says why) ``Work`` is
    # made with its first five fields; the others start at their defaults
    def __init__(self, dgram: Datagram, msg: codec.Message, mtype: int, mac: str,
                 ctx: ServerContext, host: Host | None = None, profile: Profile | None = None,
                 subnet: Subnet | None = None, pre: Ignore | None = None,
                 step: Step | None = None, reserved: str | None = None,
                 requested: str | None = None, recorded: bool = False, client: str = "",
                 boot: Any = policy.NOT_CHOSEN, template: Template | None = None) -> None:
        self.dgram = dgram
        self.msg = msg
        self.mtype = mtype
        self.mac = mac
        self.ctx = ctx
        self.host = host
        self.profile = profile
        self.subnet = subnet
        self.pre = pre
        self.step = step
        self.reserved = reserved
        self.requested = requested
        self.recorded = recorded
        self.client = client
        self.boot = boot
        self.template = template


def context_for(section: DhcpSection, iface: Interface) -> ServerContext:
    server_ip = section.server_address or iface.address
    return ServerContext(
        server_ip=server_ip,
        http_base_url=(section.http_base_url or f"http://{server_ip}:8080").rstrip("/"),
        ipxe_bios=section.ipxe_bios, ipxe_efi=section.ipxe_efi, ipxe_efi32=section.ipxe_efi32,
        ipxe_arm64=section.ipxe_arm64, http_boot_x64=section.http_boot_x64,
        http_boot_arm64=section.http_boot_arm64, server_port=section.server_port,
        client_port=section.client_port)


class DhcpServer:
    def __init__(self, section: DhcpSection, inventory, store: LeaseStore, events,
                 transport: Sockets) -> None:
        self.section = section
        self.inventory = inventory
        self.store = store
        self.events = events
        self.transport = transport
        self.contexts = {i.name: context_for(section, i) for i in transport.interfaces}
        self._offers: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._redis_down = False
        self._local_subnets: dict = {}
        self._relay_subnets: dict = {}
        self._pools_dirty = True
        self._emit_discover = section.events == "all"
        self._emit = section.events != "none"
        self._proxy = section.proxy  # (read per packet: a native attribute, not the section's)
        self._in: dict[str, int] = dict.fromkeys(m.IN, 0)
        self._out: dict[str, int] = dict.fromkeys(m.OUT, 0)
        self._acks: list[tuple[str, str, tuple]] = []
        self._queued = -1  # the queue gauge's value, as the run loops last set it
        self._latencies: list[float] = []
        self.replies = ReplyEncoder()
        # this server's own addresses: never handed out from a pool (sync_pools)
        self.own_addresses = sorted({c.server_ip for c in self.contexts.values()}
                                    | {i.address for i in transport.interfaces})
        self._own_in_range: set[tuple[str, str, str]] = set()  # (subnet, range, address) seen
        inventory.on_change(self._inventory_changed)

    def _inventory_changed(self, kind: str, _ident: str) -> None:
        if kind in ("subnet", "host"):
            self._pools_dirty = True

    # -- main loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        queue = self.transport.queue
        ready = self.transport.ready
        batch_size = self.section.batch_size
        # stop wakes an idle loop through `ready` (one task for the loop's life, not two
        # futures and an asyncio.wait per idle wait: a per-batch cost at every rate)
        waker = asyncio.ensure_future(_set_when(stop, ready))
        try:
            while not stop.is_set():
                if not queue:
                    ready.clear()
                    await ready.wait()
                    continue
                if len(queue) <= batch_size:  # all of it: one copy, not a popleft a packet
                    batch = list(queue)
                    queue.clear()
                else:
                    batch = [queue.popleft() for _ in range(batch_size)]
                if len(queue) != self._queued:  # (set when it changes: mostly 0 after a batch)
                    self._queued = len(queue)
                    m.QUEUE.set(self._queued)
                try:
                    await self.handle(batch)
                except Exception as exc:  # noqa: BLE001 - one bad batch must not end the service
                    log.exception("batch_failed", packets=len(batch), error=repr(exc))
        finally:
            waker.cancel()

    async def handle(self, batch: list[Datagram]) -> None:
        now = int(time.time())
        self._in = counts = dict.fromkeys(m.IN, 0)  # counted per batch, added once
        works = []
        for dgram in batch:
            try:
                work = self._prepare(dgram, now)
            except Exception as exc:  # noqa: BLE001 - one bad packet must not end the batch
                log.exception("packet_failed", interface=dgram.interface.name,
                              source=dgram.source[0], error=repr(exc))
                continue
            if work is not None:
                works.append(work)
        for kind, n in counts.items():
            if n:
                shared_metrics.add(m.IN[kind], n)
        steps = [w.step for w in works if w.step is not None]
        outcomes: list[Outcome] | None = []
        if steps:
            try:
                outcomes = await self.store.run(steps)
                if self._redis_down:
                    self._redis_down = False
                    self._pools_dirty = True
                    log.info("lease_store_reachable_again",
                             journal_replayed=self.store.replayed)
            except InventoryUnavailable as exc:
                outcomes = None
                if not self._redis_down:
                    self._redis_down = True
                    log.error("lease_store_unreachable", reason=str(exc),
                              action="answering reserved hosts from the cache, no dynamic "
                                     "addresses until Redis is back")
        if outcomes and self._emit:
            recorded = sum(1 for s in steps if s.event is not None)
            shared_metrics.add(EVENTS_BY_SCRIPT, recorded)
        results = iter(outcomes or ())
        # The finishing loop has no await: these per-batch tallies cannot interleave with
        # another worker's batch.
        acks: list[tuple[str, str, tuple]] = []  # one log line per ACK, written together
        latencies: list[float] = []
        self._acks = acks
        self._out = sent = dict.fromkeys(m.OUT, 0)
        self._latencies = latencies
        try:
            for w in works:
                outcome = (next(results) if (w.step is not None and outcomes is not None)
                           else None)
                w.recorded = (outcome is not None and w.step is not None
                              and w.step.event is not None)
                try:
                    self._finish(w, outcome, outcomes is None, now)
                except Exception as exc:  # noqa: BLE001 - one bad packet must not end the batch
                    log.exception("packet_failed", mac=w.mac, error=repr(exc))
        finally:
            if acks:
                log.info_pairs("ack", ACK_LEAD, ACK_TAIL, acks)
            for kind, n in sent.items():
                if n:
                    shared_metrics.add(m.OUT[kind], n)
            shared_metrics.observe_all(m.LATENCY, latencies)

    def _local_subnet(self, iface: Interface):
        """The subnet of the interface's own address (cached until the inventory changes)."""
        key = (iface.name, self.inventory.version)
        cached = self._local_subnets.get(key, _MISSING)
        if cached is _MISSING:
            if len(self._local_subnets) > 64:
                self._local_subnets.clear()
            cached = self._local_subnets[key] = self.inventory.subnet_containing(iface.address)
        return cached

    def _relay_subnet(self, giaddr: str):
        """The subnet a relay serves (cached until the inventory changes)."""
        key = (giaddr, self.inventory.version)
        cached = self._relay_subnets.get(key, _MISSING)
        if cached is _MISSING:
            if len(self._relay_subnets) > 1024:
                self._relay_subnets.clear()
            cached = self._relay_subnets[key] = self.inventory.subnet_for_relay(giaddr)
        return cached

    def _netboot_images(self) -> list[bsdp.Image]:
        return [bsdp.Image(index=n.index, name=n.title or n.name, boot_file=n.boot_file,
                           root_path=n.root_path, kind=n.image_kind, install=n.install,
                           default=n.default)
                for n in self.inventory.all("netboot") if n.enabled]

    # -- per packet ----------------------------------------------------------------------------
    def _prepare(self, dgram: Datagram, now: int) -> Work | None:
        try:
            msg = codec.decode(dgram.data)
        except DecodeError as exc:
            m.IGNORED_BY["malformed"].inc()
            log.debug("malformed_packet", interface=dgram.interface.name,
                      source=dgram.source[0], reason=str(exc))
            return None
        mtype = msg.message_type or 0
        self._in[m.TYPE_NAMES.get(mtype, "other") if mtype in (1, 3, 4, 7, 8) else "other"] += 1
        try:
            mac = codec.chaddr_mac(msg.chaddr)
        except DecodeError:
            m.IGNORED_BY["malformed"].inc()
            return None
        w = Work(dgram, msg, mtype, mac, self.contexts[dgram.interface.name])
        w.client = client = codec.client_identity(msg.htype, msg.hlen, msg.chaddr,
                                                  msg.options.get(codec.OPT_CLIENT_ID), mac)
        try:
            inv = self.inventory
            if msg.giaddr != ZERO_IP:
                w.subnet = self._relay_subnet(msg.giaddr)
            else:
                w.subnet = self._local_subnet(dgram.interface)
            # the effective host (its groups, its one-shot boot): the boot plan's lookup
            w.host, w.profile, _export = bootplan.records(inv, mac)
        except InventoryUnavailable:
            w.pre = Ignore("redis_down", "inventory not loaded")
            return w
        if self._proxy:
            return w  # boot information only: no lease steps (decided in _finish)
        w.pre = policy.screen(msg, w.host, w.subnet, w.ctx)
        if w.pre is not None:
            if w.pre.reason == "other_server" and mtype == codec.REQUEST:
                held = self._offers.pop(client, None)
                if held is not None:  # the client chose another server: free our offer now
                    w.step = self.store.release_step(held[0], mac, held[1], now=now,
                                                     only_offered=True, client=client)
            return w
        subnet = w.subnet
        assert subnet is not None  # screen() passed it
        w.reserved = policy.reserved_address(w.host, subnet)
        boot = None
        if mtype in (codec.DISCOVER, codec.REQUEST):
            boot = w.boot = policy.choose_boot(msg, w.host, w.profile, subnet, w.ctx, mac)
            # whether the OFFER/ACK fits the client is known before the lease step: no address
            # is held or bound for a reply that cannot be sent
            template = self.replies.template(msg, w.host, w.profile, subnet, subnet.lease_time,
                                             w.ctx, mac, boot)
            if isinstance(template, Ignore):
                w.pre = template
                return w
            w.template = template
        hostname = policy.client_hostname(msg, w.host)
        if hostname is None:  # option 12 is not a host name: ignored
            m.BAD_HOSTNAME.inc()
            log.debug("hostname_ignored", mac=mac,
                      value=msg.options[codec.OPT_HOSTNAME][:64].decode("utf-8", "backslashreplace"),
                      reason="option 12 is not an RFC 1123 host name (ASCII letters, digits, "
                             "'-', dot-separated labels)")
            hostname = ""
        store = self.store
        event = None
        if self._emit:  # the lease script records the event with the lease, in one step
            event = (dgram.interface.name, boot.file if boot else "", boot.reason if boot else "",
                     w.host is not None)
        if mtype == codec.DISCOVER:
            # the lease script writes the DISCOVER's event before the OFFER's: in time order
            # (an inventory host's DISCOVER with arches may begin a boot attempt: the same
            # step decides it, shared/attempts.py; a pool client has none: no work for it)
            arches = (",".join(map(str, msg.client_arches))
                      if w.host is not None or self._emit_discover else "")
            # (by position: a call into interpreted code, cheaper without keywords)
            w.step = store.offer_step(subnet.name, mac, w.reserved,
                                      msg.ip_option(codec.OPT_REQUESTED_IP), hostname, now, event,
                                      client, arches if self._emit_discover else None, arches)
        elif mtype == codec.REQUEST:
            w.requested = policy.requested_address(msg)
            if w.requested is None:
                w.pre = Ignore("malformed", "REQUEST without requested address or ciaddr")
            else:
                w.step = store.request_step(subnet.name, mac, w.requested, w.reserved,
                                            hostname, subnet.lease_time, now, event, client)
        elif mtype == codec.RELEASE and msg.ciaddr != ZERO_IP:
            w.step = store.release_step(subnet.name, mac, msg.ciaddr, now=now, event=event,
                                        client=client)
        elif mtype == codec.DECLINE:
            declined = msg.ip_option(codec.OPT_REQUESTED_IP)
            if declined:
                w.step = store.decline_step(subnet.name, mac, declined, now=now, event=event,
                                            client=client)
        return w

    def _lease_for(self, w: Work, outcome: Outcome | None, redis_failed: bool):
        """The policy's lease argument from the lease step's outcome (or the cache if Redis is
        down: reserved hosts only)."""
        assert w.subnet is not None  # only for a request screen() passed
        lease_time = w.subnet.lease_time
        if redis_failed and w.step is not None:
            if w.reserved is None:
                return Ignore("redis_down", "no dynamic address without Redis")
            if w.mtype == codec.REQUEST and w.requested != w.reserved:
                return Refusal(f"this client has the reserved address {w.reserved}")
            if w.mtype == codec.REQUEST:  # its lease is written when Redis is back
                self.store.acked_offline(w.step, w.reserved)
            return Lease(w.reserved, lease_time)
        if outcome is None:
            return None
        if outcome.kind == "ok":
            return Lease(outcome.ip, lease_time)
        if outcome.kind == "nak":
            return Refusal(outcome.reason)
        if outcome.kind == "conflict":
            return Ignore("lease_conflict", outcome.reason)
        if outcome.kind == "exhausted":
            return Ignore("pool_exhausted", outcome.reason)
        return None

    def _finish(self, w: Work, outcome: Outcome | None, redis_failed: bool, now: int) -> None:
        mtype = w.mtype
        if self._emit_discover and mtype == codec.DISCOVER and not w.recorded:
            # (the lease script wrote it when its step ran: w.recorded)
            self.events.emit("dhcp.discover", w.mac, arch=",".join(map(str, w.msg.client_arches)),
                             attempt_step=_discover_step(w, w.boot))
        if self._proxy and w.pre is None:
            self._finish_proxy(w, now)
            return
        if w.pre is not None:
            self._ignored(w, w.pre)
            return
        if mtype in (codec.RELEASE, codec.DECLINE):
            kind = "release" if mtype == codec.RELEASE else "decline"
            ip = w.msg.ciaddr if kind == "release" else w.msg.ip_option(codec.OPT_REQUESTED_IP)
            said = outcome.kind if outcome else ("redis_down" if redis_failed else "ignored")
            log.info(kind, mac=w.mac, ip=ip, result=said)
            if self._emit and not w.recorded:
                self.events.emit(f"dhcp.{kind}", w.mac, ip=ip, result=said,
                                 reason=outcome.reason if outcome else None)
            return
        lease = self._lease_for(w, outcome, redis_failed)
        if isinstance(lease, Ignore):
            self._ignored(w, lease)
            return
        result: Reply | Ignore
        if mtype == codec.INFORM and bsdp.is_bsdp(w.msg):  # Apple NetBoot
            result = bsdp.answer(w.msg, self._netboot_images(), w.ctx)
        elif isinstance(lease, Lease) and mtype in (codec.DISCOVER, codec.REQUEST):
            # an OFFER or ACK: decide() + encode(), templated (replies.py), chosen in _prepare
            template = w.template
            assert template is not None  # _prepare chose it for a DISCOVER or REQUEST
            data, dest = self.replies.pack(w.msg, template, lease.ip, w.ctx, w.dgram.data)
            if template.relay_info_dropped:
                self._relay_info_dropped(w)
            self._sent(w, data, dest, template.reply_type, lease.ip, w.boot, lease)
            return
        else:
            result = policy.decide(w.msg, w.host, w.profile, w.subnet, lease, w.ctx, w.mac,
                                   w.boot, screened=True)  # _prepare screened it
        if isinstance(result, Ignore):
            self._ignored(w, result)
            return
        self._send(w, result, lease, now)

    def _finish_proxy(self, w: Work, now: int) -> None:
        boot_server = w.dgram.port == self.section.boot_server_port
        result = policy.decide_proxy(w.msg, w.host, w.profile, w.subnet, w.ctx, w.mac,
                                     boot_server)
        if isinstance(result, Ignore):
            self._ignored(w, result)
            return
        if boot_server and w.msg.giaddr == ZERO_IP:  # PXE: answer where the request came from
            result = dataclasses.replace(result, destination=policy.Destination(*w.dgram.source))
        self._send(w, result, None, now)

    def _send(self, w: Work, reply: Reply, lease, now: int) -> None:
        message = reply.message
        data, dropped = encode_reply(message, policy.reply_size_limit(w.msg))
        if data is None:
            self._ignored(w, too_big(message.message_type or 0, w.msg, w.subnet, reply.boot))
            return
        if dropped:
            self._relay_info_dropped(w)
        self._sent(w, data, reply.destination, message.message_type or 0, message.yiaddr, reply.boot,
                   lease, message.file)

    def _relay_info_dropped(self, w: Work) -> None:
        m.RELAY_INFO_NOT_ECHOED.inc()
        log.debug("relay_info_not_echoed", mac=w.mac, relay=w.msg.giaddr,
                  length=len(w.msg.options[Opt.RELAY_AGENT_INFO]),
                  reason="the reply does not fit the client's maximum message size with it")

    def _sent(self, w: Work, data: bytes, dest: policy.Destination, rtype: int, ip: str,
              boot: policy.BootChoice | None, lease, file: bytes = b"") -> None:
        """Send one encoded reply and account for it (``file``: the reply's, for BSDP)."""
        if not self.transport.send(w.dgram.interface, data, dest.ip, dest.port, w.dgram.port):
            return
        self._latencies.append(time.perf_counter() - w.dgram.received)
        self._out[m.TYPE_NAMES[rtype]] += 1
        subnet = w.subnet.name if w.subnet is not None else ""
        if rtype == codec.OFFER and w.subnet is not None and ip != ZERO_IP:
            self._offers[w.client] = (subnet, ip)
            if len(self._offers) > OFFER_MEMORY:
                self._offers.popitem(last=False)
            event = "dhcp.offer"
        elif rtype == codec.NAK:
            event = "dhcp.nak"
            log.info("nak", mac=w.mac, requested=w.requested, reason=lease.reason,
                     interface=w.dgram.interface.name)
        elif w.mtype == codec.INFORM:
            event = "dhcp.inform"
        else:
            event = "dhcp.ack"
            self._offers.pop(w.client, None)
            self._acks.append((w.mac, ip, (
                subnet, boot.file if boot else "", boot.reason if boot else "",
                w.msg.giaddr if w.msg.giaddr != ZERO_IP else None, w.reserved is not None)))
        if self._emit and not w.recorded:  # no lease step wrote it (INFORM, Redis down)
            fields = {"ip": ip if ip != ZERO_IP else None, "subnet": subnet or None,
                      "interface": w.dgram.interface.name}
            if boot is not None:
                fields["boot_file"] = boot.file
                fields["boot_reason"] = boot.reason
            elif file:  # a BSDP SELECT answer
                fields["boot_file"] = file.decode(errors="replace")
                fields["boot_reason"] = "bsdp"
            if rtype == codec.NAK:
                fields["reason"] = lease.reason
            step = None  # the boot attempt (shared/attempts.py), as the lease script decides it
            if event == "dhcp.offer":
                step = _discover_step(w, boot)
            elif event == "dhcp.ack":
                step = ("ack", fields.get("boot_file") or "", fields.get("boot_reason") or "")
            self.events.emit(event, w.mac, attempt_step=step, **fields)

    def _ignored(self, w: Work, why: Ignore) -> None:
        if why.reason == "no_reply_expected":
            return
        m.IGNORED_BY[why.reason].inc()
        if why.reason in EVENT_REASONS:
            log.warning("ignored", mac=w.mac, reason=why.reason, detail=why.detail,
                        interface=w.dgram.interface.name)
            if self._emit and not w.recorded:
                self.events.emit("dhcp.ignored", w.mac, reason=why.reason, detail=why.detail,
                                 attempt_step=_discover_step(w, None))
        else:
            log.debug("ignored", mac=w.mac, reason=why.reason, detail=why.detail)

    # -- housekeeping --------------------------------------------------------------------------
    async def sync_pools(self) -> None:
        """Make every subnet's pool match the inventory (ranges minus reserved addresses and
        this server's own addresses)."""
        subnets = self.inventory.subnets()
        self._check_own_addresses(subnets)
        reserved = [h.ip for h in self.inventory.hosts() if h.ip] + self.own_addresses
        for subnet in subnets:
            if subnet.ranges:
                await self.store.sync_pool(subnet.name, subnet.ranges, reserved)
        self._pools_dirty = False

    def _check_own_addresses(self, subnets) -> None:
        """A warning (once) for each subnet range holding one of this server's own addresses
        (the inventory cannot know them: dhcp.server_address, the interfaces' addresses)."""
        found = set()
        for subnet in subnets:
            for ip in self.own_addresses:
                inside = range_containing(ip, subnet.ranges)
                if inside is not None:
                    found.add((subnet.name, f"{inside[0]}-{inside[1]}", ip))
        for name, rng, ip in sorted(found - self._own_in_range):
            m.OWN_ADDRESS_IN_RANGE.inc()
            log.warning("own_address_in_range", key=KINDS["subnet"].key(name), field="ranges",
                        value=rng, address=ip,
                        reason=f"{ip} is this DHCP server's own address",
                        action=f"kept out of the pool; take it out of the range (bootyard "
                               f"subnet set {name} --ranges ...)")
        self._own_in_range = found

    async def housekeeping(self, stop: asyncio.Event) -> None:
        interval = self.section.housekeeping_interval
        last = int(time.time())
        while not stop.is_set():
            try:
                if self._pools_dirty or self.store.failed:
                    await self.sync_pools()
                now = int(time.time())
                for subnet in self.inventory.subnets():
                    if not subnet.ranges:
                        continue
                    size, used = await self.store.pool_usage(subnet.name, now)
                    m.POOL_SIZE.labels(subnet.name).set(size)
                    m.POOL_USED.labels(subnet.name).set(used)
                    if self._emit:
                        for rec in await self.store.expired_since(subnet.name, last, now):
                            self.events.emit("dhcp.expire", rec.mac, ip=rec.ip,
                                             subnet=subnet.name)
                last = now
            except InventoryUnavailable as exc:
                self._pools_dirty = True
                log.debug("housekeeping_failed", reason=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass


async def _set_when(stop: asyncio.Event, ready: asyncio.Event) -> None:
    """Set ``ready`` once ``stop`` is set (DhcpServer.run's loops then see ``stop``)."""
    await stop.wait()
    ready.set()


def _discover_step(w: Work, boot) -> tuple[str, str, str] | None:
    """The attempt step of a DISCOVER with option 93 (it may begin a boot attempt,
    shared/attempts.py) for an event no lease step wrote; None for anything else."""
    if w.mtype != codec.DISCOVER or not w.msg.client_arches:
        return None
    return ("discover", getattr(boot, "file", "") or "", getattr(boot, "reason", "") or "")
