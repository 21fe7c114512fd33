"""What a client can hold or fill (issue 13): bodies nobody asked for (F10), malformed requests
in the log (F14), slow, idle and too many connections (F15). The service runs as a process on
loopback with short timeouts; every wait is on a condition (the server closing the socket, a
metric, a log line), bounded by a socket timeout far above the configured ones."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest
from httpkit import ServiceProcess

WAIT = 30.0  # seconds a socket waits for the server: a bound, never the thing tested


@pytest.fixture
def limited(redis_url, tmp_path):
    proc = ServiceProcess(tmp_path, redis_url, header_timeout="0.5", idle_timeout="1.5")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def capped(redis_url, tmp_path):
    proc = ServiceProcess(tmp_path, redis_url, max_connections="4")
    proc.start()
    yield proc
    proc.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout, WAIT
    seconds of silence, fails the test: the server held the connection)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def metric(proc: ServiceProcess, name: str) -> float:
    text = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{proc.metrics_port}/metrics"],
                          capture_output=True, check=True, timeout=30).stdout.decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def closed(reason: str) -> str:
    return f'bootyard_http_connections_closed_total{{reason="{reason}"}}'


def test_f10_get_with_a_huge_content_length_is_refused_and_closed(limited):
    with connect(limited.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 99999999999\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
    assert b"has no body" in reply
    # a body over http.max_body on the admin API: 413 without reading it
    with connect(limited.admin_port) as sock:
        sock.sendall(b"POST /api/v1/import HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/yaml\r\nContent-Length: 99999999999\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert metric(limited, closed("body_refused")) == 2


def test_f14_malformed_requests_are_counted_and_logged_in_the_log_format(limited):
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
           b"GET /\x00 HTTP/1.1\r\n\r\n",
           b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n"]
    for i in range(30):
        with connect(limited.port) as sock:
            sock.sendall(bad[i % len(bad)])
            reply = read_until_closed(sock)
        assert re.match(rb"HTTP/1.[01] 400 ", reply), reply[:100]
    counted = sum(metric(limited, f'bootyard_http_bad_requests_total{{reason="{r}"}}')
                  for r in ("malformed", "too_long", "not_http"))
    assert counted == 30
    log = limited.log.read_text()
    assert "Traceback" not in log
    assert all(line.startswith("ts=") for line in log.splitlines() if line.strip()), log[-3000:]
    lines = [line for line in log.splitlines() if "event=bad_request" in line]
    assert 1 <= len(lines) <= 10, len(lines)  # rate-limited: at most 10 a minute
    assert all("ip=127.0.0.1" in line and "reason=" in line for line in lines)


def test_f15_a_request_head_that_never_ends_is_closed(limited):
    with connect(limited.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        reply = read_until_closed(sock)  # header_timeout (0.5 s), before idle_timeout (1.5 s)
    assert reply == b""
    assert metric(limited, closed("header_timeout")) == 1
    # a slowloris dribbling one byte at a time is closed as well
    with connect(limited.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(1000):
            try:
                sock.sendall(b"X")
                sock.settimeout(0.05)
                if sock.recv(100) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            pytest.fail("the slow request head was never cut off")
    assert metric(limited, closed("header_timeout")) == 2


def test_f15_an_idle_connection_is_closed(limited):
    with connect(limited.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = read_until_closed(sock)  # answered, then closed after idle_timeout
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"ok\n")
    with connect(limited.port) as sock:  # never sends anything
        assert read_until_closed(sock) == b""
    assert metric(limited, closed("idle_timeout")) == 2


def test_f15_connections_over_the_cap_are_closed_at_once(capped):
    limited = capped
    held = [connect(limited.port) for _ in range(4)]
    try:
        for sock in held:  # each is accepted and served
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert metric(limited, "bootyard_http_connections") == 4
        with connect(limited.port) as extra:
            assert read_until_closed(extra) == b""
        assert metric(limited, closed("max_connections")) == 1
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200 ")  # the four still served
    finally:
        for sock in held:
            sock.close()
