"""``bootyard doctor``'s deploy-host check of mirror freshness (cli/doctor_host.py): each enabled
mirror published within twice its interval, read from the mirrorsync service's status records
in a real Redis; and the OFFER vendor options a PXE ROM needs (cli/doctor_vendor.py)."""

from __future__ import annotations

import io
import time

from cli.doctor_host import mirror_checks
from cli.doctor_report import Report
from cli.doctor_vendor import vendor_problems
from shared import keys
from shared.store import InventoryStore, connect


async def test_mirror_freshness(redis_url):
    client = connect(redis_url)
    try:
        store = InventoryStore(client, redis_url)
        now = time.time()
        for name, interval in (("debian", 3600), ("rocky", 3600), ("alpine", 3600),
                               ("off", 3600)):
            await client.hset(f"bootyard:mirror:{name}", mapping={
                "source": f"rsync://mirror.example/{name}/", "path": name,
                "interval": str(interval), "enabled": "no" if name == "off" else "yes"})
        await client.hset(keys.mirror_status("debian"), mapping={
            "state": "idle", "last_success": str(now - 600), "size": "1234", "files": "10"})
        await client.hset(keys.mirror_status("rocky"), mapping={
            "state": "failed", "last_success": str(now - 3 * 3600), "failures": "4",
            "last_error": "rsync exit 10 (socket I/O)"})
        report = Report(io.StringIO())
        await mirror_checks(report, store, now)
        lines = report.out.getvalue().splitlines()
        assert [line.split()[0] for line in lines] == ["FAIL", "PASS", "FAIL"], lines
        assert "mirror alpine: never published (never synced)" in lines[0]
        assert lines[1].startswith("PASS  host      mirror debian: published 10 min ago "
                                   "(limit 2 h: twice its interval), 1234 bytes, 10 files")
        assert "mirror rocky: published 3 h ago" in lines[2] and "4 failed syncs" in lines[2]
        assert "-> fix: bootyard mirror sync rocky" in lines[2]
    finally:
        await client.aclose()


def test_pxe_vendor_options():
    good = {"vendor_class_id": b"PXEClient", "vendor_specific": bytes((6, 1, 8, 255))}
    assert vendor_problems(good, ipxe=False) == []
    assert vendor_problems({}, ipxe=True) == []  # iPXE asking for its script needs neither
    problems = vendor_problems({"vendor_class_id": b"other"}, ipxe=False)
    assert len(problems) == 2
    assert problems[0].startswith("no option 60 PXEClient in the OFFER")
    assert problems[1].startswith("no option 43 (PXE vendor options) in the OFFER")
    assert "sub-option 6" in vendor_problems(
        {"vendor_class_id": b"PXEClient", "vendor_specific": bytes((1, 4, 0, 0, 0, 0))}, False)[0]
    assert vendor_problems({"vendor_class_id": b"HTTPClient"}, False, http_client=True) == []
