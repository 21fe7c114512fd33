import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from shared import metrics

SERVICE = textwrap.dedent('''
    import asyncio, dataclasses, sys
    from shared import metrics, runtime
    from shared.settings import CommonSettings, setting

    @dataclasses.dataclass(frozen=True)
    class ToySection:
        metrics_port: int = setting(0)
        refuse: bool = setting(False)
        password: str = setting("", secret=True)

    @dataclasses.dataclass(frozen=True)
    class ToySettings(CommonSettings):
        toy: ToySection = dataclasses.field(default_factory=ToySection)

    async def serve(cfg, stop):
        if cfg.toy.refuse:
            raise runtime.StartupError("no interface configured: set toy.interfaces")
        runner = await metrics.start_metrics_server("127.0.0.1", cfg.toy.metrics_port)
        print("PORT", metrics.bound_port(runner), flush=True)
        await stop.wait()
        await runner.cleanup()
        print("CLEAN", flush=True)

    sys.exit(runtime.run_service("toy", ToySettings, serve, sys.argv[1:]))
''')


def run_toy(tmp_path, env=None, args=()):
    script = tmp_path / "toy.py"
    script.write_text(SERVICE)
    full_env = {**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})}
    return subprocess.Popen([sys.executable, str(script), *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_service_serves_metrics_and_stops_gracefully_on_sigterm(tmp_path):
    proc = run_toy(tmp_path)
    line = proc.stdout.readline()
    assert line.startswith("PORT"), proc.stderr.read()
    port = int(line.split()[1])
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "bootyard_redis_errors_total" in body and 'operation="leases"' in body
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "CLEAN" in out and "event=stopping" in err


def test_settings_error_exits_2_before_anything_starts(tmp_path):
    proc = run_toy(tmp_path, env={"BOOTYARD_TOY__METRICS_PORT": "http"})
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "PORT" not in out
    assert "toy.metrics_port = 'http' (from environment BOOTYARD_TOY__METRICS_PORT)" in err


def test_startup_error_is_one_clear_line(tmp_path):
    proc = run_toy(tmp_path, env={"BOOTYARD_TOY__REFUSE": "yes"})
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert "bootyard toy: cannot start: no interface configured: set toy.interfaces" in err


def test_check_config_prints_settings(tmp_path):
    proc = run_toy(tmp_path, env={"BOOTYARD_REDIS_URL": "redis://x:1/0"}, args=("--check-config",))
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "redis.url = 'redis://x:1/0'" in out


def test_check_config_hides_secrets(tmp_path):
    proc = run_toy(tmp_path, env={"BOOTYARD_REDIS_URL": "redis://app:hunter2@x:1/0",
                                  "BOOTYARD_TOY__PASSWORD": "swordfish"}, args=("--check-config",))
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "redis.url = 'redis://app:***@x:1/0'" in out
    assert "toy.password = '<set>'" in out
    assert "hunter2" not in out and "swordfish" not in out


def test_metric_declarations_are_checked_and_preinitialised():
    with pytest.raises(ValueError, match="bootyard_<service>_<noun>"):
        metrics.counter("dhcp_packets_total", "x")
    with pytest.raises(ValueError, match="must end in _total"):
        metrics.counter("bootyard_test_packets", "x")
    counter = metrics.counter("bootyard_test_things_total", "things",
                              {"direction": ("in", "out"), "type": ("a", "b")})
    body = metrics.exposition()[0].decode()
    for direction in ("in", "out"):
        for kind in ("a", "b"):
            assert f'bootyard_test_things_total{{direction="{direction}",type="{kind}"}} 0.0' in body
    counter.labels("in", "a").inc()
    assert 'bootyard_test_things_total{direction="in",type="a"} 1.0' in metrics.exposition()[0].decode()


def test_kv_and_json_log_lines(capsys):
    import json

    from shared import logs
    logs.configure("kv", "debug")
    logs.get_logger("dhcp").info("ack", mac="52:54:00:12:34:56", reason="a b")
    logs.configure("json", "info")
    logs.get_logger("dhcp").debug("hidden")
    logs.get_logger("dhcp").warning("nak", ip="10.0.0.1")
    err = capsys.readouterr().err.splitlines()
    assert 'level=info logger=bootyard.dhcp event=ack mac=52:54:00:12:34:56 reason="a b"' in err[0]
    body = json.loads(err[1])
    assert body["event"] == "nak" and body["ip"] == "10.0.0.1" and body["level"] == "warning"
    assert len(err) == 2


def test_info_each_writes_what_info_writes(capsys):
    import io
    import logging

    from shared import logs
    rows = [{"mac": "52:54:00:12:34:56", "ip": "10.0.0.5", "boot_file": "undionly.kpxe",
             "relay": None, "reserved": False},
            {"mac": "52:54:00:12:34:57", "ip": "10.0.0.6", "boot_file": "http://x/a b"},
            # repeated values (formatted once per batch) and an unhashable one
            {"mac": "52:54:00:12:34:58", "ip": "10.0.0.5", "boot_file": "undionly.kpxe",
             "tags": ["a", "b"], "reserved": False},
            # equal but not the same: 1 == 1.0 == True
            {"n": 1}, {"n": 1.0}, {"n": True}]
    log = logs.get_logger("dhcp")
    for fmt in ("kv", "json"):
        one, batch = io.StringIO(), io.StringIO()
        logs.configure(fmt, "info", one)
        for row in rows:
            log.info("ack", **row)
        logs.configure(fmt, "info", batch)
        log.info_each("ack", rows)

        def strip_ts(text):
            return [line.split(" ", 1)[1] if fmt == "kv" else
                    {k: v for k, v in __import__("json").loads(line).items() if k != "ts"}
                    for line in text.splitlines()]
        assert len(batch.getvalue().splitlines()) == 6
        assert strip_ts(batch.getvalue()) == strip_ts(one.getvalue())
    # not routed through the configured handler (e.g. a test capturing records): one record
    # per row, through logging as usual
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("bootyard.other").addHandler(handler)
    try:
        logs.get_logger("other").info_each("ack", rows)
    finally:
        logging.getLogger("bootyard.other").removeHandler(handler)
    assert [r.fields for r in records] == rows
    logs.configure("kv", "warning", io.StringIO())
    logs.get_logger("dhcp").info_each("ack", rows)  # below the level: nothing, no error


def test_info_each_texts_kept_between_batches_are_the_same_lines(monkeypatch):
    """format_rows keeps field texts from one batch to the next (emptied when full): equal
    values of another type, and a batch after it was emptied, still read as info() writes."""
    import io

    from shared import logs
    monkeypatch.setattr(logs, "PAIRS_KEPT", 3)
    log = logs.get_logger("dhcp")
    batches = [[{"n": True, "ip": "10.0.0.5"}], [{"n": 1, "ip": "10.0.0.5"}],
               [{"n": 1.0}], [{"n": True, "ip": "10.0.0.6"}, {"n": "a b"}], [{"n": True}]]
    one, batch = io.StringIO(), io.StringIO()
    logs.configure("kv", "info", one)
    for rows in batches:
        for row in rows:
            log.info("ack", **row)
    logs.configure("kv", "info", batch)
    for rows in batches:
        log.info_each("ack", rows)
    logs.configure("kv", "warning", io.StringIO())

    def strip_ts(text):
        return [line.split(" ", 1)[1] for line in text.splitlines()]
    assert strip_ts(batch.getvalue()) == strip_ts(one.getvalue())
    assert strip_ts(batch.getvalue())[1].endswith("n=1 ip=10.0.0.5")
    assert len(logs._PAIRS) <= 4


def test_tune_gc_freezes_the_start_up_heap_and_collects_less_often():
    import gc

    from shared import runtime
    before = gc.get_threshold()
    try:
        runtime.tune_gc()
        assert gc.get_threshold() == runtime.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert runtime.GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_observe_all_counts_as_observe_does():
    from prometheus_client import CollectorRegistry, Histogram

    from shared.metrics import observe_all
    values = [0.0001, 0.0005, 0.001, 0.0011, 0.05, 0.5, 2.0, 10.0, 0.001, 0.0]
    registry = CollectorRegistry()
    one = Histogram("one_by_one", "x", buckets=(0.0005, 0.001, 0.01, 0.1, 1.0),
                    registry=registry)
    batch = Histogram("all_at_once", "x", buckets=(0.0005, 0.001, 0.01, 0.1, 1.0),
                      registry=registry)
    for v in values:
        one.observe(v)
    observe_all(batch, values[:4])
    observe_all(batch, [])
    observe_all(batch, values[4:])

    def samples(name):
        return [(s.name.split("_")[-1], s.labels.get("le"), s.value)
                for metric in registry.collect() if metric.name == name
                for s in metric.samples if not s.name.endswith("_created")]
    exact = [s for s in samples("all_at_once") if s[0] != "sum"]
    assert exact == [s for s in samples("one_by_one") if s[0] != "sum"]
    assert ("count", None, 10.0) in exact and ("bucket", "0.001", 5.0) in exact
    (batch_sum,), (one_sum,) = ([s[2] for s in samples(n) if s[0] == "sum"]
                                for n in ("all_at_once", "one_by_one"))
    assert abs(batch_sum - one_sum) < 1e-9


WORKERS = textwrap.dedent('''
    import asyncio, dataclasses, os, sys
    from shared import metrics, runtime
    from shared.settings import CommonSettings, setting

    SERVED = metrics.counter("bootyard_toy_served_total", "x")
    UP = metrics.gauge("bootyard_toy_up", "x")

    @dataclasses.dataclass(frozen=True)
    class ToySection:
        metrics_port: int = setting(0)
        workers: int = setting(1)

    @dataclasses.dataclass(frozen=True)
    class ToySettings(CommonSettings):
        toy: ToySection = dataclasses.field(default_factory=ToySection)

    async def serve(cfg, stop):
        worker = runtime.worker()
        if cfg.toy.workers > 1 and worker is None:
            await runtime.supervise("toy", cfg.toy.workers, stop, metrics_host="127.0.0.1",
                                    metrics_port=cfg.toy.metrics_port,
                                    metrics_setting="toy.metrics_port",
                                    command=[sys.executable, __file__])
            return
        SERVED.inc(10 ** worker.index)  # worker 0 counts 1, worker 1 counts 10
        UP.inc()
        # one write(2) of a short line: the two workers share the pipe, and print() may split it
        os.write(1, f"WORKER {worker.index} {worker.count} {os.getpid()}\\n".encode())
        await stop.wait()

    sys.exit(runtime.run_service("toy", ToySettings, serve, sys.argv[1:]))
''')


def test_supervisor_runs_workers_sums_metrics_and_ends_with_them(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(WORKERS)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "BOOTYARD_TOY__WORKERS": "2",
           "BOOTYARD_TOY__METRICS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # the two workers' lines (two processes on one pipe: read by pattern, not by line)
        found: list[list[str]] = []
        for _ in range(10):
            found += [list(m) for m in re.findall(r"WORKER (\d+) (\d+) (\d+)",
                                                  proc.stdout.readline())]
            if len(found) >= 2:
                break
        started = sorted(found)
        assert [s[:2] for s in started] == [["0", "2"], ["1", "2"]]
        pids = [int(s[2]) for s in started]

        def scrape(path):
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
        body = scrape("/metrics").read().decode()
        assert "bootyard_toy_served_total 11.0" in body  # summed over the workers
        assert "bootyard_toy_up 2.0" in body
        assert scrape("/healthz").status == 200
        os.kill(pids[1], signal.SIGKILL)  # a worker dies: the service ends, status 1
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1, err
        assert "event=worker_exited worker=1" in err and "status=-9" in err
        assert "Traceback" not in err
        for pid in pids:
            assert not alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_die_with_a_killed_supervisor(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(WORKERS)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "BOOTYARD_TOY__WORKERS": "2"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    pids = [int(proc.stdout.readline().split()[3]) for _ in range(2)]
    proc.kill()  # SIGKILL: no chance to stop them itself; the parent-death signal does
    proc.wait()
    for pid in pids:
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_add_counts_as_inc_does():
    from prometheus_client import CollectorRegistry, Counter

    from shared.metrics import add
    registry = CollectorRegistry()
    one = Counter("one_by_one", "x", ["kind"], registry=registry)
    batch = Counter("added", "x", ["kind"], registry=registry)
    for kind, n in (("a", 3), ("b", 1), ("a", 2), ("b", 0)):
        one.labels(kind).inc(n)
        add(batch.labels(kind), n)
    assert [(s.labels, s.value) for m in registry.collect() if m.name == "added"
            for s in m.samples if s.name.endswith("_total")] == \
        [(s.labels, s.value) for m in registry.collect() if m.name == "one_by_one"
         for s in m.samples if s.name.endswith("_total")] == [({"kind": "a"}, 5.0),
                                                              ({"kind": "b"}, 1.0)]
