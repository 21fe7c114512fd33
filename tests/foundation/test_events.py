import asyncio

from cli.commands import main
from harness.waiting import wait_until
from shared import metrics
from shared.events import GLOBAL_STREAM, EventLog, format_event, host_stream
from shared.store import connect

MAC = "52:54:00:12:34:56"


async def test_emit_flush_read_per_host_and_global(redis_url):
    client = connect(redis_url)
    log = EventLog(client, "dhcp")
    log.emit("dhcp.offer", MAC, ip="198.18.5.21", boot_file="undionly.kpxe")
    log.emit("dhcp.ack", MAC, ip="198.18.5.21")
    log.emit("dhcp.ignored", None, reason="not_our_interface")
    await log.flush()
    host = await log.read(MAC)
    assert [e.kind for e in host] == ["dhcp.offer", "dhcp.ack"]
    assert host[0].fields == {"ip": "198.18.5.21", "boot_file": "undionly.kpxe"}
    assert host[0].service == "dhcp" and host[0].mac == MAC and host[0].ts <= host[1].ts
    assert [e.kind for e in await log.read()] == ["dhcp.offer", "dhcp.ack", "dhcp.ignored"]
    assert await client.xlen(GLOBAL_STREAM) == 3 and await client.xlen(host_stream(MAC)) == 2
    await client.aclose()


async def test_background_writer_and_follow(redis_url):
    client = connect(redis_url)
    log = EventLog(client, "tftp")
    stop = asyncio.Event()
    writer = asyncio.create_task(log.run(stop, interval=0.01))
    seen = []

    async def follow():
        async for event in log.follow(MAC, last_id="0-0", block_ms=100):
            seen.append(event.kind)
            if len(seen) == 2:
                return

    follower = asyncio.create_task(follow())
    log.emit("tftp.transfer", MAC, file="undionly.kpxe", bytes=70000)
    log.emit("tftp.transfer", MAC, file="pxelinux.cfg/01-52-54-00-12-34-56")
    await asyncio.wait_for(follower, 5)
    stop.set()
    await asyncio.wait_for(writer, 5)
    assert seen == ["tftp.transfer", "tftp.transfer"]
    await client.aclose()


async def test_events_wait_while_redis_is_down(private_redis):
    client = connect(private_redis.url, timeout=0.5)
    log = EventLog(client, "http")
    private_redis.kill()
    before = metrics.REDIS_ERRORS.labels("events")._value.get()
    log.emit("http.script", MAC)
    stop = asyncio.Event()
    writer = asyncio.create_task(log.run(stop, interval=0.01))
    await wait_until(lambda: metrics.REDIS_ERRORS.labels("events")._value.get() > before, 10,
                     "the failed write counted in bootyard_redis_errors_total")
    assert not writer.done()  # still running, holding the event
    private_redis.start()
    await wait_until(lambda: _length(client, MAC), 10, "the event written once Redis is back")
    stop.set()
    await asyncio.wait_for(writer, 5)
    assert await client.xlen(host_stream(MAC)) == 1
    await client.aclose()


async def _length(client, mac):
    try:
        return await client.xlen(host_stream(mac))
    except Exception:  # noqa: BLE001 - Redis still starting
        return 0


def test_cli_prints_the_timeline(redis_url, monkeypatch, capsys):
    async def emit():
        client = connect(redis_url)
        log = EventLog(client, "dhcp")
        log.emit("dhcp.ack", MAC, ip="198.18.5.21")
        log.emit("dhcp.ack", "52:54:00:00:00:01", ip="198.18.5.22")
        await log.flush()
        await client.aclose()
    asyncio.run(emit())
    monkeypatch.setenv("BOOTYARD_REDIS_URL", redis_url)
    assert main(["events", "--host", "52-54-00-12-34-56"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "dhcp.ack" in out[0] and "ip=198.18.5.21" in out[0]


async def test_read_orders_by_time_and_follow_starts_after_the_newest(redis_url):
    # A batched writer can append a DHCP ack after the HTTP fetch it led to.
    client = connect(redis_url)
    stream = host_stream(MAC)
    await client.xadd(stream, {"ts": "1000.500", "service": "http", "kind": "http.script",
                               "mac": MAC})
    newest = await client.xadd(stream, {"ts": "1000.100", "service": "dhcp", "kind": "dhcp.ack",
                                        "mac": MAC})
    past = await EventLog(client, "cli").read(MAC)
    assert [e.kind for e in past] == ["dhcp.ack", "http.script"]
    assert past[0].id == newest
    await client.aclose()


async def test_history_cursor_is_the_global_streams(redis_url, monkeypatch):
    """follow() goes on from a global stream id: the host's newest event may come from its own
    stream (beyond the global search window), whose ids are not the global stream's."""
    from shared import events
    client = connect(redis_url)
    log = EventLog(client, "cli")
    assert (await log.history()).cursor == "0-0" and (await log.history(MAC)).cursor == "0-0"
    ack = {"ts": "1000.0", "service": "dhcp", "kind": "dhcp.ack", "mac": MAC}
    await client.xadd(GLOBAL_STREAM, ack, id="1001-0")
    await client.xadd(GLOBAL_STREAM, {**ack, "mac": "52:54:00:00:00:01"}, id="1002-0")
    await client.xadd(host_stream(MAC), ack, id="1003-0")
    monkeypatch.setattr(events, "GLOBAL_SCAN", 1)  # only 1002-0 is searched
    past = await log.history(MAC)
    assert [e.id for e in past.events] == ["1003-0"] and past.cursor == "1002-0"
    assert (await log.history()).cursor == "1002-0"
    # an event of the host written after the read, with a global id below its own stream's
    await client.xadd(GLOBAL_STREAM, {**ack, "ts": "1002.0", "kind": "http.script"},
                      id="1002-5")

    async def first():
        async for event in log.follow(MAC, last_id=past.cursor, block_ms=100):
            return event
    event = await asyncio.wait_for(first(), 5)
    assert (event.id, event.kind) == ("1002-5", "http.script")
    await client.aclose()


def test_format_event_shows_the_gap():
    from shared.events import Event
    first = Event("1-0", 1000.0, "dhcp", "dhcp.ack", MAC, {"ip": "1.2.3.4"})
    second = Event("2-0", 1001.25, "http", "http.script", MAC, {})
    line = format_event(second, first.ts)
    assert "+  1.250s" in line and "http.script" in line and MAC in line


async def test_only_inventory_hosts_get_a_stream_of_their_own(redis_url):
    client = connect(redis_url)
    inventory = {MAC}
    log = EventLog(client, "dhcp", known=lambda mac: mac in inventory)
    stranger = "52:54:00:00:00:99"
    log.emit("dhcp.offer", stranger, ip="198.18.5.100")  # a pool client, not in the inventory
    log.emit("dhcp.ack", MAC, ip="198.18.5.21")
    await log.flush()
    assert not await client.exists(host_stream(stranger))
    assert await client.xlen(host_stream(MAC)) == 1 and await client.xlen(GLOBAL_STREAM) == 2
    assert [(e.kind, e.fields["ip"]) for e in await log.read(stranger)] == [
        ("dhcp.offer", "198.18.5.100")]
    # once the operator adds it, its events also go to its own stream; read() shows both
    # periods, each event once, in time order
    inventory.add(stranger)
    log.emit("dhcp.ack", stranger, ip="198.18.5.100")
    await log.flush()
    assert await client.xlen(host_stream(stranger)) == 1
    assert [e.kind for e in await log.read(stranger)] == ["dhcp.offer", "dhcp.ack"]
    assert [e.kind for e in await log.read(stranger, count=1)] == ["dhcp.ack"]
    # an inventory that cannot answer yet keeps the host's stream
    broken = EventLog(client, "dhcp", known=lambda mac: 1 / 0)
    assert broken.has_stream("52:54:00:00:00:98")
    await client.aclose()


def test_merge_keeps_equal_events_and_drops_only_the_second_copy_of_one():
    from shared.events import merge_host_entries
    ack = {"ts": "1000.000", "service": "dhcp", "kind": "dhcp.ack", "mac": MAC}
    offer = {**ack, "ts": "999.000", "kind": "dhcp.offer"}
    # two identical acks of one batch (a retransmitted REQUEST), in both streams
    merged = merge_host_entries([("5-0", ack), ("5-1", ack)], [("2-0", ack), ("2-1", ack)])
    assert [e.id for e in merged] == ["5-0", "5-1"]
    # the global stream searched holds only the newer copy: the older comes from the host's
    merged = merge_host_entries([("5-1", ack)], [("1-0", offer), ("2-0", ack), ("2-1", ack)])
    assert [(e.id, e.kind) for e in merged] == [("1-0", "dhcp.offer"), ("2-0", "dhcp.ack"),
                                                ("5-1", "dhcp.ack")]
    assert [e.id for e in merge_host_entries([("7-0", ack), ("7-1", ack)], [])] == ["7-0", "7-1"]


async def test_read_searches_the_newest_global_entries_in_chunks(redis_url, monkeypatch):
    from shared import events
    monkeypatch.setattr(events, "SCAN_CHUNK", 4)
    monkeypatch.setattr(events, "GLOBAL_SCAN", 10)
    client = connect(redis_url)
    log = EventLog(client, "dhcp", known=lambda mac: False)
    stranger = "52:54:00:00:00:77"
    log.emit("dhcp.offer", stranger, ip="198.18.5.101")  # 11 entries back: beyond the search
    for n in range(9):
        log.emit("dhcp.ack", f"52:54:00:00:01:{n:02x}")
    log.emit("dhcp.ack", stranger, ip="198.18.5.101")
    await log.flush()
    assert [e.kind for e in await log.read(stranger)] == ["dhcp.ack"]
    monkeypatch.setattr(events, "GLOBAL_SCAN", 11)
    assert [e.kind for e in await log.read(stranger)] == ["dhcp.offer", "dhcp.ack"]
    await client.aclose()


async def test_follow_of_a_host_keeps_only_its_events(redis_url):
    client = connect(redis_url)
    log = EventLog(client, "tftp", known=lambda mac: False)
    stranger = "52:54:00:00:00:55"
    seen = []

    async def follow():
        async for event in log.follow(stranger, last_id="0-0", block_ms=100):
            seen.append((event.kind, event.mac))
            if len(seen) == 2:
                return

    follower = asyncio.create_task(follow())
    log.emit("tftp.transfer", stranger, file="undionly.kpxe")
    log.emit("tftp.transfer", MAC, file="other")
    log.emit("http.script", stranger)
    await log.flush()
    await asyncio.wait_for(follower, 5)
    assert seen == [("tftp.transfer", stranger), ("http.script", stranger)]
    await client.aclose()


def test_cli_shows_a_host_outside_the_inventory(redis_url, monkeypatch, capsys):
    stranger = "52:54:00:00:00:42"

    async def emit():
        client = connect(redis_url)
        log = EventLog(client, "dhcp", known=lambda mac: False)
        log.emit("dhcp.offer", stranger, ip="198.18.5.142")
        log.emit("dhcp.ack", "52:54:00:00:00:43", ip="198.18.5.143")
        await log.flush()
        assert not await client.exists(host_stream(stranger))
        await client.aclose()
    asyncio.run(emit())
    monkeypatch.setenv("BOOTYARD_REDIS_URL", redis_url)
    assert main(["events", "--host", stranger]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "dhcp.offer" in out[0] and "ip=198.18.5.142" in out[0]
