#!/usr/bin/env python3
"""A/B of two versions of the HTTP service in one run: this checkout ("new") and another
checkout of the repository ("old", e.g. `git worktree add --detach /tmp/old <commit>`), side by
side on one Redis with the same 200 hosts and the same wrk client, alternating, for per-host iPXE
scripts and token-authorised kickstarts at 32 connections (docs/benchmarks.md). A change's effect
on the render fast path shows here even on a busy machine, where two separate `make bench-http`
runs differ by the machine's load more than by the code.

    flock /tmp/bootyard-bench.lock .venv/bin/python scripts/bench/http_ab.py /tmp/old

Environment: D (seconds per run, 4), R (rounds, 4), W (http.workers of both, 1).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(NEW / "scripts"), str(NEW), str(NEW / "tests")]

import bench_http as bench  # noqa: E402

from harness.redis_server import RedisServer  # noqa: E402
from services.http.access import host_token  # noqa: E402

SECRET = "ab-secret"


def start(repo: Path, redis_url: str, images: Path) -> tuple[subprocess.Popen, str]:
    port = bench.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({"PYTHONPATH": str(repo), "BOOTYARD_REDIS_URL": redis_url,
                "BOOTYARD_HTTP__HOST": "127.0.0.1", "BOOTYARD_HTTP__PORT": str(port),
                "BOOTYARD_HTTP__ADMIN_ENABLED": "false",
                "BOOTYARD_HTTP__METRICS_PORT": str(port),
                "BOOTYARD_HTTP__TOKEN_SECRET": SECRET,
                "BOOTYARD_HTTP__IMAGES_ROOT": str(images),
                "BOOTYARD_HTTP__TEMPLATES_DIR": str(NEW / "templates"),
                "BOOTYARD_HTTP__WORKERS": os.environ.get("W", "1"),
                "BOOTYARD_LOG__LEVEL": "warning"})
    proc = subprocess.Popen([sys.executable, "-m", "services.http"], cwd=repo, env=env)
    base = f"http://127.0.0.1:{port}"
    bench.wait_http(base + "/healthz", proc, str(repo))
    return proc, base


def main() -> int:
    if len(sys.argv) != 2:
        raise SystemExit("usage: http_ab.py OLD_CHECKOUT")
    old = Path(sys.argv[1]).resolve()
    bench.DURATION = int(os.environ.get("D", "4"))
    rounds = int(os.environ.get("R", "4"))
    tmp = Path(tempfile.mkdtemp(prefix="bootyard-http-ab-"))
    tmp.chmod(0o755)
    redis = RedisServer(tmp / "redis")
    procs: list[subprocess.Popen] = []
    try:
        redis.start()
        bench.bootyard_cli(redis.url, "profile", "add", "rocky9", "--kernel", "rocky/vmlinuz",
                           "--initrd", "rocky/initrd.img", "--install", "kickstart",
                           "--cmdline", "inst.ks={{ urls.kickstart }} inst.ks.sendmac "
                           "console={{ vars.console | default('ttyS0') }}",
                           "--var", "root_password_hash=$6$rounds=4096$salt$hash")
        macs = [f"52:54:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(bench.HOSTS)]
        (tmp / "hosts.yaml").write_text("hosts:\n" + "".join(
            f"  '{mac}': {{hostname: node{i}, ip: 10.1.{i // 250}.{i % 250 + 1}, "
            f"profile: rocky9}}\n" for i, mac in enumerate(macs)))
        bench.bootyard_cli(redis.url, "import", str(tmp / "hosts.yaml"))
        bases = {}
        for name, repo in (("old", old), ("new", NEW)):
            proc, bases[name] = start(repo, redis.url, tmp)
            procs.append(proc)
        time.sleep(1.0)  # let every worker load the inventory
        cases = {"script": [f"/boot/{mac}.ipxe" for mac in macs],
                 "kickstart": [f"/install/{mac}/ks.cfg?token={host_token(SECRET, mac)}"
                               for mac in macs]}
        lua = tmp / "paths.lua"
        results: dict[tuple[str, str], list[float]] = {}
        for round_no in range(rounds):
            for case, paths in cases.items():
                (tmp / f"{case}.paths").write_text("\n".join(paths) + "\n")
                lua.write_text(bench.WRK_LUA % (tmp / f"{case}.paths"))
                for who in ("old", "new") if round_no % 2 == 0 else ("new", "old"):
                    r = bench.wrk(bases[who], tmp / f"{case}.paths", lua, 32)
                    value = r["requests"] / (r["us"] / 1e6)
                    results.setdefault((case, who), []).append(value)
                    print(f"round {round_no + 1} {case:<9} {who} {value:9.0f} req/s "
                          f"errors={r['errors']}", flush=True)
        for case in cases:
            before = statistics.median(results[case, "old"])
            after = statistics.median(results[case, "new"])
            print(f"{case:<9} old={before:.0f} new={after:.0f} new/old={after / before:.2f}")
        return 0
    finally:
        bench.stop_all(procs)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
