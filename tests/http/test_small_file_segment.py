"""A small static file's headers and body leave in one TCP segment (GRUB 2.06 polls 400 ms for a
body that is not queued with the headers: +0.42 s per small file over bootyard's HTTP, where
nginx cost nothing). The HTTP service runs in a network namespace of the test's; tcpdump on that
namespace's loopback records what it sends; curl asks for the file."""

from __future__ import annotations

import subprocess
import sys

import pytest
from httpkit import REPO, ServiceProcess
from scapy.all import TCP, rdpcap

from harness.netlab import stop_process, wait_for
from harness.redis_server import RedisServer

pytestmark = pytest.mark.lab


def _payload_segments(pcap, port: int) -> list[bytes]:
    return [bytes(p[TCP].payload) for p in rdpcap(str(pcap))
            if TCP in p and p[TCP].sport == port and len(p[TCP].payload)]


def _whole_response(pcap, port: int, body: bytes) -> list[bytes] | None:
    segments = _payload_segments(pcap, port)
    return segments if b"".join(segments).endswith(body) else None


def test_small_file_headers_and_body_in_one_segment(lab, tmp_path):
    redis = RedisServer(tmp_path / "redis", unix_socket=True)
    redis.start()
    ns = lab.namespace("seg")
    svc = ServiceProcess(tmp_path, redis.url)
    body = b"normal\nlinux\nhttp\nefinet\n" * 80  # ~2 KiB, as GRUB's command.lst
    (svc.images / "command.lst").write_bytes(body)
    pcap = tmp_path / "lo.pcap"
    proc = dump = None
    try:
        proc = ns.popen(sys.executable, "-m", "services.http", env=svc.env, cwd=str(REPO),
                        stdout=subprocess.DEVNULL, stderr=open(svc.log, "wb"))
        wait_for(lambda: ns.run("curl", "-sf", "-o", "/dev/null", "--max-time", "1",
                                f"{svc.url}/healthz", check=False).returncode == 0
                 or proc.poll() is not None, 20, interval=0.2, what="the HTTP service")
        assert proc.poll() is None, svc.log.read_text()
        dump_log = tmp_path / "tcpdump.log"
        dump = ns.popen("tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-w", str(pcap),
                        f"tcp port {svc.port}", stdout=subprocess.DEVNULL,
                        stderr=open(dump_log, "wb"))
        wait_for(lambda: b"listening on" in dump_log.read_bytes() or dump.poll() is not None,
                 10, what="tcpdump listening")
        got = ns.run("curl", "-s", "--max-time", "10", f"{svc.url}/images/command.lst")
        assert got.stdout == body.decode()
        # curl has the whole response: tcpdump writes each packet as it sees it (-U)
        segments = wait_for(lambda: _whole_response(pcap, svc.port, body), 10,
                            what="the response in the capture")
    finally:
        stop_process(dump)
        stop_process(proc)
        redis.stop()
    assert len(segments) == 1, [s[:40] for s in segments]
    assert segments[0].startswith(b"HTTP/1.1 200") and segments[0].endswith(body)
