"""What the blockexport service publishes of each export for the console's overview
(services/blockexport/export_status.py, shared/attachments.ExportStatus): size, overlays and
their bytes, free space, up or why not; it expires when no service refreshes it. A real Redis,
real copy-on-write storage."""

from __future__ import annotations

from services.blockexport import export_status
from services.blockexport.storage import PlainDisk
from services.blockexport.storage_cow import CowDisk
from shared import keys
from shared.attachments import ExportStatus
from shared.store import connect


async def test_published_status_of_a_cow_and_a_plain_export(redis_url, tmp_path):
    golden = tmp_path / "golden.img"
    golden.write_bytes(bytes(1 << 20))
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "web-root")
    assert export_status.overlay_count(cow) == 0
    for mac in ("52:54:00:00:00:01", "52:54:00:00:00:02"):
        cow.view(mac).write([(0, b"x" * 512)])
    assert export_status.overlay_count(cow) == 2
    client = connect(redis_url)
    try:
        status = ExportStatus(client)
        await export_status.publish(status, "web-root", "aoe", cow, 8192, 10 << 30, None, 75)
        plain = PlainDisk(str(golden))
        await export_status.publish(status, "db-root", "iscsi", plain, 0, 5 << 30,
                                    "backing /srv/db.img no longer exists", 75)
        found = await status.read(["web-root", "db-root", "gone"])
        assert found["web-root"] == {
            "kind": "aoe", "size": str(1 << 20), "overlays": "2", "overlay_bytes": "8192",
            "free_bytes": str(10 << 30), "up": "1", "updated": found["web-root"]["updated"]}
        assert found["db-root"]["up"] == "0" and "overlays" not in found["db-root"]
        assert found["db-root"]["reason"] == "backing /srv/db.img no longer exists"
        assert found["gone"] == {}
        assert 0 < await client.ttl(keys.export_status("web-root")) <= 75
        plain.close()
    finally:
        await client.aclose()
