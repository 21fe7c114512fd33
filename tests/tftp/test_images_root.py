"""``tftp.images_root``: names under ``/<images_prefix>/`` come from the images directory the
HTTP service serves (one directory, no copy into the TFTP root); the path sanitiser holds there
too, and the rest of the root is unchanged."""

from __future__ import annotations

import os

import pytest
from tftp_rawclient import RawClient, TftpError

from services.tftp import codec
from services.tftp.server import TftpServer
from services.tftp.settings import TftpSection
from shared.cache import StaticInventory


@pytest.fixture
async def served(tmp_path):
    root, images = tmp_path / "tftp", tmp_path / "images"
    (images / "debian12").mkdir(parents=True)
    (root / "images").mkdir(parents=True)
    (images / "debian12" / "linux").write_bytes(os.urandom(5000))
    (root / "images" / "stale").write_bytes(b"in the TFTP root")
    (root / "ipxe.efi").write_bytes(b"loader")
    (tmp_path / "secret").write_text("outside")
    (images / "escape").symlink_to(tmp_path / "secret")
    srv = TftpServer(TftpSection(root=str(root), bind="127.0.0.1", port=0,
                                 images_root=str(images)), StaticInventory())
    srv.records = []
    address = await srv.start()
    client = RawClient()
    yield address, client, images
    client.close()
    await srv.close()


async def test_images_come_from_the_images_root(served):
    address, client, images = served
    for name in ("images/debian12/linux", "/images/debian12/linux", "images//debian12/./linux"):
        data, _, _ = await client.fetch(address, name)
        assert data == (images / "debian12" / "linux").read_bytes()
    data, _, _ = await client.fetch(address, "ipxe.efi")  # the rest: the TFTP root
    assert data == b"loader"
    for name, code in (("images/stale", codec.ErrorCode.FILE_NOT_FOUND),
                       ("images/escape", codec.ErrorCode.ACCESS_VIOLATION),
                       ("images/../../secret", codec.ErrorCode.ACCESS_VIOLATION)):
        with pytest.raises(TftpError) as err:
            await client.fetch(address, name)
        assert err.value.code == code, name
