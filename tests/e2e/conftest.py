"""Fixtures of the end-to-end boot lab (see docs/lab.md).

``boot_assets``: the kernel, initramfs, squashfs and boot programs (built once, cached in
``var/cache/assets``). ``bootlab(stack)``: a :class:`lab.runner.BootLab` on a fresh lab segment with
the stack's servers; everything is killed and the namespaces removed after the test. A failed
boot's console log is kept in the test's tmp_path (its last lines are in the failure message).
"""

from __future__ import annotations

import pytest

from lab.assets import ensure_assets
from lab.runner import BootLab


@pytest.fixture(scope="session")
def boot_assets():
    return ensure_assets()


@pytest.fixture
def bootlab(lab, tmp_path, boot_assets):
    made = []

    def make(stack: str) -> BootLab:
        boot = BootLab(lab, tmp_path / f"lab{len(made)}", stack=stack, assets=boot_assets)
        made.append(boot)
        return boot

    yield make
    for boot in made:
        boot.stop()
