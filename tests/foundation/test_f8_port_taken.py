"""F8 (issue 13): a port a service must listen on is taken at start-up. Every service, every
port: one clear log line (which port, which setting to change), exit status 1, no traceback, and
no half-started service left running.

HTTP and TFTP run on loopback here; DHCP binds its interface's ports, so it runs in a network
namespace of the lab (root), as the DHCP tests run it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.dhcpkit import unix_redis  # noqa: F401 - pytest fixture

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import socket, sys; kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3]); "
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == 'udp' else "
        "socket.SOCK_STREAM); s.bind((host, port)); kind == 'tcp' and s.listen(); "
        "print('held', flush=True); sys.stdin.read()")


def free_port(kind: str = "tcp") -> int:
    with socket.socket(socket.AF_INET,
                       socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hold(kind: str, host: str, port: int, ns=None) -> subprocess.Popen:
    """A process holding ``kind`` port ``host:port`` (plain bind, no SO_REUSEPORT) until its
    stdin closes."""
    argv = [sys.executable, "-c", HOLD, kind, host, str(port)]
    proc = subprocess.Popen(ns.cmd(*argv) if ns else argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def check_exit(result: subprocess.CompletedProcess, setting: str, port: int) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    taken = [line for line in lines if "event=port_unavailable" in line]
    assert len(taken) == 1, result.stderr
    assert f"setting={setting}" in taken[0] and f"port={port}" in taken[0], taken[0]
    assert re.search(r"reason=\"?Address already in use", taken[0]), taken[0]
    assert "fix=" in taken[0]
    assert all(line.startswith("ts=") for line in lines), result.stderr  # the log format only


def run_service(argv, env, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=timeout)


def base_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({"BOOTYARD_REDIS_URL": redis_url, "PYTHONPATH": str(REPO)})
    return env


@pytest.mark.parametrize("setting", ["port", "admin_port", "metrics_port"])
def test_f8_http_port_taken(redis_url, tmp_path, setting):
    ports = {name: free_port() for name in ("port", "admin_port", "metrics_port")}
    env = base_env(redis_url)
    env.update({f"BOOTYARD_HTTP__{k.upper()}": str(v) for k, v in ports.items()})
    env.update({"BOOTYARD_HTTP__HOST": "127.0.0.1", "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
                "BOOTYARD_HTTP__TOKEN_SECRET": "s" * 32,
                "BOOTYARD_HTTP__TEMPLATES_DIR": str(REPO / "templates")})
    holder = hold("tcp", "127.0.0.1", ports[setting])
    try:
        result = run_service([sys.executable, "-m", "services.http"], env)
    finally:
        holder.stdin.close()
        holder.wait()
    check_exit(result, f"http.{setting}", ports[setting])


@pytest.mark.parametrize("setting,kind", [("port", "udp"), ("metrics_port", "tcp")])
def test_f8_tftp_port_taken(redis_url, tmp_path, setting, kind):
    ports = {"port": free_port("udp"), "metrics_port": free_port()}
    env = base_env(redis_url)
    env.update({"BOOTYARD_TFTP__PORT": str(ports["port"]), "BOOTYARD_TFTP__BIND": "127.0.0.1",
                "BOOTYARD_TFTP__METRICS_PORT": str(ports["metrics_port"]),
                "BOOTYARD_TFTP__METRICS_HOST": "127.0.0.1", "BOOTYARD_TFTP__ROOT": str(tmp_path)})
    holder = hold(kind, "127.0.0.1", ports[setting])
    try:
        result = run_service([sys.executable, "-m", "services.tftp"], env)
    finally:
        holder.stdin.close()
        holder.wait()
    check_exit(result, f"tftp.{setting}", ports[setting])


@pytest.mark.lab
@pytest.mark.parametrize("setting,kind,port", [("server_port", "udp", 67),
                                               ("boot_server_port", "udp", 4011),
                                               ("metrics_port", "tcp", 9101)])
def test_f8_dhcp_port_taken(lab, unix_redis, setting, kind, port):  # noqa: F811 - fixture
    seg = lab.segment()
    env = base_env(unix_redis.url)
    env.update({"BOOTYARD_DHCP__INTERFACES": "eth0", "BOOTYARD_DHCP__PROXY": "yes",
                "BOOTYARD_DHCP__METRICS_HOST": "127.0.0.1"})
    holder = hold(kind, "127.0.0.1" if kind == "tcp" else "0.0.0.0", port, seg.server)
    try:
        result = run_service(seg.server.cmd(sys.executable, "-m", "services.dhcp"), env)
    finally:
        holder.stdin.close()
        holder.wait()
    check_exit(result, f"dhcp.{setting}", port)


def test_old_dhcp_workers_key_still_works_with_a_note():
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({"BOOTYARD_DHCP__WORKERS": "2", "PYTHONPATH": str(REPO)})
    result = run_service([sys.executable, "-m", "services.dhcp", "--check-config"], env)
    assert result.returncode == 0, result.stderr
    assert "dhcp.batches_in_flight = 2" in result.stdout
    assert "# dhcp.workers (from environment BOOTYARD_DHCP__WORKERS) is now called " \
           "dhcp.batches_in_flight" in result.stdout
