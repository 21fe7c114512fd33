"""IPMI power control through Debian's ``ipmitool`` (IPMI 2.0 RMCP+, ``-I lanplus``).

The pure part builds the argument lists and reads ipmitool's answers (:func:`command`,
:func:`classify`, :func:`parse_status`); :func:`run` runs one action with
``asyncio.create_subprocess_exec`` (an argument list, never a shell). The password goes to
ipmitool in its environment (``IPMI_PASSWORD`` with ``-E``), never on its command line, where
``ps`` would show it.

Actions (docs/power.md):

- ``status``: ``chassis power status`` -> on / off.
- ``on``: status first; already on: nothing (outcome ``already``); else ``chassis bootdev
  pxe`` (one-time: the BMC clears it after the next boot) unless PXE is not wanted, then
  ``chassis power on``.
- ``off``: ``chassis power off`` (hard; already off: ``already``).
- ``cycle``: ``chassis bootdev pxe``, then ``chassis power cycle`` when on, ``chassis power on``
  when off (a BMC refuses a cycle of a machine that is off).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from shared.power import IPMI_PORT, PowerError, Result, Target

TOOL = "ipmitool"
TIMEOUT = 2  # seconds ipmitool waits for each answer (-N) ...
RETRIES = 2  # ... and how often it asks again (-R)
# RMCP+ cipher suite (-C): 3 (HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) is the one IPMI 2.0 BMCs
# support; without -C, ipmitool 1.8.19 first asks the BMC for its cipher suites, which many
# (ipmi_sim among them) do not answer: seconds lost on every command.
CIPHER_SUITE = 3


def command(target: Target, *words: str, tool: str = TOOL,
            cipher_suite: int = CIPHER_SUITE) -> list[str]:
    """ipmitool's argument list for ``chassis <words>`` on ``target``'s BMC (verbose, so that
    an authentication failure says so); the password comes from the environment."""
    argv = [tool, "-I", "lanplus", "-C", str(cipher_suite), "-H", target.host,
            "-p", str(target.port or IPMI_PORT), "-U", target.user, "-E",
            "-N", str(TIMEOUT), "-R", str(RETRIES), "-v"]
    return argv + ["chassis", *words]


def environment(target: Target) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME")}
    env["IPMI_PASSWORD"] = target.secret
    return env


# What ipmitool -v prints, and what it means (ipmitool 1.8.19 against ipmi_sim and real BMCs)
_AUTH = ("RAKP 2 HMAC is invalid", "unauthorized name", "invalid authentication algorithm",
         "insufficient resources for session", "Invalid role", "invalid user name",
         "RAKP 4 message has invalid integrity check", "unauthorized role or privilege")
_UNREACHABLE = ("Get Auth Capabilities error", "No response from remote controller",
                "Address lookup for", "Could not open socket",
                "Error issuing Get Channel Authentication Capabilities")


def classify(output: str) -> tuple[str, str]:
    """(reason, detail) of a failed ipmitool run from its output: ``auth_refused`` (wrong user
    or password), ``unreachable`` (no answer), or ``bmc_error`` with ipmitool's last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()
             and not ln.startswith(("Loading IANA", "Running Get", "Unable to Get Channel "
                                    "Cipher", ">> ", "<< "))]
    for line in lines:
        if any(mark.lower() in line.lower() for mark in _AUTH):
            return "auth_refused", "the BMC refused the user name or password"
    for line in lines:
        if any(mark.lower() in line.lower() for mark in _UNREACHABLE):
            return "unreachable", "no answer from the BMC (address, port, UDP 623 filtered?)"
    last = lines[-1] if lines else "ipmitool failed without a message"
    if "Unable to establish IPMI v2" in last and len(lines) == 1:
        return "unreachable", "no IPMI 2.0 session could be opened (address? RMCP+ enabled?)"
    return "bmc_error", last.removeprefix("Error: ")[:200]


def parse_status(output: str) -> str | None:
    """``on`` or ``off`` from ``Chassis Power is on|off``, else None."""
    for line in output.splitlines():
        line = line.strip().lower()
        if line.startswith("chassis power is "):
            word = line.rsplit(" ", 1)[-1]
            if word in ("on", "off"):
                return word
    return None


async def _ipmitool(target: Target, *words: str, timeout: float,
                    cipher_suite: int = CIPHER_SUITE) -> str:
    """Run ipmitool; its stdout, or PowerError naming the host, the BMC and the reason."""
    tool = shutil.which(TOOL)
    if tool is None:
        raise PowerError("tool_missing", f"host {target.mac}{target.where()}: ipmitool is not "
                         "installed (Debian package ipmitool)")
    proc = await asyncio.create_subprocess_exec(
        *command(target, *words, tool=tool, cipher_suite=cipher_suite), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment(target))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise PowerError("timeout", f"host {target.mac}{target.where()}: no answer within "
                         f"{timeout:.0f} s (chassis {' '.join(words)})") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        reason, detail = classify(err.decode(errors="replace") + "\n" + text)
        raise PowerError(reason, f"host {target.mac}{target.where()}: chassis "
                         f"{' '.join(words)}: {detail}")
    return text


async def status(target: Target, timeout: float, cipher_suite: int = CIPHER_SUITE) -> str:
    out = await _ipmitool(target, "power", "status", timeout=timeout, cipher_suite=cipher_suite)
    state = parse_status(out)
    if state is None:
        raise PowerError("bmc_error", f"host {target.mac}{target.where()}: cannot read the "
                         f"power state from {out.strip()[:120]!r}")
    return state


async def run(target: Target, action: str, *, pxe: bool = True, timeout: float = 30,
              cipher_suite: int = CIPHER_SUITE) -> Result:
    """Do ``action`` (on, off, cycle, status) on ``target``; PowerError on failure."""
    start = time.monotonic()
    suite = cipher_suite
    deadline = start + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def result(outcome: str, state: str, detail: str = "", did_pxe: bool = False) -> Result:
        return Result(target.mac, action, "ipmi", outcome, state, detail=detail,
                      address=target.address, seconds=time.monotonic() - start, pxe=did_pxe)

    state = await status(target, left(), suite)
    if action == "status":
        return result("ok", state, f"power is {state}")
    if action == "off":
        if state == "off":
            return result("already", "off", "power was already off")
        await _ipmitool(target, "power", "off", timeout=left(), cipher_suite=suite)
        return result("ok", "off", "chassis power off")
    if action == "on" and state == "on":
        return result("already", "on", "power was already on (nothing done)")
    if pxe:
        await _ipmitool(target, "bootdev", "pxe", timeout=left(), cipher_suite=suite)
    verb = "cycle" if action == "cycle" and state == "on" else "on"
    await _ipmitool(target, "power", verb, timeout=left(), cipher_suite=suite)
    return result("ok", "on", f"chassis power {verb}" + (", bootdev pxe (once)" if pxe else ""),
                  pxe)
