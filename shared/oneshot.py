"""One-shot boots, the same for the CLI and the admin API (docs/fleet.md "Reinstall and rescue").

- :func:`reinstall`: ``boot_mode install`` (and any pending one-shot boot cancelled). The
  installer's done callback (``/install/<mac>/done``, called by the install templates) switches
  the host back to ``boot_mode local``: install once, then the local disk. Refused for a host whose
  profile has ``install none`` (nothing would call back: it would reinstall at every boot), unless
  forced.
- :func:`rescue`: ``once_profile`` (and ``once_mode``, default ``live``): the boot plan boots that
  profile in that mode while it is set; the HTTP service clears both once it has served that boot's
  script (services/http/oneshot.py), so the following boot is the host's usual one. ``cancel``
  clears them without a boot.

Both write through :func:`shared.inventory.write_many` (every check, one transaction, the audit
trail's entry in it).
"""

from __future__ import annotations

from collections.abc import Iterable

from shared import inventory
from shared.checks import parse_dump
from shared.fields import Problem
from shared.groups import resolve
from shared.schema import KINDS
from shared.store import InventoryStore, RecordInvalid

ONCE_MODES = ("live", "install", "netroot", "sanboot")


async def reinstall(store: InventoryStore, macs: Iterable[str], *, profile: str | None = None,
                    force: bool = False, dry_run: bool = False, record=None
                    ) -> inventory.Written:
    kind = KINDS["host"]
    macs = [kind.canonical_id(m) for m in macs]
    changes = {"boot_mode": "install", "once_profile": "", "once_mode": ""}
    if profile:
        changes["profile"] = profile
    if not force:
        records, _ = parse_dump(await store.dump())
        refused = []
        for mac in macs:
            host = records["host"].get(mac)
            if host is None:
                continue  # the write names a missing or invalid host
            effective = resolve(host, records["group"].values(), records["subnet"]).host
            name = profile or effective.profile
            found = records["profile"].get(name) if name else None
            if found is not None and found.install == "none":
                refused.append(Problem(
                    kind.key(mac), "profile", name, f"profile {name} has install=none: no "
                    "installer calls /install/<mac>/done, so the host would reinstall at every "
                    "boot (--force to do it anyway, or rescue --profile for a one-time boot)"))
        if refused:
            raise RecordInvalid(refused)
    return await inventory.write_many(store, kind, macs, changes, mode="set", force=force,
                                      dry_run=dry_run, record=record)


async def rescue(store: InventoryStore, macs: Iterable[str], *, profile: str | None,
                 mode: str = "live", cancel: bool = False, force: bool = False,
                 dry_run: bool = False, record=None) -> inventory.Written:
    kind = KINDS["host"]
    if cancel:
        changes = {"once_profile": "", "once_mode": ""}
    else:
        if not profile:
            raise inventory.InventoryError("name the profile to boot once: --profile NAME")
        if mode not in ONCE_MODES:
            raise inventory.InventoryError(f"mode {mode!r}: one of {', '.join(ONCE_MODES)}")
        changes = {"once_profile": profile, "once_mode": mode}
    return await inventory.write_many(store, kind, list(macs), changes, mode="set",
                                      force=force, dry_run=dry_run, record=record)


async def consume(store: InventoryStore, mac: str, profile: str, who: str) -> bool:
    """Clear ``mac``'s one-shot boot of ``profile`` once a service has served that boot's
    configuration (the HTTP service's iPXE or GRUB script, the TFTP service's rendered
    PXELINUX/GRUB config): a conditional write (an operator's newer one-shot is kept), recorded in
    the history as ``who``. True if this call cleared it."""
    from shared import audit
    from shared.store import PreconditionFailed

    kind = KINDS["host"]

    def still(current: dict[str, str]) -> str | None:
        return None if current.get("once_profile") == profile else "one-shot changed meanwhile"

    try:
        await store.write(kind, mac, {"once_profile": "", "once_mode": ""}, mode="set",
                          precondition=still,
                          record=lambda pipe, before, after: audit.queue(
                              pipe, who, kind.key(mac), before, after))
    except PreconditionFailed:
        return False
    return True
