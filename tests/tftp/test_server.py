"""The TFTP service on loopback: files, path rules, read-only, dynamic configs, admission,
foreign ports, malformed input; tftpy's client as an independent peer. (A client that asks
again from the same port: test_server_requests.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest
import tftpy
from tftp_rawclient import RawClient, TftpError
from tftp_serverkit import HOSTS, MAC, PROFILES, listener_caught_up, section, value, wait_records

from harness.waiting import wait_until
from services.tftp import codec, metrics
from services.tftp.server import BUSY_MESSAGE, TftpServer
from shared import logs
from shared.cache import BrokenInventory, StaticInventory
from shared.leases import Leases
from shared.records import Host, Profile
from shared.store import connect


# ------------------------------------------------------------------------------- static files
@pytest.mark.parametrize("name", ["small.bin", "exact.bin", "empty.bin", "/small.bin", "inside"])
async def test_static_files_lockstep(server, client, root, name):
    data, _, _ = await client.fetch(server.address, name)
    target = "small.bin" if name in ("/small.bin", "inside") else name
    assert data == (root / target).read_bytes()


@pytest.mark.parametrize("options", [{"blksize": 1468, "tsize": 0}, {"windowsize": 16},
                                     {"blksize": 8, "windowsize": 3}, {"BlkSize": 65464}])
async def test_options(server, client, root, options):
    data, oack, _ = await client.fetch(server.address, "small.bin", options)
    assert data == (root / "small.bin").read_bytes()
    if "tsize" in options:
        assert oack["tsize"] == "3000"
    await wait_records(server, 1)
    rec = server.records[0]
    assert rec.result == "ok" and rec.bytes == 3000


async def test_big_file_streams_from_disk(server, client, root):
    blob = os.urandom(300_000)  # larger than cache_file_max in this test
    (root / "big.bin").write_bytes(blob)
    before = value(metrics.CACHE, "streamed")
    data, _, _ = await client.fetch(server.address, "big.bin", {"blksize": 1468,
                                                                  "windowsize": 8})
    assert data == blob and value(metrics.CACHE, "streamed") == before + 1


async def test_small_file_cached_and_reread_after_change(server, client, root):
    await client.fetch(server.address, "small.bin")
    hits = value(metrics.CACHE, "hit")
    await client.fetch(server.address, "small.bin")
    assert value(metrics.CACHE, "hit") == hits + 1
    (root / "small.bin").write_bytes(b"changed")
    os.utime(root / "small.bin", ns=(1, 1))
    data, _, _ = await client.fetch(server.address, "small.bin")
    assert data == b"changed"


async def test_netascii(server, client):
    data, oack, _ = await client.fetch(server.address, "text.txt", {"tsize": 0},
                                       mode="NetASCII")
    assert data == b"line1\r\nline2\r\x00\r\nend" and "tsize" not in oack


async def test_tftpy_client_fetches_byte_identical(server, root, tmp_path):
    out = tmp_path / "got.bin"

    def download():
        tftpy.TftpClient("127.0.0.1", server.address[1], {"blksize": 1468}).download(
            "small.bin", str(out), timeout=2)

    await asyncio.to_thread(download)
    assert hashlib.sha256(out.read_bytes()).digest() == \
        hashlib.sha256((root / "small.bin").read_bytes()).digest()


# ------------------------------------------------------------------------------- refusals
async def test_not_found(server, client):
    with pytest.raises(TftpError) as err:
        await client.fetch(server.address, "nope.bin")
    assert err.value.code == codec.ErrorCode.FILE_NOT_FOUND


@pytest.mark.parametrize("name,reason", [
    ("../secret", "traversal"),
    ("boot/../../secret", "traversal"),
    ("..\\secret", "traversal"),
    ("boot\\..\\..\\secret", "traversal"),
    ("%2e%2e/secret", "encoded"),
    ("%2E%2E%2Fsecret", "encoded"),
    ("..%2fsecret", "encoded"),
    ("escape", "escape"),             # a symlink pointing out of the root
    ("C:\\secret", "absolute"),
])
async def test_path_attacks_refused(server, client, name, reason):
    before = value(metrics.REFUSED, "path")
    with pytest.raises(TftpError) as err:
        await client.fetch(server.address, name)
    assert err.value.code == codec.ErrorCode.ACCESS_VIOLATION and reason in err.value.message
    assert value(metrics.REFUSED, "path") == before + 1


async def test_absolute_path_stays_in_root(server, client):
    """'/etc/passwd' means <root>/etc/passwd (tftpd-hpa --secure): not found, never the host's."""
    with pytest.raises(TftpError) as err:
        await client.fetch(server.address, "/etc/passwd")
    assert err.value.code == codec.ErrorCode.FILE_NOT_FOUND


async def test_write_request_refused_and_no_file(server, client, root):
    await client.send(codec.encode(codec.Request(codec.Opcode.WRQ, "new.bin", "octet")),
                      server.address)
    datagram, _ = await client.recv()
    assert codec.decode(datagram).code == codec.ErrorCode.ACCESS_VIOLATION
    await client.send(codec.encode(codec.Data(1, b"evil")), server.address)
    reply, _ = await client.recv()   # handled: a DATA on the well-known port is no transfer
    assert codec.decode(reply).code == codec.ErrorCode.UNKNOWN_TID
    assert not (root / "new.bin").exists()


async def test_tftpy_upload_refused(server, root, tmp_path):
    src = tmp_path / "up.bin"
    src.write_bytes(b"x" * 100)
    with pytest.raises(tftpy.TftpException):
        await asyncio.to_thread(lambda: tftpy.TftpClient("127.0.0.1", server.address[1]).upload(
            "small.bin", str(src), timeout=1))
    assert (root / "small.bin").stat().st_size == 3000


async def test_unsupported_mode(server, client):
    with pytest.raises(TftpError) as err:
        await client.fetch(server.address, "small.bin", mode="mail")
    assert err.value.code == codec.ErrorCode.ILLEGAL_OPERATION


@pytest.mark.parametrize("datagram", [
    b"\x00\x01f\xc3\xb6\x00octet\x00",                      # non-ASCII name
    b"\x00\x01small.bin\x00\xc3\xb6ctet\x00",               # non-ASCII mode
    b"\x00\x01small.bin\x00octet\x00bl\xc3\xb6\x00512\x00",  # non-ASCII option
    b"\x00\x01small.bin\x00octet\x00blksize\x00abc\x00",    # blksize=abc
    b"\x00\x04\x00",                                        # 3-byte ACK
    b"\x00\x01small.bin\x00octet\x00blksize\x0065536\x00",  # too big: capped, not fatal
    b"", b"\xff" * 600,
])
async def test_malformed_never_kills_the_server(server, client, root, datagram):
    await client.send(datagram, server.address)
    await listener_caught_up(client, server.address)  # the datagram was handled
    fresh = RawClient()
    try:
        data, _, _ = await fresh.fetch(server.address, "small.bin")
    finally:
        fresh.close()
    assert data == (root / "small.bin").read_bytes()


async def test_blksize_65536_is_capped_to_65464(server, client, root):
    data, oack, _ = await client.fetch(server.address, "small.bin", {"blksize": 65536})
    assert oack["blksize"] == "65464" and data == (root / "small.bin").read_bytes()


async def test_foreign_port_gets_error_5(server, client):
    await client.send(codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet")),
                      server.address)
    first, peer = await client.recv()
    assert codec.decode(first).block == 1
    intruder = RawClient()
    try:
        await intruder.send(codec.encode(codec.Ack(1)), peer)
        reply, _ = await intruder.recv()
        assert codec.decode(reply).code == codec.ErrorCode.UNKNOWN_TID
    finally:
        intruder.close()
    # the intruder's ACK moved nothing: the real client still gets block 2 only after its ACK
    await client.send(codec.encode(codec.Ack(1)), peer)
    second, _ = await client.recv()
    assert codec.decode(second).block == 2


async def test_many_unacknowledged_requests_time_out_and_free_everything(root):
    """tftpy's server ran out of descriptors at ~525 never-acknowledged requests."""
    srv = TftpServer(section(root, max_transfers=1000, retries=1, timeout_initial=0.05,
                             timeout_max=0.1), StaticInventory())
    srv.records = []
    address = await srv.start()
    clients = [RawClient() for _ in range(600)]
    try:
        for c in clients:
            await c.send(codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet")),
                         address)
        await wait_records(srv, 600, timeout=20)
        assert {r.result for r in srv.records} == {"timeout"}
        assert not srv._transfers and value(metrics.IN_FLIGHT) == 0
    finally:
        for c in clients:
            c.close()
        await srv.close()


# ------------------------------------------------------------------------------- admission
async def test_admission_queues_then_refuses_busy(root):
    srv = TftpServer(section(root, max_transfers=1, queue_timeout=0.3, retries=20,
                             timeout_initial=0.2, busy_error=True), StaticInventory())
    srv.records = []
    address = await srv.start()
    hog, waiter, late = RawClient(), RawClient(), RawClient()
    try:
        await hog.send(codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet")),
                       address)
        first, hog_peer = await hog.recv()            # holds the only slot (never ACKs)
        before = value(metrics.REFUSED, "busy")
        await late.send(codec.encode(codec.Request(codec.Opcode.RRQ, "small.bin", "octet")),
                        address)
        reply, _ = await late.recv(timeout=3)
        error = codec.decode(reply)
        assert error.code == 0 and error.message == BUSY_MESSAGE
        assert value(metrics.REFUSED, "busy") == before + 1
        # a queued request is served once the slot frees within queue_timeout
        task = asyncio.create_task(waiter.fetch(address, "small.bin"))
        await wait_until(lambda: srv._queued == 1, what="the request queued")
        await hog.send(codec.encode(codec.Error(0, "bye")), hog_peer)
        data, _, _ = await task
        assert data == (root / "small.bin").read_bytes()
    finally:
        for c in (hog, waiter, late):
            c.close()
        await srv.close()


# ------------------------------------------------------------------------------- dynamic
async def test_pxelinux_by_mac(server, client):
    data, _, _ = await client.fetch(server.address, "pxelinux.cfg/01-52-54-00-ab-cd-ef")
    text = data.decode()
    assert "KERNEL /images/debian12/linux" in text and "INITRD /images/debian12/initrd.gz" in text
    assert "APPEND console=ttyS0 hostname=web1 quiet" in text
    await wait_records(server, 1)
    assert server.records[0].mac == MAC and server.records[0].source == "rendered:pxelinux"


async def test_pxelinux_unknown_mac_falls_through_then_ip_hex(server, client):
    with pytest.raises(TftpError) as err:
        await client.fetch(server.address, "pxelinux.cfg/01-52-54-00-99-99-99")
    assert err.value.code == 1
    with pytest.raises(TftpError):
        await client.fetch(server.address, "pxelinux.cfg/7F00")  # shortened prefixes: not ours
    data, _, _ = await client.fetch(server.address, "pxelinux.cfg/7F000001")  # 127.0.0.1
    assert b"hostname=web1" in data


async def test_local_boot_mode(server, client):
    data, _, _ = await client.fetch(server.address, "boot/grub/grub.cfg-01-52-54-00-00-00-02")
    assert b"exit" in data and b"chainloader +1" in data
    data, _, _ = await client.fetch(server.address, "pxelinux.cfg/01-52-54-00-00-00-02")
    assert b"LOCALBOOT 0" in data


async def test_grub_paths(server, client, root):
    data, _, _ = await client.fetch(server.address, "boot/grub/grub.cfg-01-52-54-00-ab-cd-ef")
    assert b"linux /images/debian12/linux console=ttyS0 hostname=web1 quiet " \
           b"BOOTIF=01-52-54-00-ab-cd-ef" in data
    data, _, _ = await client.fetch(server.address, "grub/grub.cfg-52:54:00:ab:cd:ef")
    assert b"initrd /images/debian12/initrd.gz" in data
    # grub-mknetdir's platform file is static and wins
    data, _, _ = await client.fetch(server.address, "boot/grub/x86_64-efi/grub.cfg")
    assert data == b"source boot/grub/grub.cfg\n"
    # boot/grub/grub.cfg: host known by the requesting address (127.0.0.1 is web1's ip)
    data, _, _ = await client.fetch(server.address, "boot/grub/grub.cfg")
    assert b"hostname=web1" in data


async def test_unknown_host_default_boots_local_disk(root, client):
    srv = TftpServer(section(root), StaticInventory())
    address = await srv.start()
    try:
        data, _, _ = await client.fetch(address, "pxelinux.cfg/default")
        assert b"unknown host" in data and b"LOCALBOOT 0" in data
        data, _, _ = await client.fetch(address, "boot.ipxe")
        assert data.startswith(b"#!ipxe") and b"sanboot --no-describe --drive 0x80" in data
    finally:
        await srv.close()


async def test_ipxe_chains_to_http_when_configured(root, client):
    srv = TftpServer(section(root, http_base_url="http://198.18.0.1:8080"), StaticInventory())
    address = await srv.start()
    try:
        data, _, _ = await client.fetch(address, "boot.ipxe")
        assert b"chain http://198.18.0.1:8080/boot/ipxe?mac=${net0/mac}" in data
    finally:
        await srv.close()


async def test_render_error_is_an_error_not_half_a_config(root, client):
    broken = Profile(name="bad", kernel="x", cmdline="{{ vars.missing }}")
    inv = StaticInventory(hosts=[Host(mac=MAC, profile="bad")], profiles=[broken])
    srv = TftpServer(section(root), inv)
    srv.records = []
    address = await srv.start()
    try:
        with pytest.raises(TftpError) as err:
            await client.fetch(address, "pxelinux.cfg/01-52-54-00-ab-cd-ef")
        assert err.value.code == 0 and "bootyard:profile:bad cmdline" in err.value.message
        with pytest.raises(TftpError) as err:
            await client.fetch(address, "grub.cfg-01-52-54-00-ab-cd-ef")
        await wait_records(srv, 2)
        assert srv.records[0].result == "render_error"
    finally:
        await srv.close()


async def test_inventory_down_is_a_retry_error(root, client):
    srv = TftpServer(section(root), BrokenInventory())
    address = await srv.start()
    try:
        with pytest.raises(TftpError) as err:
            await client.fetch(address, "pxelinux.cfg/01-52-54-00-ab-cd-ef")
        assert "retry" in err.value.message
        data, _, _ = await client.fetch(address, "small.bin")  # static files still served
        assert len(data) == 3000
    finally:
        await srv.close()


async def test_default_by_lease_from_real_redis_and_event_recorded(root, client, redis_url):
    redis = connect(redis_url)
    leases = Leases(redis)
    try:
        await redis.hset("bootyard:lease:127.0.0.1", mapping={
            "mac": "52:54:00:00:00:02", "state": "bound", "expires": str(int(time.time()) + 600),
            "subnet": "lab", "hostname": ""})
        assert await leases.holder("127.0.0.1") == "52:54:00:00:00:02"
        from shared.events import EventLog
        events = EventLog(redis, "tftp")
        hosts = [HOSTS[1]]  # db1: no ip in the inventory, known only by its lease
        srv = TftpServer(section(root), StaticInventory(hosts=hosts, profiles=PROFILES),
                         leases=leases.holder, events=events)
        srv.records = []
        address = await srv.start()
        try:
            data, _, _ = await client.fetch(address, "pxelinux.cfg/default")
            assert b"rendered for 52:54:00:00:00:02" in data and b"LOCALBOOT" in data
            await client.fetch(address, "small.bin")  # static: attributed by lease too
            with pytest.raises(TftpError):  # a missing file too (the host's boot state)
                await client.fetch(address, "missing.efi")
            await wait_records(srv, 3)
            await events.flush()
            # by file: the end of small.bin's transfer (its final ACK, on the transfer's socket)
            # and the next request (on the listener) may be handled in either order
            got = {e.fields["file"]: e for e in await events.read("52:54:00:00:00:02")}
            assert sorted(got) == ["missing.efi", "pxelinux.cfg/default", "small.bin"]
            assert got["small.bin"].kind == "tftp.transfer"
            assert got["small.bin"].fields["result"] == "ok"
            assert got["small.bin"].fields["bytes"] == "3000"
            assert got["missing.efi"].fields["result"] == "not_found"
        finally:
            await srv.close()
        # an expired lease is not current
        await redis.hset("bootyard:lease:127.0.0.1", "expires", str(int(time.time()) - 1))
        assert await leases.holder("127.0.0.1") is None
        await redis.hset("bootyard:lease:127.0.0.1", mapping={"expires": "9999999999",
                                                               "state": "released"})
        assert await leases.holder("127.0.0.1") is None
    finally:
        await redis.aclose()


def _fifo_and_another_fetch(address, fifo) -> tuple[bytes, bytes]:
    """In a thread, with blocking sockets and their own time-outs: an RRQ for ``fifo``, then
    one for small.bin from another port. Returns (the answer to the FIFO request, the first
    answer to the small.bin one; b"" for none). At the end it opens the FIFO for writing,
    which frees a server stuck opening it (so the test ends either way)."""
    import socket
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    answers = []
    try:
        for sock, name in zip(sockets, ("boot/pipe", "small.bin")):
            sock.settimeout(3.0)
            sock.sendto(codec.encode(codec.Request(codec.Opcode.RRQ, name, "octet")), address)
        for sock in reversed(sockets):
            try:
                answers.append(sock.recvfrom(4096)[0])
            except TimeoutError:
                answers.append(b"")
    finally:
        for sock in sockets:
            sock.close()
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # ENXIO: nobody has it open for reading
    return answers[1], answers[0]


async def test_f6_a_fifo_under_the_root_does_not_hang_the_service(server, root):
    """Issue 13 F6: one RRQ for a FIFO anywhere under the root blocked the event loop in
    os.open (every transfer, the listener, /metrics). It is refused as not a regular file,
    and another client is served meanwhile."""
    fifo = root / "boot/pipe"
    os.mkfifo(fifo)
    fifo_answer, other_answer = await asyncio.to_thread(_fifo_and_another_fetch,
                                                        server.address, fifo)
    assert other_answer and codec.decode(other_answer) == codec.Data(
        1, (root / "small.bin").read_bytes()[:512])
    error = codec.decode(fifo_answer)
    assert error.code == codec.ErrorCode.FILE_NOT_FOUND and "FIFO" in error.message
    await wait_until(lambda: any(r.file == "boot/pipe" for r in server.records))
    record = next(r for r in server.records if r.file == "boot/pipe")
    assert record.result == "not_found" and "not a regular file" in record.detail


async def test_f13_a_file_used_as_a_directory_is_not_found(server, client):
    """Issue 13 F13: 'small.bin/x' with small.bin a regular file was an io_error."""
    with pytest.raises(TftpError) as err:
        await client.fetch(server.address, "small.bin/x")
    assert err.value.code == codec.ErrorCode.FILE_NOT_FOUND
    await wait_records(server, 1)
    assert server.records[0].result == "not_found"


async def test_f13_refusals_past_a_sources_budget_are_counted_and_summarised(root, caplog):
    """Issue 13 F13: every refused request was a WARNING line and an event, so any client
    could fill the disk. Past a source's budget they are only counted, and one summary line
    (key=value like the rest) says how many were held back."""
    from shared.logbudget import LogBudget

    srv = TftpServer(section(root), StaticInventory())
    srv.records = []
    srv.refusal_budget = LogBudget(burst=3, interval=0.5)
    address = await srv.start()
    client = RawClient()
    before = value(metrics.REFUSED, "write"), value(metrics.REFUSED_UNLOGGED, "write")
    try:
        with caplog.at_level("WARNING", logger="bootyard.tftp"):
            for i in range(20):
                await client.send(codec.encode(codec.Request(codec.Opcode.WRQ, f"f{i}",
                                                             "octet")), address)
                reply, _ = await client.recv()        # every one is still answered
                assert codec.decode(reply).code == codec.ErrorCode.ACCESS_VIOLATION
            assert value(metrics.REFUSED, "write") == before[0] + 20
            assert value(metrics.REFUSED_UNLOGGED, "write") == before[1] + 17
            assert [r.file for r in srv.records] == ["f0", "f1", "f2"]
            await wait_until(lambda: any(r.getMessage() == "refused_summary"
                                    for r in caplog.records), what="the summary line")
        lines = [r for r in caplog.records if r.name == "bootyard.tftp"]
        assert [r.getMessage() for r in lines].count("refused") == 3
        summary = next(r for r in lines if r.getMessage() == "refused_summary")
        assert summary.fields["held"] == 17 and summary.fields["reasons"] == "write:17"
        assert summary.fields["top_source"] == "127.0.0.1"
        line = logs.KeyValueFormatter().format(summary)  # the log format, one line
        assert " event=refused_summary held=17 " in line and "\n" not in line
    finally:
        client.close()
        await srv.close()
