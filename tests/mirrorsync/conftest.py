"""Fixtures for the mirror sync tests (real trees in repokit.py)."""

from __future__ import annotations

import pytest
from repokit import GpgKey


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory):
    key = GpgKey(tmp_path_factory.mktemp("gnupg"))
    yield key
    key.close()
