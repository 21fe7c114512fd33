"""Fixtures for the mirror sync tests (real trees in repokit.py)."""

from __future__ import annotations

import pytest
from repokit import GpgKey, RsyncDaemon


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory):
    key = GpgKey(tmp_path_factory.mktemp("gnupg"))
    yield key
    key.close()


@pytest.fixture
def daemon(tmp_path):
    """A local rsync daemon serving ``tmp_path/upstream`` (the tests build trees there)."""
    (tmp_path / "upstream").mkdir(exist_ok=True)
    d = RsyncDaemon(tmp_path / "rsyncd", tmp_path / "upstream")
    d.start()
    yield d
    d.stop()
