"""Whole rendered text for every boot mode x loader, compared with tests/golden/bootplan/*.txt.

Loaders: ``ipxe`` (iPXE script from the HTTP service), ``grub-http`` (GRUB config from the HTTP
service), ``grub-tftp`` and ``pxelinux`` (configs rendered by the TFTP service), ``ipxe-tftp``
(the TFTP service's ``<mac>.ipxe``, chaining to the HTTP service) and ``ipxe-tftp-alone`` (the
same without ``tftp.http_base_url``). A loader that cannot boot a
mode is shown as its error. Regenerate after an intended change with
``BOOTYARD_REGEN_GOLDEN=1 pytest tests/bootplan`` and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bootkit import CASES, LOADERS, render

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "bootplan"
REGEN = os.environ.get("BOOTYARD_REGEN_GOLDEN") == "1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_whole_text_per_loader(case):
    expected_file = GOLDEN / f"{case}.txt"
    parts = []
    for loader in LOADERS:
        parts.append(f"===== {loader}\n{render(case, loader)}")
    text = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
    if REGEN:
        expected_file.write_text(text)
    assert text == expected_file.read_text()
