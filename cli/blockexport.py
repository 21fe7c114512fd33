"""``bootyard blockexport overlays|reset``: the per-host copy-on-write overlays of an export
(docs/blockexport.md), read and reset where the block export service keeps them."""

from __future__ import annotations

import dataclasses
import json
import os
import time

from cli.commands import CliError


def add_verbs(verbs, common) -> None:
    where = ("overlay directory (default: blockexport.overlay_root of BOOTYARD_CONFIG or "
             "BOOTYARD_BLOCKEXPORT__OVERLAY_ROOT); run where the block export service's "
             "overlays are, e.g. docker compose exec blockexport bootyard ...")
    sub = verbs.add_parser("overlays", parents=[common], help="list the per-host copy-on-write overlays of a "
                                            "cow export, with their allocated size")
    sub.add_argument("id", metavar="NAME")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--overlay-root", help=where)
    sub = verbs.add_parser("reset", parents=[common], help="drop a host's overlay: its next boot starts from the "
                                         "golden image again")
    sub.add_argument("id", metavar="NAME")
    sub.add_argument("mac", metavar="MAC")
    sub.add_argument("--force", action="store_true",
                     help="reset even while the host is attached (its unsynced writes are lost)")
    sub.add_argument("--overlay-root", help=where)



def _overlay_root(args) -> str:
    if args.overlay_root:
        return args.overlay_root
    from cli.settings import CliSettings
    from shared import settings as settings_mod

    try:
        return settings_mod.load_settings(CliSettings, None, os.environ).blockexport.overlay_root
    except settings_mod.SettingsError as exc:
        raise CliError(f"settings error: {exc}") from None


async def run(args, store, out) -> int:
    from services.blockexport.storage import StorageError
    from services.blockexport.storage_cow import CowDisk
    from shared.attachments import Attachments
    from shared.schema import KINDS

    args.overlay_root = _overlay_root(args)
    kind = KINDS["export"]
    export, problems = await store.get(kind, args.id)
    if export is None:
        raise CliError(f"export {kind.canonical_id(args.id)} is not valid: "
                       + "; ".join(f"{p.field}: {p.reason}" for p in problems))
    if not export.cow:
        raise CliError(f"export {export.name} has no overlays: it is not a copy-on-write export "
                       "(cow: yes)")
    attachments = await Attachments(store.redis).attached(export.name)
    try:
        cow = CowDisk(export.backing, args.overlay_root, export.name)
    except StorageError as exc:
        raise CliError(f"export {export.name}: {exc}") from None
    try:
        if args.verb == "overlays":
            overlays = cow.overlays()
            if args.json:
                json.dump([dict(dataclasses.asdict(o), attached=o.mac in attachments)
                           for o in overlays], out, indent=2)
                out.write("\n")
                return 0
            rows = [("MAC", "ALLOCATED", "BLOCKS", "ATTACHED", "PATH")]
            for o in overlays:
                rows.append((o.mac, str(o.allocated), str(o.blocks),
                             "yes" if o.mac in attachments else "no", o.path))
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for row in rows:
                print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
            return 0
        mac = KINDS["host"].canonical_id(args.mac)
        if mac in attachments and not args.force:
            left = attachments[mac] - time.time()
            raise CliError(f"export {export.name}: host {mac} is attached (it sent a frame "
                           f"recently; it counts as attached for {left:.0f}s more): stop the "
                           "host first, or use --force")
        if not cow.reset(mac):
            raise CliError(f"export {export.name}: host {mac} has no overlay under "
                           f"{cow.dir}")
        print(f"reset {export.name} for {mac}: its next read starts from the golden image",
              file=out)
        return 0
    finally:
        cow.close()
