"""The CLI's settings: the redis section of BOOTYARD_CONFIG and BOOTYARD_REDIS_* (imported
only when a command needs Redis, so that ``bootyard --help`` stays quick)."""

from __future__ import annotations

import dataclasses

from services.blockexport.settings import BlockexportSection
from shared import settings as settings_mod
from shared.bootstate import Expected


@dataclasses.dataclass(frozen=True)
class CliSettings:
    redis: settings_mod.RedisSection = dataclasses.field(default_factory=settings_mod.RedisSection)
    # read by `bootyard blockexport overlays|reset` for its overlay directory
    blockexport: BlockexportSection = dataclasses.field(default_factory=BlockexportSection)
    # expected seconds per boot stage: `bootyard host list` and `events --host` boot states
    bootstate: Expected = dataclasses.field(default_factory=Expected)
