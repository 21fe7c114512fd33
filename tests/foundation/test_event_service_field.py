"""An entry's ``service`` is left out when its kind says it (``dhcp.ack`` of ``dhcp``), by
EventLog and by the lease function alike, and every reader puts it back (Event.from_entry);
an entry of another service's kind keeps it (docs/benchmarks.md, DHCP, eighth round)."""

from __future__ import annotations

from shared import events
from shared.events import GLOBAL_STREAM, Event, EventLog
from shared.store import connect

MAC = "52:54:00:12:34:57"


def test_the_rule():
    assert events.header("dhcp", "dhcp.ack") == ("ts", "kind", "mac")
    assert events.header("mirrorsync", "mirror.started") == events.HEADER
    assert events.header("lab", "console.stage") == events.HEADER
    assert events.header("dhcp", "dhcpx.ack") == events.HEADER
    assert events.service_of("tftp.transfer") == "tftp" and events.service_of("odd") == "?"


async def test_written_without_it_and_read_with_it(redis_url):
    client = connect(redis_url)
    try:
        log = EventLog(client, "mirrorsync")
        log.emit("mirror.started", None, mirror="debian")
        log.emit("mirrorsync.note", None)
        await log.flush()
        raw = [data for _id, data in await client.xrange(GLOBAL_STREAM)]
        assert raw[0]["service"] == "mirrorsync" and "service" not in raw[1]
        assert [e.service for e in await log.read()] == ["mirrorsync", "mirrorsync"]
        # entries written before the rule (or by hand) keep theirs
        old = Event.from_entry("1-0", {"ts": "1.000", "service": "http", "kind": "dhcp.x"})
        assert old.service == "http"
    finally:
        await client.aclose()
