"""Issue 13's DHCP findings, one test each (named for the finding): F4 (option 82 that does not
fit the reply), F10 (a subnet range holding the router or this server's own address), F12
(datagrams over 4,096 bytes, option 12 that is not an ASCII host name).

The service's own path (DhcpServer.handle and sync_pools with real packets and a real
redis-server; the transport on loopback for F12); only the sockets are left out where the test
does not need them."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time

import pytest
import redis
from prometheus_client import REGISTRY

from cli.commands import main as cli_main
from harness.dhcpkit import SentReplies, client_packet
from services.dhcp import codec, policy
from services.dhcp.codec import MessageType, Opt
from services.dhcp.server import DhcpServer
from services.dhcp.settings import DhcpSection
from services.dhcp.transport import MAX_PACKET, Datagram, Interface, Transport
from shared import leases
from shared.cache import StaticInventory
from shared.events import EventLog
from shared.records import Host, Subnet
from shared.schema import KINDS
from shared.validation import parse_record

IFACE = Interface("eth0", 2, "198.18.7.1")
LAB = Subnet("lab", ipaddress.IPv4Network("198.18.7.0/24"),
             ranges=(("198.18.7.100", "198.18.7.109"),), router="198.18.7.254",
             dns=("198.18.7.53",), domain="lab.example")
RELAY_INFO_510 = b"\x01\xfe" + b"c" * 254 + b"\x02\xfe" + b"r" * 254  # two sub-options, 510 bytes




def packet(mtype: int, n: int, **options: bytes) -> Datagram:
    return client_packet(IFACE, mtype, n, 7, max_size=1500, **options)


@pytest.fixture
async def service(redis_url):
    """(make(inventory) -> DhcpServer, SentReplies, lease client, event log) on the test's Redis."""
    client = leases.connect(redis_url)
    store = leases.LeaseStore(client)
    replies = SentReplies(IFACE)
    made = {}

    async def make(inventory, **settings) -> DhcpServer:
        made["events"] = EventLog(client, "dhcp", known=inventory.knows_host)
        server = DhcpServer(DhcpSection(interfaces=("eth0",), **settings), inventory, store,
                            made["events"], replies)
        await server.sync_pools()
        return server
    yield make, replies, client, made
    await store.aclose()
    await client.aclose()


def value(metric: tuple[str, dict[str, str]]) -> float:
    """A metric's current value (0 when it does not exist yet)."""
    return REGISTRY.get_sample_value(*metric) or 0.0


RELAY_INFO = ("bootyard_dhcp_options_dropped_total", {"option": "relay_agent_info"})
BAD_HOSTNAME = ("bootyard_dhcp_options_dropped_total", {"option": "host_name"})
TOO_BIG = ("bootyard_dhcp_ignored_total", {"reason": "reply_too_big"})
OWN_IN_RANGE = ("bootyard_dhcp_own_address_in_range_total", {})
TRUNCATED = ("bootyard_dhcp_dropped_total", {"cause": "truncated"})


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------------------------------- F4

async def test_f4_relay_info_that_does_not_fit_is_answered_without_the_echo(service, caplog):
    make, replies, client, _ = service
    server = await make(StaticInventory(subnets=[LAB]))
    before = value(RELAY_INFO)
    # 510 bytes of option 82 and no option 57: the OFFER cannot carry it in 548 bytes
    await server.handle([packet(MessageType.DISCOVER, 1, o82=RELAY_INFO_510)])
    (offer,) = replies.sent
    assert offer.message_type == MessageType.OFFER and offer.yiaddr == "198.18.7.100"
    assert Opt.RELAY_AGENT_INFO not in offer.options
    await server.handle([packet(MessageType.REQUEST, 1, o82=RELAY_INFO_510,
                                o50=codec.ip_bytes(offer.yiaddr),
                                o54=codec.ip_bytes(IFACE.address))])
    ack = replies.sent[-1]
    assert ack.message_type == MessageType.ACK and Opt.RELAY_AGENT_INFO not in ack.options
    record = await leases.Leases(client).lease(ack.yiaddr)
    assert record.state == "bound" and record.mac == "52:54:00:07:00:01"
    assert value(RELAY_INFO) == before + 2
    assert errors(caplog) == []
    # a small option 82 is still echoed (RFC 3046 §2.2)
    await server.handle([packet(MessageType.DISCOVER, 2, o82=b"\x01\x04eth7")])
    assert replies.sent[-1].options[Opt.RELAY_AGENT_INFO] == b"\x01\x04eth7"
    assert value(RELAY_INFO) == before + 2


async def test_f4_a_nak_or_inform_with_too_much_relay_info_is_answered_without_it(service,
                                                                                  caplog):
    make, replies, _, _ = service
    server = await make(StaticInventory(subnets=[LAB]))
    await server.handle([
        packet(MessageType.REQUEST, 3, o82=RELAY_INFO_510, o50=codec.ip_bytes("198.18.7.20")),
        packet(MessageType.INFORM, 4, o82=RELAY_INFO_510)])
    assert [r.message_type for r in replies.sent] == [MessageType.NAK, MessageType.ACK]
    assert all(Opt.RELAY_AGENT_INFO not in r.options for r in replies.sent)
    assert errors(caplog) == []


async def test_f4_a_reply_that_cannot_fit_is_decided_before_the_lease_step(service, caplog):
    make, replies, client, made = service
    mac = "52:54:00:07:00:05"
    host = Host(mac=mac, vars={"boot_file_bios": "b" * 900})  # an OFFER of 900+ bytes
    server = await make(StaticInventory(subnets=[LAB], hosts=[host]))
    before = value(TOO_BIG)
    await server.handle([packet(MessageType.DISCOVER, 5, o93=b"\x00\x00",
                                o60=b"PXEClient:Arch:00000")])
    assert replies.sent == []
    assert value(TOO_BIG) == before + 1
    assert await client.keys("bootyard:lease:*") == []  # no address held for it
    assert errors(caplog) == []
    (line,) = [r for r in caplog.records if r.getMessage() == "ignored"]
    assert line.levelno == logging.WARNING
    assert line.fields["reason"] == "reply_too_big" and "subnet lab" in line.fields["detail"]
    await made["events"].flush()
    assert (await made["events"].read(mac))[-1].fields["reason"] == "reply_too_big"


# ------------------------------------------------------------------------------------------ F10

@pytest.mark.parametrize("field, raw", [
    ("router", "10.0.0.150"), ("next_server", "10.0.0.100"), ("dns", "10.0.0.1,10.0.0.199"),
    ("relays", "10.0.0.120")])
def test_f10_a_range_holding_the_router_or_a_server_is_an_error(field, raw):
    fields = {"network": "10.0.0.0/24", "ranges": "10.0.0.100-10.0.0.199", field: raw}
    record, problems = parse_record(KINDS["subnet"], "lab", fields)
    assert record is None
    (problem,) = problems
    assert (problem.key, problem.field, problem.severity) == ("bootyard:subnet:lab", field,
                                                              "error")
    assert problem.value in raw.split(",")
    assert "inside the dynamic range 10.0.0.100-10.0.0.199" in problem.reason
    fields[field] = "10.0.0.1"  # outside the range: fine
    assert parse_record(KINDS["subnet"], "lab", fields)[0] is not None


def test_f10_refused_at_write_time_and_reported_by_validate(redis_url, monkeypatch, capsys):
    monkeypatch.setenv("BOOTYARD_REDIS_URL", redis_url)
    code = cli_main(["subnet", "add", "lab", "--network", "10.0.0.0/24", "--ranges",
                     "10.0.0.1-10.0.0.99", "--router", "10.0.0.1"])
    assert code != 0
    assert "router='10.0.0.1': 10.0.0.1 is inside the dynamic range" in capsys.readouterr().err
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    assert not raw.exists("bootyard:subnet:lab")
    # written by hand with redis-cli: `bootyard validate` names key, field, value and reason
    raw.hset("bootyard:subnet:lab", mapping={"network": "10.0.0.0/24", "ranges":
                                            "10.0.0.1-10.0.0.99", "router": "10.0.0.1"})
    raw.close()
    assert cli_main(["validate"]) == 1
    assert ("error: bootyard:subnet:lab router='10.0.0.1': 10.0.0.1 is inside the dynamic "
            "range 10.0.0.1-10.0.0.99") in capsys.readouterr().out


async def test_f10_own_address_in_a_range_is_reported_and_kept_out_of_the_pool(service, caplog):
    make, replies, client, _ = service
    subnet = Subnet("own", ipaddress.IPv4Network("198.18.7.0/24"),
                    ranges=(("198.18.7.1", "198.18.7.2"),))  # holds the interface's address
    before = value(OWN_IN_RANGE)
    caplog.set_level(logging.INFO, "bootyard")
    server = await make(StaticInventory(subnets=[subnet]))
    (line,) = [r for r in caplog.records if r.getMessage() == "own_address_in_range"]
    assert line.levelno == logging.WARNING
    assert (line.fields["key"], line.fields["field"], line.fields["value"],
            line.fields["address"]) == ("bootyard:subnet:own", "ranges",
                                        "198.18.7.1-198.18.7.2", "198.18.7.1")
    assert value(OWN_IN_RANGE) == before + 1
    assert await client.zrange("bootyard:leases:pool:own", 0, -1) == ["198.18.7.2"]
    await server.handle([packet(MessageType.DISCOVER, n) for n in (6, 7)])
    assert [r.yiaddr for r in replies.sent] == ["198.18.7.2"]  # never our own address
    await server.sync_pools()  # reported once, not at every pool sync
    assert value(OWN_IN_RANGE) == before + 1


# ------------------------------------------------------------------------------------------ F12

async def test_f12_a_datagram_over_4096_bytes_is_dropped_and_counted_not_decoded():
    lo = Interface("lo", socket.if_nametoindex("lo"), "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = Transport([lo], port, queue_size=16)
    transport.open()
    before = value(TRUNCATED)
    big = codec.encode(codec.Message(xid=1, options={53: b"\x01", 82: bytes(MAX_PACKET)}),
                       max_size=65000)
    small = codec.encode(codec.Message(xid=2, options={53: b"\x01"}))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(big, ("127.0.0.1", port))
            sender.sendto(small, ("127.0.0.1", port))  # arrives after the big one
        deadline = time.monotonic() + 10
        while not transport.queue:
            assert time.monotonic() < deadline, "no datagram received"
            await asyncio.sleep(0.01)
        assert [d.data for d in transport.queue] == [small]  # not the big one, cut short
        assert value(TRUNCATED) == before + 1
    finally:
        transport.close()


@pytest.mark.parametrize("sent, recorded", [
    (b"web1", "web1"), (b"Web-1.lab.example\x00", "web-1.lab.example"),
    ("wéb1".encode(), None), ("ｗｅｂ１".encode(), None), ("web\u212a".encode(), None),
    (b"web_1", None), (b"web 1", None), (b"-web1", None), (b"web..lab", None), (b"", None)])
def test_f12_option_12_must_be_an_ascii_host_name(sent, recorded):
    request = codec.Message(options={53: b"\x01", Opt.HOSTNAME: sent})
    assert policy.client_hostname(request, None) == recorded
    assert policy.client_hostname(codec.Message(options={53: b"\x01"}), None) == ""
    host = Host(mac="52:54:00:07:00:09", hostname="known")
    assert policy.client_hostname(request, host) == "known"


async def test_f12_a_bad_host_name_is_ignored_and_counted(service):
    make, replies, client, _ = service
    server = await make(StaticInventory(subnets=[LAB]))
    before = value(BAD_HOSTNAME)
    await server.handle([packet(MessageType.DISCOVER, 8, o12="ｗｅｂ１".encode())])
    (offer,) = replies.sent
    assert (await leases.Leases(client).lease(offer.yiaddr)).hostname == ""
    assert value(BAD_HOSTNAME) == before + 1
