"""``make fuzz``: every protocol's input path under a coverage-guided fuzzer and a packet
mutator against the running service.

For each protocol (dhcp, tftp, aoe, http, iscsi):
1. the codec and the pure code behind it under atheris (libFuzzer, coverage-guided;
   scripts/fuzz/targets.py), seeded with real clients' messages (tests/golden captures of
   iPXE, OVMF, udhcpc, GRUB, PXELINUX; AoE and HTTP requests and iSCSI logins and commands
   as the initiators send them);
2. the service itself (``python -m services.<name>``, real Redis) in a lab network namespace,
   fed mutated copies of the same messages from a client namespace (scripts/fuzz/blast.py;
   iSCSI: on each connection a login, then mutated PDUs, or a mutated login);
   afterwards it must still be running, answer a normal client (udhcpc, tftp-hpa, curl, an AoE
   read, an iSCSI login and read, libiscsi's iscsi-inq), and hold no more file descriptors
   and not much more memory than after the warm-up tenth of the inputs.
A crash, a hang, a leak or a service that stops answering fails the run (exit 1). The last
line is ``RESULT fuzz ...`` with the counts. Bounded in count and time; namespaces are
removed afterwards, even on failure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "blockexport")]

from harness.dhcpkit import UnixRedis, seed_inventory  # noqa: E402
from harness.labservice import NamedService as Service  # noqa: E402
from harness.netlab import Lab, wait_for  # noqa: E402
from shared.store import MAX_CONNECTIONS  # noqa: E402

PROTOCOLS = ("dhcp", "tftp", "aoe", "http", "iscsi")
HERE = Path(__file__).resolve().parent
RSS_GROWTH_LIMIT_KIB = 32 * 1024  # after the warm-up tenth; a leak of a few bytes per input
FD_GROWTH_LIMIT = 8               # of 1M inputs shows far beyond both
SETTLE_S = 40                     # the longest a fuzzed transfer or connection takes to end


# -- seeds: what real clients send ------------------------------------------------------------
def _pcap_payloads(names: list[str], port: int) -> list[bytes]:
    from scapy.all import UDP, rdpcap  # noqa: PLC0415 - slow import, only here
    out = []
    for name in names:
        for packet in rdpcap(str(REPO / "tests" / "golden" / name)):
            if UDP in packet and (packet[UDP].dport == port or port == 0):
                out.append(bytes(packet[UDP].payload))
    return out


def seeds(protocol: str) -> list[bytes]:
    if protocol == "dhcp":
        return _pcap_payloads([f"dhcp-{n}.pcap" for n in
                               ("ipxe-bios", "ipxe-efi", "ovmf-http", "ovmf-pxe", "udhcpc")], 67)
    if protocol == "tftp":
        return _pcap_payloads([f"tftp-{n}.pcap" for n in ("grub", "ipxe", "ovmf", "pxelinux")],
                              0)[:400]
    if protocol == "aoe":
        from services.blockexport import codec  # noqa: PLC0415
        from services.blockexport.codec import Ata, Config, Frame, Header  # noqa: PLC0415
        me, them = b"\x02\x00\x00\x00\x00\x09", codec.BROADCAST_MAC
        frames = [Frame(Header(them, me, 0xFFFF, 0xFF, codec.Command.QUERY_CONFIG, 1), Config()),
                  Frame(Header(them, me, 4, 4, codec.Command.ATA, 2),
                        Ata(count=1, command=codec.AtaCommand.IDENTIFY_DEVICE)),
                  Frame(Header(them, me, 4, 4, codec.Command.ATA, 3),
                        Ata(aflags=codec.AFlag.EXTENDED, count=2, lba=8,
                            command=codec.AtaCommand.READ_SECTORS_EXT)),
                  Frame(Header(them, me, 4, 4, codec.Command.ATA, 4),
                        Ata(aflags=codec.AFlag.EXTENDED | codec.AFlag.WRITE, count=1, lba=9,
                            command=codec.AtaCommand.WRITE_SECTORS_EXT, data=bytes(512)))]
        return [codec.encode(f) for f in frames]
    if protocol == "iscsi":
        return iscsi_seeds()
    return [b"GET /boot/52:54:00:12:34:56.ipxe HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /images/fuzz/kernel HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,20-\r\n\r\n",
            b"HEAD /images/fuzz/kernel HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\n\r\n",
            b"GET /install/52:54:00:12:34:56/preseed.cfg?token=abc HTTP/1.0\r\n\r\n",
            b"POST /install-done?mac=52:54:00:12:34:56 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            b"GET /mirror/debian/dists/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]


ISCSI_IQN = "iqn.2026-12.org.bootyard:fuzz"


def iscsi_login_stream(target: str = ISCSI_IQN, discovery: bool = False) -> bytes:
    """A whole login as an initiator pipelines it: security stage, then operational to full
    feature, no CHAP (as open-iscsi and iPXE log in to an export without a secret)."""
    import iscsiwire as w  # noqa: PLC0415 - tests/blockexport
    keys = [("InitiatorName", "iqn.2026-12.org.bootyard:fuzzer")]
    keys += [("SessionType", "Discovery")] if discovery else [("TargetName", target),
                                                               ("SessionType", "Normal")]
    return (w.login(keys + [("AuthMethod", "None")], csg=0, nsg=1, transit=True) +
            w.login([("HeaderDigest", "None"), ("DataDigest", "None"), ("InitialR2T", "No"),
                     ("ImmediateData", "Yes"), ("MaxRecvDataSegmentLength", "65536"),
                     ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"),
                     ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0")],
                    csg=1, nsg=3, transit=True))


def iscsi_pdus() -> list[bytes]:
    """Full-feature PDUs an initiator sends after that login (CmdSN from 1)."""
    import iscsiwire as w  # noqa: PLC0415
    from scsikit import cdb6, cdb10, cdb16, pr_in, pr_out  # noqa: PLC0415
    block = bytes(range(256)) * 2
    cdbs = [(bytes((0x12, 0, 0, 0, 96, 0)), 96), (bytes((0x12, 1, 0x80, 0, 255, 0)), 255),
            (bytes((0x12, 1, 0x83, 0, 255, 0)), 255), (cdb10(0x25), 8),
            (cdb16(0x9E, flags=0x10, blocks=32), 32), (bytes(6), 0),
            (bytes((0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0)), 16),
            (bytes((0x1A, 0, 0x3F, 0, 255, 0)), 255), (cdb10(0x28, 0, 8), 4096),
            (cdb16(0x88, 16, 4), 2048), (cdb6(0x08, 4, 1), 512), (cdb10(0x35), 0),
            (cdb10(0x2F, 0, 8), 0), (pr_in(0), 1024), (bytes((0x03, 0, 0, 0, 18, 0)), 18)]
    out = [w.command(cdb, itt=2 + n, cmdsn=1 + n, edtl=edtl, read=bool(edtl))
           for n, (cdb, edtl) in enumerate(cdbs)]
    out += [w.command(cdb10(0x2A, 40, 1), itt=40, cmdsn=20, edtl=512, write=True, data=block),
            w.command(cdb10(0x2A, 41, 2), itt=41, cmdsn=21, edtl=1024, write=True, final=False,
                      data=block),
            w.data_out(block, itt=41, offset=512, datasn=0),
            w.command(cdb16(0x93, 42, 4), itt=42, cmdsn=22, edtl=512, write=True, data=block),
            w.command(bytes((0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0)), itt=43, cmdsn=23, edtl=24,
                      write=True, data=bytes((0, 22, 0, 16)) + bytes(4) + (50).to_bytes(8, "big")
                      + (2).to_bytes(4, "big") + bytes(4)),
            w.command(pr_out(0, 0, 0x1234)[0], itt=44, cmdsn=24, edtl=24, write=True,
                      data=pr_out(0, 0, 0x1234)[1]),
            w.nop_out(itt=45, cmdsn=25, data=b"ping"),
            w.text_request([("SendTargets", "All")], itt=46, cmdsn=25),
            w.task_mgmt(1, itt=47, cmdsn=25, ref_itt=41),
            w.task_mgmt(5, itt=48, cmdsn=25),
            w.logout(itt=49, cmdsn=25)]
    return out


def iscsi_seeds() -> list[bytes]:
    """For the service blaster: the login first, then the full-feature PDUs. (The codec
    fuzzer gets whole connections: iscsi_corpus.)"""
    return [iscsi_login_stream(), *iscsi_pdus()]


def iscsi_corpus() -> list[bytes]:
    """Whole connections for the codec fuzzer: logins followed by commands."""
    login, pdus = iscsi_login_stream(), iscsi_pdus()
    out = [login + b"".join(pdus[:-1]), iscsi_login_stream(discovery=True) + pdus[-4]]
    out += [login + p for p in pdus]
    return out


# -- 1. the codec under atheris --------------------------------------------------------------
def fuzz_codec(protocol: str, inputs: int, seconds: int, work: Path) -> dict:
    corpus = work / "corpus" / protocol
    corpus.mkdir(parents=True, exist_ok=True)
    corpus_seeds = iscsi_corpus() if protocol == "iscsi" else \
        seeds(protocol) if protocol != "http" else []
    for n, seed in enumerate(corpus_seeds):
        (corpus / f"seed-{n}").write_bytes(seed)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(HERE / "targets.py"), protocol, f"-runs={inputs}",
         f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
         f"-artifact_prefix={work}/{protocol}-", str(corpus)],
        capture_output=True, text=True, cwd=work, timeout=seconds + 120)
    done = re.search(r"Done (\d+) runs in (\d+) second", run.stderr)
    cov = re.findall(r"cov: (\d+)", run.stderr)
    result = {"codec_inputs": int(done.group(1)) if done else 0,
              "codec_s": round(time.monotonic() - started, 1),
              "coverage": int(cov[-1]) if cov else 0}
    if run.returncode != 0:
        tail = "\n".join(run.stderr.splitlines()[-30:])
        raise Finding(f"{protocol} codec: the fuzzer found a failing input "
                      f"(saved as {work}/{protocol}-crash-*):\n{tail}")
    return result


class Finding(Exception):
    pass


# -- 2. the running service -----------------------------------------------------------------
def usage(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of a process and its children (a service's worker
    processes: tftp.workers is one per CPU by default)."""
    rss = fds = 0
    for child in fd_processes(pid):
        more = usage(child)
        rss, fds = rss + more[0], fds + more[1]
    status = Path(f"/proc/{pid}/status").read_text()
    rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return rss, fds + len(os.listdir(f"/proc/{pid}/fd"))


def fd_processes(pid: int) -> list[int]:
    """A process's children (a service's worker processes)."""
    return [int(other) for child in Path(f"/proc/{pid}/task").glob("*/children")
            for other in child.read_text().split()]


def fd_kinds(pid: int) -> dict[str, int]:
    """What the open descriptors of a process and its children are, counted: ``unix socket``
    (the Redis client's pooled connections), ``socket`` (any other: the service's own UDP and
    TCP), ``anon_inode:[eventpoll]``, a file's path ..."""
    kinds: dict[str, int] = {}
    for one in [pid, *fd_processes(pid)]:
        unix = {line.split()[6] for line in
                Path(f"/proc/{one}/net/unix").read_text().splitlines()[1:] if len(line.split()) > 6}
        for fd in Path(f"/proc/{one}/fd").iterdir():
            try:
                what = os.readlink(fd)
            except OSError:
                continue
            if what.startswith("socket:["):
                what = "unix socket" if what[8:-1] in unix else "socket"
            kinds[what] = kinds.get(what, 0) + 1
    return kinds


def leaked(before: dict[str, int], after: dict[str, int], processes: int) -> dict[str, str]:
    """The kinds of descriptor that grew past what a leak-free service may hold after the
    fuzzing ended: its Redis pools may keep up to MAX_CONNECTIONS connections per process
    (shared/store.py: a burst opens them, the pool keeps them, never more); anything else
    may not grow by more than FD_GROWTH_LIMIT."""
    allowed = {"unix socket": MAX_CONNECTIONS * processes}
    return {k: f"{before.get(k, 0)}->{n}" for k, n in after.items()
            if n > before.get(k, 0) + allowed.get(k, FD_GROWTH_LIMIT)}


def blast(ns, kind: str, target: str, seed_file: Path, count: int, seconds: float,
          rng: int) -> int:
    out = ns.run(sys.executable, str(HERE / "blast.py"), kind, target, str(seed_file),
                 str(count), str(seconds), str(rng), timeout=seconds + 60).stdout
    return int(out.split()[-1])


def fuzz_service(protocol: str, inputs: int, seconds: int, work: Path) -> dict:
    seed_file = work / f"{protocol}.seeds"
    seed_file.write_text("\n".join(s.hex() for s in seeds(protocol)) + "\n")
    with Lab() as lab:
        seg = lab.segment()
        client = seg.add_client(seg.address(10) + "/24")
        redis = UnixRedis(work / f"redis-{protocol}")
        redis.start()
        try:
            return _against(protocol, lab, seg, client, redis, seed_file, inputs, seconds, work)
        finally:
            redis.stop()


def _against(protocol, lab, seg, client, redis, seed_file, inputs, seconds, work) -> dict:
    log = work / f"{protocol}.log"
    server_ip = seg.address(1)
    check, kind, target, settings = None, "udp", "", {}
    root = work / f"root-{protocol}"
    (root / "fuzz").mkdir(parents=True, exist_ok=True)
    (root / "fuzz" / "kernel").write_bytes(os.urandom(100_000))
    if protocol == "dhcp":
        seed_inventory(redis.client(), seg)
        settings = {"interfaces": "eth0", "metrics_host": "127.0.0.1"}
        kind, target = "udp", "255.255.255.255:67"
        probe = lab.namespace("probe")
        lab._wire(seg.switch, probe, None)

        def check() -> bool:
            run = probe.run("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5",
                            "-T", "1", "-s", "/bin/true", check=False, timeout=30)
            return run.returncode == 0
    elif protocol == "tftp":
        settings = {"root": str(root), "metrics_host": "127.0.0.1"}
        kind, target = "udp", f"{server_ip}:69"

        def check() -> bool:
            got = work / "tftp-got"
            got.unlink(missing_ok=True)
            client.run("tftp", server_ip, "-c", "get", "fuzz/kernel", str(got), check=False,
                       timeout=30)
            return got.exists() and got.read_bytes() == (root / "fuzz" / "kernel").read_bytes()
    elif protocol == "http":
        settings = {"host": "0.0.0.0", "port": "8080", "images_root": str(root),
                    "metrics_host": "127.0.0.1", "token_secret": "fuzz-secret-0123456789"}
        kind, target = "tcp", f"{server_ip}:8080"

        def check() -> bool:
            run = client.run("curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}",
                             f"http://{server_ip}:8080/images/fuzz/kernel", check=False,
                             timeout=30)
            return run.stdout == "200"
    elif protocol == "iscsi":
        disk = work / "iscsi-disk.img"
        disk.write_bytes(os.urandom(1 << 20))
        redis.client().hset("bootyard:export:fuzz", mapping={
            "kind": "iscsi", "backing": str(disk), "iqn": ISCSI_IQN})
        settings = {"interface": "", "iscsi_port": "3260", "metrics_host": "127.0.0.1",
                    "metrics_port": "0", "iscsi_login_timeout": "5"}
        kind, target = "iscsi", f"{server_ip}:3260"

        def check() -> bool:
            import hashlib  # noqa: PLC0415
            want = hashlib.md5(disk.read_bytes()[:2048]).hexdigest()  # writes are allowed
            probe = client.run(sys.executable, str(REPO / "scripts" / "iscsi-probe.py"),
                               "--portal", f"{server_ip}:3260", "--target", ISCSI_IQN,
                               "--lba", "0", "--count", "4", check=False, timeout=60)
            inq = client.run("iscsi-inq", f"iscsi://{server_ip}:3260/{ISCSI_IQN}/0",
                             check=False, timeout=60)
            return f"md5 {want} " in probe.stdout and inq.returncode == 0
    else:
        disk = work / "aoe-disk.img"
        disk.write_bytes(os.urandom(1 << 20))
        redis.client().hset("bootyard:export:fuzz", mapping={
            "kind": "aoe", "backing": str(disk), "aoe_shelf": "4", "aoe_slot": "4"})
        settings = {"interface": "eth0", "metrics_host": "127.0.0.1", "metrics_port": "0"}
        kind, target = "raw", "eth0"
        from aoeclient import Initiator  # noqa: PLC0415

        def check() -> bool:
            host = Initiator(client.name)
            try:
                (found,) = host.discover(1)
                return host.read(found, 0, 2) == disk.read_bytes()[:1024]
            finally:
                host.close()
    name = {"aoe": "blockexport", "iscsi": "blockexport"}.get(protocol, protocol)
    service = Service(name, seg.server, redis.url, log, **settings)
    try:
        if not check():
            raise RuntimeError(f"{protocol}: the normal client failed before any fuzzing")
        warm = max(inputs // 10, 1)
        sent = blast(client, kind, target, seed_file, warm, seconds / 10, 1)
        wait_for(check, 30, what=f"{protocol} to answer after the warm-up")
        rss0, fds0 = usage(service.proc.pid)
        kinds0 = fd_kinds(service.proc.pid)
        sent += blast(client, kind, target, seed_file, inputs - warm, seconds * 0.9, 2)
        if service.proc.poll() is not None:
            raise Finding(f"{protocol} service exited under fuzzing: {service.log()[-2000:]}")
        try:
            wait_for(check, 30, interval=1, what=f"{protocol} to answer a normal client")
        except TimeoutError as exc:
            raise Finding(f"{protocol} service stopped answering after {sent} mutated inputs: "
                          f"{exc}") from None
        # the transfers and connections the fuzzing opened end on their own timeouts (a TFTP
        # transfer nobody acknowledges is given up after its retries: 15.5 s by default), so a
        # leak is descriptors still open after that, not a count taken while they wind down
        processes = 1 + len(fd_processes(service.proc.pid))
        try:
            wait_for(lambda: not leaked(kinds0, fd_kinds(service.proc.pid), processes),
                     SETTLE_S, interval=0.5, what="open file descriptors")
        except TimeoutError:
            pass
        rss1, fds1 = usage(service.proc.pid)
        grew = leaked(kinds0, fd_kinds(service.proc.pid), processes)
        if grew:
            raise Finding(f"{protocol}: open file descriptors grew from {fds0} to {fds1} and "
                          f"stayed there {SETTLE_S} s after the fuzzing ({grew})")
        if rss1 - rss0 > RSS_GROWTH_LIMIT_KIB:
            raise Finding(f"{protocol}: RSS grew from {rss0} to {rss1} KiB")
        tracebacks = service.log().count("Traceback")
        if tracebacks:
            raise Finding(f"{protocol}: {tracebacks} tracebacks in the service log ({log})")
        return {"service_inputs": sent, "rss_kib": f"{rss0}->{rss1}", "fds": f"{fds0}->{fds1}"}
    finally:
        service.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--inputs", type=int, default=1_000_000,
                        help="codec inputs per protocol (atheris runs)")
    parser.add_argument("--seconds", type=int, default=900, help="codec time limit")
    parser.add_argument("--service-inputs", type=int, default=1_000_000)
    parser.add_argument("--service-seconds", type=int, default=900)
    parser.add_argument("--workdir", help="keep the corpus and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bootyard-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    failures, lines = 0, []
    for protocol in args.protocols.split(","):
        result = {"proto": protocol}
        try:
            result.update(fuzz_codec(protocol, args.inputs, args.seconds, work))
            result.update(fuzz_service(protocol, args.service_inputs, args.service_seconds,
                                       work))
            result["ok"] = "yes"
        except Finding as exc:
            failures += 1
            result["ok"] = "no"
            print(f"FINDING {exc}", file=sys.stderr, flush=True)
        line = "RESULT fuzz " + " ".join(f"{k}={v}" for k, v in result.items())
        print(line, flush=True)
        lines.append(line)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
