"""Boot-storm clients: many simulated machines in one asyncio process, as firmware and iPXE boot.

Run by scripts/bench/storm.py inside the storm's client namespace (``ip netns exec``), one
process per slice of the machines: ``storm_client.py SPEC.json RESULTS.json``. Each machine has
its own macvlan interface (its own MAC, so the server's ARP, DHCP and TCP all see the machine's
MAC) and goes through, in order:

1. ``dhcp``: the firmware's PXE DORA (BIOS arch 0 or UEFI arch 7, options as the golden captures
   of a PXE ROM / OVMF, broadcast flag set), retransmitting after 4, 8, 16 and 32 s (PXE spec),
   each +-1 s at random (RFC 2131 4.1); a NAK starts over (3 times at most);
2. ``tftp``: the boot file the offer names (undionly.kpxe or ipxe.efi) from its next-server,
   blksize 1468; UEFI first asks for the size (``tsize``) and aborts, then reads with windowsize 4
   as OVMF does; an RRQ or ACK unanswered for 4 s is sent again, 6 times at most (OVMF's MTFTP);
3. ``ipxe_dhcp``: iPXE's own DORA (user class iPXE, option 175, no broadcast flag), with iPXE's
   back-off (1, 2, 4, 8, 10 s) and its ProxyDHCP wait: without option 175.176 (no-pxedhcp) in the
   offer iPXE requests only at its first timer tick after 2 s;
4. ``script``, ``kernel``, ``initrd``: the iPXE script the filename names (``${net0/mac}``
   expanded as iPXE does), then the kernel and initrd its ``kernel``/``initrd`` lines name, over
   HTTP/1.1 from the leased address (keep-alive, as iPXE pools connections); a failed fetch is
   tried again after 1 and 2 s.

Every file is checked: the TFTP and HTTP files byte for byte against the served files (``compare``)
or by SHA-256 (``sha256``); the script must be an iPXE script for this machine (it names the
machine's MAC). DHCP goes through one AF_PACKET socket on the namespace's lower interface (a BPF
filter passes only UDP to port 68); once a lease is ACKed its address is added to the machine's
macvlan (netlink, no prefix route), and TFTP/HTTP sockets are bound to that interface and address.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import resource
import socket
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storm_proto import HTTP_ATTEMPTS, Failed, HttpConnection, TftpReceiver  # noqa: E402

from services.dhcp import codec  # noqa: E402  (pure: builds and reads the DHCP messages)

ETH_P_IP = 0x0800
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23
SO_ATTACH_FILTER = 26
# tcpdump -dd 'ip and udp dst port 68' (Ethernet)
BPF_DHCP_CLIENT = [(0x28, 0, 0, 12), (0x15, 0, 8, 0x800), (0x30, 0, 0, 23), (0x15, 0, 6, 17),
                   (0x28, 0, 0, 20), (0x45, 4, 0, 0x1fff), (0xb1, 0, 0, 14), (0x48, 0, 0, 16),
                   (0x15, 0, 1, 68), (0x6, 0, 0, 0x40000), (0x6, 0, 0, 0)]
FW_DHCP_TIMEOUTS = (4, 8, 16, 32)  # PXE 2.1 spec: DISCOVER retries, each +-1 s at random as
FW_DHCP_JITTER = 1.0  # RFC 2131 4.1 asks (iPXE's timer has no such jitter)
IPXE_DHCP_TIMEOUTS = (1, 2, 4, 8, 10)  # iPXE: DHCP_DISC_START/END_TIMEOUT_SEC, doubling
IPXE_PROXY_WAIT = 2.0
DHCP_NAK_RESTARTS = 3  # iPXE: DHCP_DISC_PROXY_TIMEOUT_SEC
BLKSIZE = 1468
STAGES = ("dhcp", "tftp", "ipxe_dhcp", "script", "kernel", "initrd")  # in boot order
PRL_FW = bytes([1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54,
                58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135])
PRL_IPXE = bytes([1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133,
                  134, 135, 175, 203])
# iPXE's option 175 as the golden capture of the BIOS build has it (its feature flags)
IPXE_175 = bytes.fromhex("b105011af41000" "eb03010000" "170101" "220101" "130101" "110101"
                         "270101" "190101" "290101" "100102" "210101" "150101" "180101" "120101")


class _Nak(Exception):
    """The server NAKed our REQUEST: the client starts over."""


# -- netlink: the leased address onto the machine's interface --------------------------------------
class Netlink:
    RTM_NEWADDR, NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE = 20, 1, 4, 0x400, 0x100
    IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS, IFA_F_NOPREFIXROUTE = 1, 2, 8, 0x200

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        self.seq = 0

    @staticmethod
    def _attr(kind: int, data: bytes) -> bytes:
        raw = struct.pack("=HH", 4 + len(data), kind) + data
        return raw + bytes(-len(raw) % 4)

    def add_address(self, ifindex: int, ip: str, prefix: int) -> None:
        self.seq += 1
        packed = socket.inet_aton(ip)
        body = struct.pack("=BBBBI", socket.AF_INET, prefix, 0, 0, ifindex)
        body += self._attr(self.IFA_LOCAL, packed) + self._attr(self.IFA_ADDRESS, packed)
        body += self._attr(self.IFA_FLAGS, struct.pack("=I", self.IFA_F_NOPREFIXROUTE))
        flags = self.NLM_F_REQUEST | self.NLM_F_ACK | self.NLM_F_CREATE | self.NLM_F_REPLACE
        self.sock.send(struct.pack("=IHHII", 16 + len(body), self.RTM_NEWADDR, flags, self.seq, 0)
                       + body)
        reply = self.sock.recv(65536)
        error = struct.unpack_from("=i", reply, 16)[0]
        if error not in (0, -17):  # 0 = ack, -EEXIST: already there (a second lease, same IP)
            raise OSError(-error, f"adding {ip} to interface {ifindex}: {os.strerror(-error)}")


# -- DHCP over one AF_PACKET socket ----------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dhcp_frame(mac: bytes, payload: bytes) -> bytes:
    """Ethernet + IPv4 (0.0.0.0 -> 255.255.255.255) + UDP 68 -> 67 around a DHCP message."""
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4),
                     b"\xff\xff\xff\xff")
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + struct.pack("!H", ETH_P_IP) + ip + udp


class DhcpPort:
    """The worker's DHCP socket: sends frames, hands each reply to the waiting machine by xid."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        prog = b"".join(struct.pack("=HBBI", *ins) for ins in BPF_DHCP_CLIENT)
        buf = __import__("ctypes").create_string_buffer(prog)
        fprog = struct.pack("HL", len(BPF_DHCP_CLIENT),
                            __import__("ctypes").addressof(buf))
        self._bpf = buf  # kept alive while attached
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((ifname, ETH_P_IP))
        self.sock.setblocking(False)
        self.waiting: dict[int, asyncio.Queue] = {}
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(256):
            try:
                frame = self.sock.recv(2048)
            except BlockingIOError:
                return
            ihl = (frame[14] & 0x0F) * 4
            payload = frame[14 + ihl + 8:]
            if len(payload) < 8:
                continue
            queue = self.waiting.get(int.from_bytes(payload[4:8], "big"))
            if queue is None:
                continue
            try:
                msg = codec.decode(payload)
            except codec.DecodeError:
                continue
            if msg.op == codec.Op.BOOTREPLY:
                queue.put_nowait(msg)

    def send(self, mac: bytes, msg: codec.Message) -> None:
        self.sock.send(dhcp_frame(mac, codec.encode(msg)))


class Lease:
    def __init__(self, ip: str, server: str, siaddr: str, filename: str, prefix: int,
                 no_pxedhcp: bool) -> None:
        self.ip, self.server, self.siaddr, self.filename = ip, server, siaddr, filename
        self.prefix, self.no_pxedhcp = prefix, no_pxedhcp


def _prefix(msg: codec.Message) -> int:
    mask = msg.options.get(codec.Opt.SUBNET_MASK)
    return bin(int.from_bytes(mask, "big")).count("1") if mask and len(mask) == 4 else 24


def _no_pxedhcp(msg: codec.Message) -> bool:
    enc = msg.options.get(codec.Opt.IPXE_ENCAP, b"")
    i = 0
    while i + 1 < len(enc):
        code, n = enc[i], enc[i + 1]
        if code == 176 and n >= 1 and enc[i + 2] != 0:
            return True
        i += 2 + n
    return False


def _filename(msg: codec.Message) -> str:
    value = msg.options.get(codec.Opt.BOOTFILE_NAME) or msg.file
    return value.rstrip(b"\0").decode("ascii", "replace")


# -- the machine ---------------------------------------------------------------------------------
class Machine:
    def __init__(self, worker: Worker, spec: dict) -> None:
        self.w = worker
        self.mac_text = spec["mac"]
        self.mac = bytes.fromhex(spec["mac"].replace(":", ""))
        self.arch = spec["arch"]  # 0 BIOS, 7 UEFI x64
        self.ifname = spec["ifname"]
        self.delay = spec["delay"]
        self.ifindex = socket.if_nametoindex(self.ifname)
        self.t: dict[str, float] = {}
        self.retries = {"dhcp": 0, "tftp": 0, "ipxe_dhcp": 0, "http": 0}
        self.verified = 0
        self.naks = 0
        self.ip = ""

    # -- DHCP ------------------------------------------------------------------------------------
    def _request_options(self, ipxe: bool, mtype: int, lease: Lease | None = None) -> dict:
        arch = struct.pack("!H", self.arch)
        undi = ("003010" if ipxe else "003000") if self.arch else "002001"
        vendor = f"PXEClient:Arch:{self.arch:05d}:UNDI:{undi}".encode()
        opts = {53: bytes([mtype]), 57: struct.pack("!H", 1472)}
        if ipxe:
            opts.update({93: arch, 94: b"\x01\x03\x0a" if self.arch else b"\x01\x02\x01",
                         60: vendor, 77: b"iPXE", 55: PRL_IPXE, 175: IPXE_175,
                         61: b"\x01" + self.mac, 97: bytes(17)})
        else:
            opts.update({55: PRL_FW, 97: bytes(17), 93: arch, 60: vendor,
                         94: b"\x01\x03\x00" if self.arch else b"\x01\x02\x01"})
        if lease is not None:
            opts[54] = socket.inet_aton(lease.server)
            opts[50] = socket.inet_aton(lease.ip)
        return opts

    def _message(self, xid: int, secs: int, opts: dict, broadcast: bool) -> codec.Message:
        return codec.Message(xid=xid, secs=secs, flags=codec.FLAG_BROADCAST if broadcast else 0,
                             chaddr=self.mac + bytes(10), options=opts)

    @staticmethod
    def _timeout(base: float, ipxe: bool) -> float:
        return base if ipxe else base + random.uniform(-FW_DHCP_JITTER, FW_DHCP_JITTER)

    async def dora(self, stage: str) -> Lease:
        """DORA; a NAK starts over with a new DISCOVER (RFC 2131 4.4.1), 3 times at most."""
        for _ in range(DHCP_NAK_RESTARTS + 1):
            try:
                return await self._dora_once(stage)
            except _Nak as nak:
                self.retries[stage] += 1
                self.naks += 1
                last = str(nak)
        raise Failed(stage, f"NAKed {DHCP_NAK_RESTARTS + 1} times, the last: {last}")

    async def _dora_once(self, stage: str) -> Lease:
        ipxe = stage == "ipxe_dhcp"
        timeouts = IPXE_DHCP_TIMEOUTS if ipxe else FW_DHCP_TIMEOUTS
        xid = random.getrandbits(32)
        queue: asyncio.Queue = asyncio.Queue()
        port = self.w.dhcp
        port.waiting[xid] = queue
        start = time.monotonic()
        try:
            offer: codec.Message | None = None
            attempt = 0
            # DISCOVER until an offer is taken (iPXE: with no-pxedhcp, or at a tick after 2 s)
            while True:
                if attempt >= len(timeouts):
                    raise Failed(stage, "no usable OFFER after "
                                 f"{len(timeouts)} DISCOVERs" if offer is None else
                                 "offer never taken")
                if attempt and offer is None:  # (iPXE's ProxyDHCP wait is not a retry)
                    self.retries[stage] += 1
                secs = int(time.monotonic() - start)
                port.send(self.mac, self._message(xid, secs, self._request_options(
                    ipxe, codec.MessageType.DISCOVER), broadcast=not ipxe))
                tick = time.monotonic() + self._timeout(timeouts[attempt], ipxe)
                attempt += 1
                while True:
                    if offer is not None and (not ipxe or _no_pxedhcp(offer)):
                        break
                    left = tick - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        msg = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                    if msg.chaddr[:6] == self.mac and msg.message_type == 2 and offer is None:
                        offer = msg
                if offer is not None and (not ipxe or _no_pxedhcp(offer)
                                          or time.monotonic() - start > IPXE_PROXY_WAIT):
                    break
            server = offer.ip_option(codec.Opt.SERVER_ID) or offer.siaddr
            lease = Lease(offer.yiaddr, server, offer.siaddr, _filename(offer), _prefix(offer),
                          _no_pxedhcp(offer))
            # REQUEST until ACK (a NAK: _Nak, and dora() starts over)
            for attempt, timeout in enumerate(timeouts):
                if attempt:
                    self.retries[stage] += 1
                secs = int(time.monotonic() - start)
                port.send(self.mac, self._message(xid, secs, self._request_options(
                    ipxe, codec.MessageType.REQUEST, lease), broadcast=not ipxe))
                deadline = time.monotonic() + self._timeout(timeout, ipxe)
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        msg = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                    if msg.chaddr[:6] != self.mac:
                        continue
                    if msg.message_type == 6:
                        raise _Nak(f"NAK for {lease.ip}: "
                                     f"{msg.text_option(codec.Opt.MESSAGE) or ''}")
                    if msg.message_type == 5:
                        ack = msg
                        return Lease(ack.yiaddr, server, ack.siaddr or lease.siaddr,
                                     _filename(ack) or lease.filename, _prefix(ack),
                                     _no_pxedhcp(ack))
            raise Failed(stage, f"no ACK after {len(timeouts)} REQUESTs")
        finally:
            port.waiting.pop(xid, None)

    def configure(self, lease: Lease) -> None:
        if lease.ip != self.ip:
            self.w.netlink.add_address(self.ifindex, lease.ip, lease.prefix)
            self.ip = lease.ip

    # -- TFTP ------------------------------------------------------------------------------------
    def _udp(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        sock.bind((self.ip, 0))
        sock.setblocking(False)
        return sock

    async def tftp(self, server: str, filename: str) -> None:
        name = filename.lstrip("/")
        ref = self.w.reference(name)
        if ref is None:
            raise Failed("tftp", f"the offer named {filename!r}, not a boot file of this storm")
        if self.arch:  # OVMF: the size first (aborted at the OACK), then the read, windowsize 4
            await self._tftp_read(server, name, ref, {"tsize": "0", "blksize": str(BLKSIZE),
                                                       "windowsize": "4"}, probe=True)
            await self._tftp_read(server, name, ref, {"blksize": str(BLKSIZE),
                                                       "windowsize": "4"})
        else:
            await self._tftp_read(server, name, ref, {"blksize": str(BLKSIZE), "tsize": "0"})

    async def _tftp_read(self, server: str, name: str, ref: bytes, options: dict,
                         probe: bool = False) -> None:
        loop = asyncio.get_running_loop()
        sock = self._udp()
        rrq = b"\0\1" + name.encode() + b"\0octet\0" + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
        try:
            proto = TftpReceiver(self, ref, probe, loop)
            transport, _ = await loop.create_datagram_endpoint(lambda: proto, sock=sock)
            try:
                proto.start(transport, (server, 69), rrq)
                await proto.done
            finally:
                transport.close()
        except BaseException:
            sock.close()
            raise
        if not probe:
            self.verified += 1

    # -- HTTP ------------------------------------------------------------------------------------
    async def http_stage(self, script_url: str) -> None:
        conn = HttpConnection(self)
        try:
            text = (await self._fetch(conn, "script", script_url, None)).decode("utf-8", "replace")
            if not text.startswith("#!ipxe") or self.mac_text not in text.lower():
                raise Failed("script", f"not this machine's iPXE script: {text[:120]!r}")
            kernel = re.search(r"^kernel\s+(?:--\S+\s+)*(\S+)", text, re.M)
            initrds = re.findall(r"^initrd\s+(?:--\S+\s+\S+\s+)*(\S+)", text, re.M)
            if kernel is None or not initrds:
                raise Failed("script", f"no kernel/initrd line in the script: {text[:200]!r}")
            self.verified += 1
            self.t["script"] = time.monotonic()
            await self._fetch(conn, "kernel", kernel.group(1), "vmlinuz")
            self.t["kernel"] = time.monotonic()
            for url in initrds:
                await self._fetch(conn, "initrd", url, "initrd.img")
            self.t["initrd"] = time.monotonic()
        finally:
            conn.close()

    async def _fetch(self, conn: HttpConnection, stage: str, url: str,
                     name: str | None) -> bytes:
        ref = None
        if name is not None:
            ref = self.w.reference(name)
        last = ""
        for attempt in range(HTTP_ATTEMPTS):
            if attempt:
                self.retries["http"] += 1
                conn.close()
                await asyncio.sleep(attempt)
            try:
                body = await conn.get(url, ref, stage)
                if ref is not None:
                    self.verified += 1
                return body
            except Failed:
                raise
            except (TimeoutError, OSError, ValueError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:160]
        raise Failed(stage, f"{url}: {last} ({HTTP_ATTEMPTS} attempts)")

    # -- the whole boot --------------------------------------------------------------------------
    async def boot(self, t0: float) -> dict:
        power_on = t0 + self.delay
        await asyncio.sleep(max(0.0, power_on - time.monotonic()))
        self.t["power_on"] = time.monotonic()
        result = {"mac": self.mac_text, "arch": self.arch, "ok": False}
        try:
            lease = await self.dora("dhcp")
            self.configure(lease)
            self.t["dhcp"] = time.monotonic()
            if not lease.filename:
                raise Failed("dhcp", "the offer named no boot file")
            await self.tftp(lease.siaddr or lease.server, lease.filename)
            self.t["tftp"] = time.monotonic()
            lease2 = await self.dora("ipxe_dhcp")
            self.configure(lease2)
            self.t["ipxe_dhcp"] = time.monotonic()
            url = lease2.filename.replace("${net0/mac}", self.mac_text).replace(
                "${mac}", self.mac_text)
            if not url.startswith("http://"):
                raise Failed("ipxe_dhcp", f"iPXE got filename {lease2.filename!r}, not a script"
                             " URL")
            await self.http_stage(url)
            result["ok"] = True
        except Failed as exc:
            result.update(stage=exc.stage, reason=exc.reason)
        except Exception as exc:  # a bug in this client: reported, never hidden
            result.update(stage="client", reason=f"{type(exc).__name__}: {exc}"[:200])
        result.update(t=self.t, retries=self.retries, verified=self.verified, ip=self.ip,
                      naks=self.naks)
        return result


# -- the worker process ----------------------------------------------------------------------------
class Worker:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.verify = spec.get("verify", "compare")
        self.files = {name: Path(path).read_bytes() for name, path in spec["files"].items()}
        self._digests: dict[int, str] = {}
        self.netlink = Netlink()

    def reference(self, name: str) -> bytes | None:
        return self.files.get(name.rsplit("/", 1)[-1])

    def digest(self, ref: bytes) -> str:
        key = id(ref)
        if key not in self._digests:
            self._digests[key] = hashlib.sha256(ref).hexdigest()
        return self._digests[key]

    async def run(self) -> list[dict]:
        loop = asyncio.get_running_loop()
        self.dhcp = DhcpPort(loop, self.spec["lower"])
        machines = [Machine(self, c) for c in self.spec["clients"]]
        t0 = self.spec["t0"]
        deadline = self.spec["deadline"]
        tasks = [asyncio.ensure_future(m.boot(t0)) for m in machines]
        done, pending = await asyncio.wait(tasks, timeout=max(1.0, t0 + deadline -
                                                               time.monotonic()))
        results = []
        for m, task in zip(machines, tasks):
            if task in done:
                results.append(task.result())
            else:
                task.cancel()
                stage = next((s for s in STAGES if s not in m.t), "initrd")
                results.append({"mac": m.mac_text, "arch": m.arch, "ok": False, "stage": stage,
                                "reason": f"not finished within the {deadline:.0f} s deadline",
                                "t": m.t, "retries": m.retries, "verified": m.verified,
                                "ip": m.ip})
        return results


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    random.seed(spec.get("seed", 0) ^ os.getpid())
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    worker = Worker(spec)
    results = asyncio.run(worker.run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(argv[1]).write_text(json.dumps({"results": results,
                                         "cpu_s": usage.ru_utime + usage.ru_stime}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
