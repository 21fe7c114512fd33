"""One-shot boots: a host's ``once_profile`` is cleared once its boot script was served.

``bootyard host rescue MAC --profile live-rescue`` sets the host's ``once_profile`` (and
``once_mode``, default ``live``); the boot plan boots that profile while it is set
(shared/groups.py). When this service has served the boot script (iPXE or GRUB) of such a boot,
it clears both fields (:func:`shared.oneshot.consume`), so the next boot is the host's usual one
again ("served" is the signal: a rescue system need not call back). Recorded in the audit trail
as ``http:once-served`` and in the timeline as ``http.once_served``.
"""

from __future__ import annotations

import asyncio

from shared import logs, oneshot
from shared.store import InventoryError

log = logs.get_logger("http.oneshot")
WHO = "http:once-served"


def served(service, mac: str, profile: str, ip: str | None) -> None:
    """Clear ``mac``'s one-shot boot of ``profile`` in the background (once per MAC at a
    time)."""
    key = (mac, profile)
    if any(t.get_name() == repr(key) for t in service._once):
        return
    task = asyncio.get_running_loop().create_task(_clear(service, mac, profile, ip),
                                                  name=repr(key))
    service._once.add(task)
    task.add_done_callback(service._once.discard)


async def _clear(service, mac: str, profile: str, ip: str | None) -> None:
    try:
        if not await oneshot.consume(service.store, mac, profile, WHO):
            return
    except InventoryError as exc:
        log.warning("once_clear_failed", mac=mac, profile=profile, reason=str(exc),
                    effect="the host boots its one-shot profile again until it is cleared "
                           "(bootyard host rescue MAC --cancel)")
        return
    service.events.emit("http.once_served", mac, ip=ip, profile=profile)
    log.info("once_served", mac=mac, ip=ip, profile=profile)
