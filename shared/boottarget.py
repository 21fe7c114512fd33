"""The export -> target contract (pure): how a host reaches its block export, shared by the
boot plan (shared/bootplan.py), the HTTP and TFTP loaders and the block export service.

:class:`Target` (AoE ``e<shelf>.<slot>``; iSCSI portal, target IQN and LUN) from an export record
(:func:`target`), and the host's iSCSI initiator name (:func:`initiator_iqn`).
"""

from __future__ import annotations

import dataclasses

from shared.bootcontext import merged_vars
from shared.records import Export, Host, Profile
from shared.scriptvalues import PlanError


@dataclasses.dataclass(frozen=True)
class Target:
    """The export -> target contract: how a host reaches its block export (shared with the
    block export service). AoE: ``e<shelf>.<slot>``; iSCSI: portal, target IQN and LUN."""

    export: str
    kind: str  # aoe or iscsi
    portal: str = ""  # iSCSI: address of the target (http.san_server)
    iqn: str = ""
    lun: int = 1
    shelf: int | None = None
    slot: int | None = None

    @property
    def aoe_name(self) -> str:
        return f"e{self.shelf}.{self.slot}"

    @property
    def san_uri(self) -> str:
        """iPXE's / dracut's SAN URI (``iscsi:SERVER:::LUN:IQN``, ``aoe:eS.L``)."""
        if self.kind == "aoe":
            return f"aoe:{self.aoe_name}"
        return f"iscsi:{self.portal}:::{self.lun}:{self.iqn}"


def target(export: Export, portal: str) -> Target:
    if export.kind == "aoe":
        return Target(export.name, "aoe", shelf=export.aoe_shelf, slot=export.aoe_slot)
    if not portal:
        raise PlanError(f"export {export.name}: the iSCSI target's address is not known "
                        "(set http.san_server, or tftp.http_base_url for TFTP loaders)")
    return Target(export.name, "iscsi", portal=portal, iqn=export.iqn or "", lun=export.lun)


def initiator_iqn(host: Host, profile: Profile | None, prefix: str) -> str:
    """The host's iSCSI initiator name: ``var.initiator_iqn``, else <prefix>:<hostname or MAC>."""
    named = merged_vars(host, profile).get("initiator_iqn")
    return named or f"{prefix}:{host.hostname or host.mac.replace(':', '')}"

