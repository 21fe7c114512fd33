"""Power actions for many hosts at once: what ``bootyard power`` and the admin API run.

:func:`act` reads each host's record, turns its power settings into a
:class:`shared.power.Target`, runs the method's driver (IPMI, Redfish, Wake-on-LAN) for several
hosts at a time (``power.concurrency``), each bounded by ``power.timeout``, and records each
action: a ``power.request`` and a ``power.result`` event in the host's timeline, an entry
(``op power``) in the audit trail, and ``bootyard_power_actions_total``. No secret goes into any
of them. A host that fails does not stop the others; its result says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable

from shared import audit, metrics, power
from shared.power import PowerError, Result
from shared.schema import KINDS
from shared.settings import port_number, positive, setting
from shared.store import InventoryUnavailable
from shared.validation import parse_record


@dataclasses.dataclass(frozen=True)
class PowerSection:
    """Settings section ``power`` (read by the CLI and the HTTP service; docs/power.md)."""

    wol_interfaces: tuple[str, ...] = setting(
        (), help="interfaces Wake-on-LAN magic packets may be sent on (the deploy network); "
                 "empty: the DHCP service's dhcp.interfaces (the CLI reads them from the same "
                 "config; the HTTP service needs this set to send Wake-on-LAN)")
    wol_port: int = setting(9, help="UDP port of the magic packet (9: discard; some use 7)",
                            check=port_number)
    concurrency: int = setting(8, help="hosts whose BMCs are asked at the same time",
                               check=positive)
    timeout: float = setting(30.0, help="seconds one host's action may take (all its requests "
                                        "to the BMC together)", check=positive)
    ipmi_cipher_suite: int = setting(
        3, help="IPMI 2.0 cipher suite (ipmitool -C): 3 (HMAC-SHA1, AES-128) is the one BMCs "
                "support; 17 (HMAC-SHA256) for BMCs that only allow it")
    pxe: bool = setting(True, help="before 'on' and 'cycle', ask the BMC for one network (PXE) "
                                   "boot (IPMI chassis bootdev pxe, Redfish boot override "
                                   "Pxe/Once); 'bootyard power on --no-pxe' skips it once")


HOST = KINDS["host"]


async def act(store, events, macs: Iterable[str], action: str, *, who: str,
              settings: PowerSection, deploy_interfaces: Iterable[str] = (),
              pxe: bool | None = None) -> list[Result]:
    """Do ``action`` on each host of ``macs`` (canonical MACs); one Result each, in order."""
    if action not in power.ACTIONS:
        raise ValueError(f"unknown power action {action!r} (one of {', '.join(power.ACTIONS)})")
    allowed = tuple(settings.wol_interfaces or deploy_interfaces)
    want_pxe = settings.pxe if pxe is None else pxe
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(mac: str) -> Result:
        async with gate:
            return await _one(store, events, mac, action, who=who, settings=settings,
                              allowed=allowed, pxe=want_pxe)

    return list(await asyncio.gather(*(one(m) for m in macs)))


async def _one(store, events, mac: str, action: str, *, who: str, settings: PowerSection,
               allowed: tuple[str, ...], pxe: bool) -> Result:
    start = time.monotonic()
    raw = await store.raw(HOST, mac)
    record, problems = parse_record(HOST, mac, raw) if raw else (None, [])
    target = None
    try:
        if not raw:
            raise PowerError("not_configured", f"no host {mac} (key {HOST.key(mac)})")
        if record is None:
            errors = "; ".join(str(p) for p in problems if p.severity == "error")
            raise PowerError("not_configured", f"host {mac}: its record is invalid: {errors}")
        target = power.target(record)
        events.emit("power.request", mac, action=action, method=target.method,
                    pxe="once" if pxe and action in ("on", "cycle") and
                    target.method != "wol" else None, bmc=target.address or None, who=who)
        result = await _drive(target, action, pxe=pxe, settings=settings, allowed=allowed)
    except PowerError as exc:
        result = power.failed(target or mac, action, exc, time.monotonic() - start)
    except Exception as exc:  # noqa: BLE001 - one host's bug is its result, not everyone's
        result = power.failed(target or mac, action, PowerError(
            "bmc_error", f"host {mac}: {type(exc).__name__}: {exc}"), time.monotonic() - start)
    result = dataclasses.replace(result, seconds=time.monotonic() - start)
    if target is not None:  # an unknown or unconfigured host gets no timeline entry
        events.emit("power.result", mac, **result.event_fields())
        await _audit(store, who, mac, result)
    metrics.POWER_ACTIONS.labels(result.method or "none", action, result.outcome).inc()
    if target is not None:
        metrics.POWER_SECONDS.labels(result.method).observe(result.seconds)
    return result


async def _drive(target, action: str, *, pxe: bool, settings: PowerSection,
                 allowed: tuple[str, ...]) -> Result:
    if target.method == "wol":
        from shared import power_wol
        return power_wol.run(target, action, allowed=allowed, port=settings.wol_port)
    if target.method == "ipmi":
        from shared import power_ipmi
        return await power_ipmi.run(target, action, pxe=pxe, timeout=settings.timeout,
                                    cipher_suite=settings.ipmi_cipher_suite)
    from shared import power_redfish
    return await power_redfish.run(target, action, pxe=pxe, timeout=settings.timeout)


async def _audit(store, who: str, mac: str, result: Result) -> None:
    """The action in the audit trail (``op power``); a Redis failure here does not undo it."""
    detail = {k: v for k, v in result.event_fields().items() if k != "seconds"}
    try:
        await audit.record_action(store.redis, who, HOST.key(mac), "power", detail)
    except InventoryUnavailable:
        pass  # counted in bootyard_redis_errors_total{operation="audit"}; the action was done
