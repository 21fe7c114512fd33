"""Process lifecycle shared by every service: arguments, settings, signals, graceful stop.

A service's ``__main__`` is a few lines::

    def main(argv=None) -> int:
        return runtime.run_service("dhcp", DhcpSettings, serve, argv)

where ``serve(settings, stop)`` is a coroutine that starts its tasks in an ``asyncio.TaskGroup``
and returns once ``stop`` (an :class:`asyncio.Event`) is set. SIGTERM and SIGINT set ``stop``;
a service that has not finished ``grace`` seconds later is cancelled. A :class:`StartupError`
(or a :class:`~shared.settings.SettingsError`) ends the process with status 2 and one clear line;
so does an installed aiohttp or prometheus-client of a version bootyard was not tested with
(:mod:`shared.pins`); a :class:`ServiceFailed` raised by ``serve`` ends it with status 1, and so does a
:class:`PortUnavailable` (a port this service must listen on is taken: one log line naming the
port and the setting, no traceback; raise it with :func:`listening`).

Worker processes: :func:`supervise` runs N copies of a service (this same command) that share
their listening ports with ``SO_REUSEPORT``, die with their supervisor, and write their metrics
to one directory, so that every ``/metrics`` of the service (the supervisor's and the workers')
shows the sum over the workers. A worker learns its index from :func:`worker`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from shared import logs, metrics, pins, settings as settings_mod


class StartupError(Exception):
    """The service cannot start as configured; the message tells the operator what to fix."""


class ServiceFailed(Exception):
    """The running service failed and must end with status 1 (a supervisor restarts it); the
    message says what happened."""


class PortUnavailable(Exception):
    """A port the service must listen on cannot be bound (taken by another process, or not
    permitted): the service ends with status 1 after one log line naming the port and the
    setting that chooses it."""

    def __init__(self, setting: str, host: str, port: int, proto: str, reason: str) -> None:
        self.setting, self.host, self.port, self.proto, self.reason = \
            setting, host, port, proto, reason
        super().__init__(f"cannot listen on {proto.upper()} {host}:{port} ({setting}): {reason}")

    def fields(self) -> dict[str, Any]:
        fix = f"stop the other process on {self.proto} port {self.port} or change {self.setting}"
        if self.port < 1024 and "denied" in self.reason.lower():
            fix = f"run as root or with CAP_NET_BIND_SERVICE, or change {self.setting}"
        return {"setting": self.setting, "host": self.host, "port": self.port,
                "proto": self.proto, "reason": self.reason, "fix": fix}


@contextlib.contextmanager
def listening(setting: str, host: str, port: int, proto: str = "tcp") -> Iterator[None]:
    """Turn an OSError from binding ``host:port`` (chosen by ``setting``) into
    :class:`PortUnavailable`::

        with runtime.listening("http.admin_port", cfg.admin_host, cfg.admin_port):
            await site.start()
    """
    try:
        yield
    except OSError as exc:
        cause: BaseException | None = exc
        while cause is not None and not getattr(cause, "errno", None):
            cause = cause.__cause__ or cause.__context__  # uvloop wraps the bind error
        reason = os.strerror(cause.errno) if cause is not None else str(exc)
        raise PortUnavailable(setting, host, port, proto, reason) from None


def use_uvloop() -> bool:
    """Run the service's event loop on uvloop when it is installed (a dependency of bootyard);
    services whose time is mostly per-datagram event-loop work call this before
    :func:`run_service` (docs/benchmarks.md has the figures). Returns whether it is in use."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


GC_THRESHOLDS = (10_000, 10, 100)  # CPython's defaults: (700, 10, 10)


def tune_gc() -> None:
    """Fewer cyclic garbage collections, for a long-running service (:func:`run_service` calls
    it). Reference counting frees nearly every object of a request; the cycle collector is only
    there for the rare cycle, but with CPython's defaults it also walked the whole long-lived heap
    (inventory cache, the DHCP offer memory and lease journal, ...) often enough to cost the DHCP
    service ~6 us of its ~46 us per DORA exchange (docs/benchmarks.md). What exists when this
    runs (modules, settings) is frozen out of collections; what the service builds later is not,
    but young collections now run every 10,000 allocations instead of 700, and full ones every
    10,000 x 10 x 100 allocations instead of 70,000 (about 140x rarer)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def parse_args(service: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        description=f"bootyard {service} service. Settings come from --config (or "
                    f"BOOTYARD_CONFIG) and BOOTYARD_<SECTION>__<KEY> environment variables.")
    parser.add_argument("--config", help="YAML settings file")
    parser.add_argument("--check-config", action="store_true",
                        help="load and validate the settings, print them, and exit")
    return parser.parse_args(argv)


def run_service(service: str, settings_cls: type,
                serve: Callable[[Any, asyncio.Event], Awaitable[None]],
                argv: Sequence[str] | None = None, grace: float = 5.0) -> int:
    args = parse_args(service, argv)
    notes: list[str] = []
    try:
        cfg = settings_mod.load_settings(settings_cls, args.config, os.environ, notes=notes)
    except settings_mod.SettingsError as exc:
        print(f"bootyard {service}: settings error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        for note in notes:
            print(f"# {note}")
        for key, value in sorted(_flatten(cfg).items()):
            print(f"{key} = {value!r}")
        return 0
    logs.configure(cfg.log.format, cfg.log.level)
    log = logs.get_logger(service)
    untested = pins.untested()
    if untested:
        package, found, tested = untested[0]
        log.error("untested_dependency", package=package, found=found, tested=",".join(tested),
                  fix=f"install {package}=={tested[-1]} (pip install -c constraints.txt); a new "
                      f"version needs the tests and an entry in shared/pins.py")
        return 2
    for note in notes:
        log.warning("setting_renamed", note=note)
    _become_worker(log)
    tune_gc()
    try:
        asyncio.run(_main(serve, cfg, grace, log))
    except BaseException as raised:
        exc = _decisive(raised)
        if isinstance(exc, KeyboardInterrupt):
            pass
        elif isinstance(exc, PortUnavailable):
            log.error("port_unavailable", **exc.fields())
            return 1
        elif isinstance(exc, StartupError):
            log.error("startup_failed", reason=str(exc))
            print(f"bootyard {service}: cannot start: {exc}", file=sys.stderr)
            return 2
        elif isinstance(exc, ServiceFailed):
            log.error("failed", reason=str(exc))
            print(f"bootyard {service}: failed: {exc}", file=sys.stderr)
            return 1
        else:
            raise
    log.info("stopped")
    return 0


_EXPECTED = (PortUnavailable, StartupError, ServiceFailed, KeyboardInterrupt)


def _decisive(exc: BaseException) -> BaseException:
    """The exception that decides how the service ends: ``exc`` itself, or the first expected
    one (a taken port, a start-up refusal, ...) inside the exception groups a TaskGroup raises."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _decisive(inner)
            if isinstance(found, _EXPECTED):
                return found
    return exc


async def _main(serve, cfg, grace: float, log: logs.EventLogger) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("stopping", signal=sig.name, grace_s=grace)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    task = asyncio.create_task(serve(cfg, stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopper.cancel()
        task.result()  # re-raise a start-up failure
        return
    try:
        await asyncio.wait_for(task, grace)
    except TimeoutError:
        log.warning("stop_timeout", grace_s=grace)


# -- worker processes ------------------------------------------------------------------------------

WORKER_ENV = "_BOOTYARD_WORKER"  # "<index>:<count>:<supervisor pid>", set for workers only
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when it is imported


@dataclasses.dataclass(frozen=True)
class Worker:
    index: int  # 0 .. count-1
    count: int
    supervisor: int  # its pid


_WORKER: Worker | None = None


def worker() -> Worker | None:
    """This process's place among its service's workers, or None when it is not a worker (one
    process serving alone, or a supervisor)."""
    return _WORKER


def _become_worker(log: logs.EventLogger) -> None:
    """In a process started by :func:`supervise`: die with the supervisor, and show the summed
    metrics of every worker on this process's ``/metrics`` too."""
    global _WORKER
    spec = os.environ.get(WORKER_ENV)
    if not spec:
        return
    index, count, supervisor = (int(part) for part in spec.split(":"))
    _WORKER = Worker(index, count, supervisor)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PDEATHSIG
    except (OSError, AttributeError):
        log.warning("parent_death_signal_unavailable", effect="this worker may outlive its "
                    "supervisor if the supervisor is killed")
    if os.getppid() != supervisor:  # it ended before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    if os.environ.get(MULTIPROC_ENV):
        metrics.multiprocess_registry(os.environ[MULTIPROC_ENV])


async def supervise(service: str, count: int, stop: asyncio.Event, *, metrics_host: str,
                    metrics_port: int | None, metrics_setting: str, grace: float = 4.0,
                    command: Sequence[str] | None = None) -> None:
    """Run ``count`` worker processes of ``service`` (``python -m services.<service>`` with this
    process's arguments and environment) until ``stop``, and serve their summed ``/metrics`` and a
    ``/healthz`` (200 while every worker runs) on ``metrics_host:metrics_port`` (None: no
    listener). A worker that ends on its own ends the service with :class:`ServiceFailed`
    (status 1) after stopping the others, so that systemd or Docker restarts the whole service.
    On ``stop`` the workers get SIGTERM, and SIGKILL after ``grace`` seconds. ``command``
    replaces the worker command line (tests)."""
    log = logs.get_logger(service)
    metrics_dir = tempfile.mkdtemp(prefix=f"bootyard-{service}-metrics-")
    metrics.multiprocess_registry(metrics_dir)
    workers: list[asyncio.subprocess.Process] = []
    runner = None
    try:
        if metrics_port is not None:
            with listening(metrics_setting, metrics_host, metrics_port):
                runner = await metrics.start_metrics_server(
                    metrics_host, metrics_port, health=lambda: len(workers) == count and all(
                        w.returncode is None for w in workers))
        for index in range(count):
            env = dict(os.environ, **{WORKER_ENV: f"{index}:{count}:{os.getpid()}",
                                       MULTIPROC_ENV: metrics_dir})
            argv = command or (sys.executable, "-m", f"services.{service}", *sys.argv[1:])
            workers.append(await asyncio.create_subprocess_exec(*argv, env=env))
            log.info("worker_started", worker=index, pid=workers[-1].pid)
        waits = {asyncio.ensure_future(w.wait()): i for i, w in enumerate(workers)}
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for wait in waits:
            wait.cancel()
        if stopper not in done:
            index = min(waits[w] for w in done)
            dead = workers[index]
            log.error("worker_exited", worker=index, pid=dead.pid, status=dead.returncode,
                      fix="see the worker's log lines above; the service exits so that its "
                          "supervisor restarts it")
            raise ServiceFailed(f"{service} worker {index} (pid {dead.pid}) exited with status "
                                f"{dead.returncode}")
    finally:
        await _stop_workers(workers, grace, log)
        if runner is not None:
            await runner.cleanup()
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _stop_workers(workers: list, grace: float, log: logs.EventLogger) -> None:
    for proc in workers:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    cancelled = False
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in workers)), grace)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        cancelled = True
    for proc in workers:
        if proc.returncode is None:
            log.warning("worker_killed", pid=proc.pid, grace_s=grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    if cancelled:
        raise asyncio.CancelledError


def _flatten(cfg: Any) -> dict[str, Any]:
    import dataclasses

    out = {}
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        for fld in dataclasses.fields(value):
            shown = getattr(value, fld.name)
            if fld.metadata.get("secret"):
                shown = "<set>" if shown else "<empty>"
            elif isinstance(shown, str) and "://" in shown:
                shown = hide_password(shown)
            out[f"{section.name}.{fld.name}"] = shown
    return out


def hide_password(url: str) -> str:
    """``url`` with the password of its user-info part (redis://:pw@host) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}{slash}{path}"
