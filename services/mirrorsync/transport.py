"""rsync as a subprocess: an argument list (never a shell), bounded time, watched while it runs.

:func:`run_rsync` starts rsync in its own process group, with the kernel set to kill it if this
service dies (``PR_SET_PDEATHSIG``: a ``kill -9`` of the service leaves no rsync writing into a
partial snapshot), checks ``watch()`` every ``poll`` seconds (the caller renews its lock and looks
at the free disk space there; a reason returned stops rsync) and stops it at the overall
``deadline``, or as ``stalled`` when rsync's processes received nothing for ``stall``
seconds (their ``/proc/<pid>/io`` read counters: rsync's own ``--timeout`` does not always fire, e.g.
when the upstream daemon is stopped mid-transfer). Stopping is SIGTERM to the group, then SIGKILL
after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

STDERR_KEPT = 4000  # last bytes of rsync's stderr kept for the failure message


@dataclasses.dataclass(frozen=True)
class RsyncRun:
    code: int              # exit status; negative: killed by that signal
    stdout: str
    stderr: str            # its last STDERR_KEPT characters
    stopped: str | None    # why we stopped it: "deadline" or the reason watch() returned


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def io_counter(pid: int) -> int | None:
    """Bytes read so far by ``pid`` and its children (None if unreadable)."""
    pids = [pid]
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    total, found = 0, False
    for p in pids:
        try:
            with open(f"/proc/{p}/io") as f:
                for line in f:
                    if line.startswith("rchar:"):  # received (keepalives sent to a dead peer still go out)
                        total += int(line.split()[1])
                        found = True
        except OSError:
            continue
    return total if found else None


async def run_rsync(argv: Sequence[str], *, deadline: float, poll: float = 1.0,
                    watch: Callable[[], Awaitable[str | None]] | None = None,
                    stall: float | None = None, grace: float = 5.0) -> RsyncRun:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent)
    out_task = asyncio.ensure_future(proc.stdout.read())
    err_task = asyncio.ensure_future(_tail(proc.stderr))
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    stopped = None
    last_io, last_change = None, loop.time()
    try:
        while proc.returncode is None:
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()),
                                       max(min(poll, end - loop.time()), 0.01))
                break
            except TimeoutError:
                pass
            counter = io_counter(proc.pid) if stall else None
            if counter is not None and counter != last_io:
                last_io, last_change = counter, loop.time()
            if loop.time() >= end:
                stopped = "deadline"
            elif stall and loop.time() - last_change >= stall:
                stopped = "stalled"
            elif watch is not None:
                stopped = await watch()
            if stopped:
                await _stop(proc, grace)
                break
    except BaseException:
        await _stop(proc, grace)
        raise
    finally:
        await proc.wait()
    stdout = (await out_task).decode("utf-8", errors="replace")
    stderr = await err_task
    return RsyncRun(proc.returncode, stdout, stderr, stopped)


async def run_capture(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run a short command (``rsync --list-only``): (status, stdout, stderr); status -9 and a
    message when it took longer than ``timeout``."""
    run = await run_rsync(argv, deadline=timeout)
    if run.stopped:
        return -9, run.stdout, f"no answer within {timeout:.0f} s"
    return run.code, run.stdout, run.stderr


async def _tail(stream: asyncio.StreamReader) -> str:
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-STDERR_KEPT:]
    return kept.decode("utf-8", errors="replace")


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
