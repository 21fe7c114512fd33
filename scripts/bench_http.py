#!/usr/bin/env python3
"""HTTP benchmark: bootyard's HTTP service against nginx serving the same bytes, same client (wrk).

Everything runs on loopback with its own Redis, nginx config, pid and temp paths. Runs alternate
ours/nginx for ROUNDS rounds; the figure per case is the median over rounds. Cases:

- big: a 512 MiB image, 1 and 32 connections (MB/s);
- script: per-host iPXE scripts, rendered by us per request (cache per inventory version) vs the
  same bytes as static files under nginx (requests/s), over HOSTS different hosts;
- kickstart: per-host kickstarts (token-authorised) vs the same bytes as static files.

Last line: ``RESULT http big_mbps_c32=<ours> nginx=<theirs> ratio_big=<r> ratio_render=<r2>``
(ratio_render: the lower of the script and kickstart ratios).
Environment: BENCH_DURATION (seconds per run, default 5), BENCH_ROUNDS (2), BENCH_WORKERS (2),
BENCH_BIG_MIB (512).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.redis_server import RedisServer  # noqa: E402
from services.http.access import host_token  # noqa: E402

DURATION = int(os.environ.get("BENCH_DURATION", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
BIG_MIB = int(os.environ.get("BENCH_BIG_MIB", "512"))
HOSTS = 200
SECRET = "bench-secret"

WRK_LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("WRKJSON {\\"requests\\": %%d, \\"bytes\\": %%d, \\"us\\": %%d, " ..
    "\\"errors\\": %%d, \\"p50\\": %%d, \\"p99\\": %%d}\\n", summary.requests, summary.bytes,
    summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer {url}")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def bootyard_cli(redis_url: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "cli", "--redis-url", redis_url, *args],
                   check=True, cwd=REPO, capture_output=True)


def wrk(base: str, paths_file: Path, lua: Path, connections: int) -> dict:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--timeout", "10s",
         "-s", str(lua), base], capture_output=True, text=True, timeout=DURATION + 60,
        env=dict(os.environ, BENCH_PATHS=str(paths_file)))
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON "):])
    raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")


def main() -> int:
    if not shutil.which("wrk") or not shutil.which("nginx"):
        raise SystemExit("wrk and nginx are needed: run make install (Debian wrk, nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="bootyard-bench-http-"))
    tmp.chmod(0o755)
    procs: list[subprocess.Popen] = []
    redis = RedisServer(tmp / "redis")
    try:
        redis.start()
        images = tmp / "images"
        (images / "disk").mkdir(parents=True)
        with open(images / "disk" / "big.img", "wb") as out:
            block = os.urandom(1024 * 1024)
            for i in range(BIG_MIB):
                out.write(block[i % 251:] + block[:i % 251])
        templates = tmp / "templates"
        shutil.copytree(REPO / "templates", templates)
        bootyard_cli(redis.url, "profile", "add", "rocky9", "--kernel", "rocky/vmlinuz",
                     "--initrd", "rocky/initrd.img", "--install", "kickstart",
                     "--cmdline", "inst.ks={{ urls.kickstart }} inst.ks.sendmac "
                                  "console={{ vars.console | default('ttyS0') }}",
                     "--var", "root_password_hash=$6$rounds=4096$salt$hash")
        macs = [f"52:54:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(HOSTS)]
        lines = "hosts:\n" + "".join(
            f"  '{mac}': {{hostname: node{i}, ip: 10.1.{i // 250}.{i % 250 + 1}, "
            f"profile: rocky9}}\n" for i, mac in enumerate(macs))
        (tmp / "hosts.yaml").write_text(lines)
        bootyard_cli(redis.url, "import", str(tmp / "hosts.yaml"))

        ours_port, nginx_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        env.update({"BOOTYARD_REDIS_URL": redis.url, "BOOTYARD_HTTP__HOST": "127.0.0.1",
                    "BOOTYARD_HTTP__PORT": str(ours_port),
                    "BOOTYARD_HTTP__ADMIN_ENABLED": "false",
                    "BOOTYARD_HTTP__METRICS_PORT": str(ours_port),
                    "BOOTYARD_HTTP__TOKEN_SECRET": SECRET,
                    "BOOTYARD_HTTP__IMAGES_ROOT": str(images),
                    "BOOTYARD_HTTP__TEMPLATES_DIR": str(templates),
                    "BOOTYARD_HTTP__WORKERS": str(WORKERS),
                    "BOOTYARD_LOG__LEVEL": "warning"})
        ours = subprocess.Popen([sys.executable, "-m", "services.http"], cwd=REPO, env=env)
        procs.append(ours)
        ours_base = f"http://127.0.0.1:{ours_port}"
        wait_http(f"{ours_base}/healthz", ours, "bootyard http")
        time.sleep(1.0)  # let every worker load the inventory

        # the same bytes, as static files for nginx
        static = tmp / "static"
        (static / "boot").mkdir(parents=True)
        (static / "images" / "disk").mkdir(parents=True)
        os.link(images / "disk" / "big.img", static / "images" / "disk" / "big.img")
        script_paths, ks_paths = [], []
        for mac in macs:
            script_paths.append(f"/boot/{mac}.ipxe")
            ks_paths.append(f"/install/{mac}/ks.cfg?token={host_token(SECRET, mac)}")
            (static / "boot" / f"{mac}.ipxe").write_bytes(fetch(ours_base + script_paths[-1]))
            (static / "install" / mac).mkdir(parents=True)
            (static / "install" / mac / "ks.cfg").write_bytes(fetch(ours_base + ks_paths[-1]))
        sample = (static / "install" / macs[0] / "ks.cfg").read_bytes()
        assert b"rootpw --iscrypted" in sample, sample
        for path in static.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        static.chmod(0o755)

        (tmp / "nginx.conf").write_text(NGINX_CONF.format(
            workers=WORKERS, tmp=tmp, port=nginx_port, root=static))
        nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                                 stderr=subprocess.DEVNULL)
        procs.append(nginx)
        nginx_base = f"http://127.0.0.1:{nginx_port}"
        wait_http(f"{nginx_base}/boot/{macs[0]}.ipxe", nginx, "nginx")
        assert fetch(f"{nginx_base}/install/{macs[0]}/ks.cfg?token=x") == sample

        files = {"big": ["/images/disk/big.img"], "script": script_paths, "kickstart": ks_paths}
        lua = tmp / "paths.lua"
        for name, paths in files.items():
            (tmp / f"{name}.paths").write_text("\n".join(paths) + "\n")
        cases = [("big", 1), ("big", 32), ("script", 32), ("kickstart", 32)]
        results: dict[tuple, dict[str, list[float]]] = {c: {"ours": [], "nginx": []}
                                                         for c in cases}
        print(f"# bench-http: {ROUNDS} rounds x {len(cases)} cases x 2 servers, {DURATION}s "
              f"each; ours: {WORKERS} worker(s); nginx: {WORKERS} worker(s); "
              f"big file {BIG_MIB} MiB; {HOSTS} hosts", flush=True)
        for round_no in range(ROUNDS):
            for case in cases:
                name, conns = case
                for who, base in (("ours", ours_base), ("nginx", nginx_base)) if round_no % 2 == 0 \
                        else (("nginx", nginx_base), ("ours", ours_base)):
                    lua.write_text(WRK_LUA % (tmp / f"{name}.paths"))
                    r = wrk(base, tmp / f"{name}.paths", lua, conns)
                    seconds = r["us"] / 1e6
                    value = r["bytes"] / seconds / 1e6 if name == "big" else r["requests"] / seconds
                    results[case][who].append(value)
                    unit = "MB/s" if name == "big" else "req/s"
                    print(f"round {round_no + 1} {name:<9} c{conns:<3} {who:<5} {value:10.1f} "
                          f"{unit}"
                          f"  p50={r['p50'] / 1000:.2f}ms p99={r['p99'] / 1000:.2f}ms "
                          f"errors={r['errors']}", flush=True)
        med = {c: {w: statistics.median(v) for w, v in r.items()} for c, r in results.items()}
        print("# medians")
        for (name, conns), r in med.items():
            unit = "MB/s" if name == "big" else "req/s"
            print(f"{name:<9} c{conns:<3} ours={r['ours']:.1f} nginx={r['nginx']:.1f} {unit} "
                  f"ratio={r['ours'] / r['nginx']:.2f}")
        big = med[("big", 32)]
        ratio_render = min(med[("script", 32)]["ours"] / med[("script", 32)]["nginx"],
                           med[("kickstart", 32)]["ours"] / med[("kickstart", 32)]["nginx"])
        print(f"RESULT http big_mbps_c32={big['ours']:.0f} nginx={big['nginx']:.0f} "
              f"ratio_big={big['ours'] / big['nginx']:.2f} ratio_render={ratio_render:.2f}")
        return 0
    finally:
        stop_all(procs)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Terminate every process, then wait for each (killing one that outlives 10 s)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
