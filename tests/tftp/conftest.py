"""Fixtures of the TFTP server tests (test_server*.py): a root of files, a server on loopback
(transfers in threads, and on the event loop) and a raw client."""

from __future__ import annotations

import os

import pytest
from tftp_rawclient import RawClient
from tftp_serverkit import HOSTS, PROFILES, section

from services.tftp.server import TftpServer
from shared.cache import StaticInventory


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    (root / "boot/grub/x86_64-efi").mkdir(parents=True)
    (root / "small.bin").write_bytes(os.urandom(3000))
    (root / "exact.bin").write_bytes(os.urandom(1024))
    (root / "empty.bin").write_bytes(b"")
    (root / "text.txt").write_bytes(b"line1\nline2\r\nend")
    (root / "boot/grub/x86_64-efi/grub.cfg").write_text("source boot/grub/grub.cfg\n")
    (tmp_path / "secret").write_text("outside the root")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "inside").symlink_to(root / "small.bin")
    return root


@pytest.fixture(params=[4, 0], ids=["thread", "loop"])
async def server(root, request):
    """Transfers in their own threads (the first few), and all on the event loop."""
    srv = TftpServer(section(root, transfer_threads=request.param),
                     StaticInventory(hosts=HOSTS, profiles=PROFILES))
    srv.records = []
    srv.address = await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def client():
    c = RawClient()
    yield c
    c.close()
