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
STDOUT_KEPT = 32 << 20  # bytes of rsync's stdout kept (the first sync of a big mirror itemizes
STDOUT_TAIL = 64 << 10  # every file): beyond it only the last STDOUT_TAIL (--stats) are kept
_BACKGROUND: set[asyncio.Future] = set()


@dataclasses.dataclass(frozen=True)
class RsyncRun:
    code: int              # exit status; negative: killed by that signal
    stdout: str
    stderr: str            # its last STDERR_KEPT characters
    stopped: str | None    # why we stopped it: "deadline" or the reason watch() returned
    truncated: bool = False  # stdout was longer than STDOUT_KEPT: its middle is not kept


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
                    stall: float | None = None, grace: float = 5.0,
                    stop_on: Callable[[bytes], str | None] | None = None) -> RsyncRun:
    """Run rsync (see the module's text). ``stop_on`` is shown rsync's output as it comes
    (each new piece with the end of the one before); a reason it returns stops rsync at once
    and is the run's ``stopped``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent)
    seen: list[str] = []
    out_task = asyncio.ensure_future(_read_all(proc, stop_on, seen, grace))
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
    out, truncated = await out_task
    stderr = await err_task
    return RsyncRun(proc.returncode, out.decode("utf-8", errors="replace"), stderr,
                    stopped or (seen[0] if seen else None), truncated)


async def _read_all(proc: asyncio.subprocess.Process, stop_on, seen: list[str],
                    grace: float) -> tuple[bytes, bool]:
    """rsync's stdout (its first STDOUT_KEPT bytes, then only the last STDOUT_TAIL: whether
    some was dropped), shown to ``stop_on`` as it comes."""
    chunks: list[bytes] = []
    kept = 0
    rolling = b""
    truncated = False
    tail = b""
    while chunk := await proc.stdout.read(1 << 16):
        if not truncated and kept + len(chunk) <= STDOUT_KEPT:
            chunks.append(chunk)
            kept += len(chunk)
        else:
            truncated = True
            rolling = (rolling + chunk)[-STDOUT_TAIL:]
        if stop_on is not None and not seen:
            piece = tail + chunk
            reason = stop_on(piece)
            if reason:
                seen.append(reason)
                stopping = asyncio.ensure_future(_stop(proc, grace))
                _BACKGROUND.add(stopping)
                stopping.add_done_callback(_BACKGROUND.discard)
            tail = piece[-4096:]
    if truncated:  # the last whole lines only
        rolling = rolling[rolling.find(b"\n") + 1:]
        chunks.append(b"\n" + rolling)
    return b"".join(chunks), truncated


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
