"""Process lifecycle shared by every service: arguments, settings, signals, graceful stop.

A service's ``__main__`` is a few lines::

    def main(argv=None) -> int:
        return runtime.run_service("dhcp", DhcpSettings, serve, argv)

where ``serve(settings, stop)`` is a coroutine that starts its tasks in an ``asyncio.TaskGroup``
and returns once ``stop`` (an :class:`asyncio.Event`) is set. SIGTERM and SIGINT set ``stop``;
a service that has not finished ``grace`` seconds later is cancelled. A :class:`StartupError`
(or a :class:`~shared.settings.SettingsError`) ends the process with status 2 and one clear line;
a :class:`ServiceFailed` raised by ``serve`` ends it with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shared import logs, settings as settings_mod


class StartupError(Exception):
    """The service cannot start as configured; the message tells the operator what to fix."""


class ServiceFailed(Exception):
    """The running service failed and must end with status 1 (a supervisor restarts it); the
    message says what happened."""


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
    try:
        cfg = settings_mod.load_settings(settings_cls, args.config, os.environ)
    except settings_mod.SettingsError as exc:
        print(f"bootyard {service}: settings error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        for key, value in sorted(_flatten(cfg).items()):
            print(f"{key} = {value!r}")
        return 0
    logs.configure(cfg.log.format, cfg.log.level)
    log = logs.get_logger(service)
    tune_gc()
    try:
        asyncio.run(_main(serve, cfg, grace, log))
    except StartupError as exc:
        log.error("startup_failed", reason=str(exc))
        print(f"bootyard {service}: cannot start: {exc}", file=sys.stderr)
        return 2
    except ServiceFailed as exc:
        log.error("failed", reason=str(exc))
        print(f"bootyard {service}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    log.info("stopped")
    return 0


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
