"""The DHCP policy, table-driven, with the in-memory inventory double."""

from __future__ import annotations

import ipaddress

import pytest

from services.dhcp import codec, policy
from services.dhcp.codec import FLAG_BROADCAST, Message, MessageType, Opt
from services.dhcp.policy import Ignore, Lease, Refusal, Reply, ServerContext
from shared.cache import StaticInventory
from shared.records import Host, Profile, Subnet

MAC = "52:54:00:00:00:01"
CHADDR = bytes.fromhex(MAC.replace(":", "")) + bytes(10)
SERVER = "198.18.0.1"
CTX = ServerContext(server_ip=SERVER, http_base_url="http://198.18.0.1:8080")
LAB = Subnet(name="lab", network=ipaddress.IPv4Network("198.18.0.0/24"),
             ranges=(("198.18.0.100", "198.18.0.199"),), router="198.18.0.254",
             dns=("198.18.0.53",), domain="lab.example", lease_time=600,
             relays=("198.18.5.1",))
REMOTE = Subnet(name="remote", network=ipaddress.IPv4Network("198.18.5.0/24"),
                ranges=(("198.18.5.100", "198.18.5.110"),), relays=("198.18.5.1",),
                boot_file_bios="remote.kpxe", next_server="198.18.5.2")
INV = StaticInventory(
    hosts=[Host(mac=MAC, hostname="web1", ip="198.18.0.20", profile="custom"),
           Host(mac="52:54:00:00:00:02", enabled=False),
           Host(mac="52:54:00:00:00:03", vars={"boot_file_uefi": "host-own.efi"})],
    profiles=[Profile(name="custom", vars={"boot_file_bios": "profile.kpxe"})],
    subnets=[LAB, REMOTE])


def request(mtype, *, mac=MAC, arch=None, vendor=None, user_class=None, flags=FLAG_BROADCAST,
            ciaddr="0.0.0.0", giaddr="0.0.0.0", extra=None) -> Message:
    options = {Opt.MESSAGE_TYPE: bytes([mtype])}
    if arch is not None:
        options[Opt.CLIENT_SYSTEM_ARCH] = arch.to_bytes(2, "big")
    if vendor is not None:
        options[Opt.VENDOR_CLASS_ID] = vendor
    if user_class is not None:
        options[Opt.USER_CLASS] = user_class
    options.update(extra or {})
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    return Message(op=1, xid=99, flags=flags, ciaddr=ciaddr, giaddr=giaddr, chaddr=chaddr,
                   options=options)


def run(req, lease=Lease("198.18.0.150", 600), subnet=LAB, mac=MAC):
    host = INV.host(mac)
    profile = INV.profile(host.profile) if host and host.profile else None
    return policy.decide(req, host, profile, subnet, lease, CTX, mac)


# (arch, vendor class, user class, mac) -> expected boot file, reason, vendor class in reply
BOOT_TABLE = [
    (0, b"PXEClient:Arch:00000:UNDI:002001", None, "52:54:00:00:00:09",
     "undionly.kpxe", "bios", b"PXEClient"),
    (None, b"PXEClient", None, "52:54:00:00:00:09", "undionly.kpxe", "bios", b"PXEClient"),
    (0, b"PXEClient", None, MAC, "profile.kpxe", "bios", b"PXEClient"),  # profile var wins
    (7, b"PXEClient:Arch:00007", None, "52:54:00:00:00:09", "ipxe.efi", "uefi-x64", b"PXEClient"),
    (9, b"PXEClient:Arch:00009", None, "52:54:00:00:00:09", "ipxe.efi", "uefi-x64", b"PXEClient"),
    (7, b"PXEClient", None, "52:54:00:00:00:03", "host-own.efi", "uefi-x64", b"PXEClient"),
    (6, b"PXEClient", None, "52:54:00:00:00:09", "ipxe-i386.efi", "uefi-ia32", b"PXEClient"),
    (11, b"PXEClient", None, "52:54:00:00:00:09", "ipxe-arm64.efi", "uefi-arm64", b"PXEClient"),
    (16, b"HTTPClient:Arch:00016", None, "52:54:00:00:00:09",
     "http://198.18.0.1:8080/images/ipxe.efi", "http-x64", b"HTTPClient"),
    (19, b"HTTPClient:Arch:00019", None, "52:54:00:00:00:09",
     "http://198.18.0.1:8080/images/ipxe-arm64.efi", "http-arm64", b"HTTPClient"),
    (0, b"PXEClient", b"iPXE", MAC, f"http://198.18.0.1:8080/boot/ipxe?mac={MAC}",
     "ipxe-script", None),
    (7, b"PXEClient", b"\x04iPXE", MAC, f"http://198.18.0.1:8080/boot/ipxe?mac={MAC}",
     "ipxe-script", None),
]


@pytest.mark.parametrize("arch, vendor, uclass, mac, file, reason, vendor_reply", BOOT_TABLE)
def test_boot_file_by_architecture(arch, vendor, uclass, mac, file, reason, vendor_reply):
    result = run(request(MessageType.DISCOVER, mac=mac, arch=arch, vendor=vendor,
                         user_class=uclass), mac=mac)
    assert isinstance(result, Reply)
    assert result.boot.file == file and result.boot.reason == reason
    msg = result.message
    if len(file) <= 128:
        assert msg.file == file.encode()
    assert msg.options.get(Opt.VENDOR_CLASS_ID) == vendor_reply
    assert msg.siaddr == SERVER
    # and it survives the wire
    back = codec.decode(codec.encode(msg))
    assert back.file == msg.file and back.options == msg.options


def test_ipxe_detected_by_option_175():
    req = request(MessageType.REQUEST, arch=0, vendor=b"PXEClient",
                  extra={Opt.IPXE_ENCAP: b"\x13\x01\x01", Opt.REQUESTED_IP: codec.ip_bytes(
                      "198.18.0.20"), Opt.SERVER_ID: codec.ip_bytes(SERVER)})
    result = run(req, Lease("198.18.0.20", 600))
    assert result.boot.reason == "ipxe-script"
    assert result.message.message_type == MessageType.ACK


def test_plain_client_gets_no_boot_file():
    result = run(request(MessageType.DISCOVER, vendor=b"udhcp 1.35.0"))
    assert result.boot is None and result.message.file == b""
    assert result.message.siaddr == "0.0.0.0"


def test_boot_file_option_67_when_asked_and_for_long_urls():
    req = request(MessageType.DISCOVER, arch=16, vendor=b"HTTPClient",
                  extra={Opt.PARAMETER_REQUEST_LIST: bytes([1, 3, 60, 67])})
    msg = run(req, mac="52:54:00:00:00:09").message
    assert msg.options[Opt.BOOTFILE_NAME] == b"http://198.18.0.1:8080/images/ipxe.efi"


def test_offer_fields():
    msg = run(request(MessageType.DISCOVER)).message
    assert msg.op == codec.Op.BOOTREPLY and msg.xid == 99 and msg.chaddr == CHADDR
    assert msg.message_type == MessageType.OFFER
    assert msg.yiaddr == "198.18.0.150"
    assert msg.ip_option(Opt.SERVER_ID) == SERVER
    assert msg.ip_option(Opt.SUBNET_MASK) == "255.255.255.0"
    assert msg.ip_option(Opt.ROUTER) == "198.18.0.254"
    assert msg.options[Opt.LEASE_TIME] == codec.u32(600)
    assert msg.options[Opt.RENEWAL_TIME] == codec.u32(300)
    assert msg.options[Opt.REBINDING_TIME] == codec.u32(525)
    assert msg.options[Opt.HOSTNAME] == b"web1"
    assert msg.options[Opt.DOMAIN_NAME] == b"lab.example"


IGNORE_TABLE = [
    ("disabled host", request(MessageType.DISCOVER, mac="52:54:00:00:00:02"),
     "52:54:00:00:00:02", LAB, "host_disabled"),
    ("a reply", Message(op=2, options={Opt.MESSAGE_TYPE: b"\x02"}), MAC, LAB, "not_request"),
    ("bootp", Message(op=1, chaddr=CHADDR), MAC, LAB, "not_dhcp"),
    ("server message type", request(MessageType.OFFER), MAC, LAB, "unsupported_type"),
    ("other server chosen", request(MessageType.REQUEST, extra={
        Opt.SERVER_ID: codec.ip_bytes("198.18.0.2"),
        Opt.REQUESTED_IP: codec.ip_bytes("198.18.0.150")}), MAC, LAB, "other_server"),
    ("no subnet", request(MessageType.DISCOVER), MAC, None, "no_subnet"),
    ("release", request(MessageType.RELEASE, ciaddr="198.18.0.150", flags=0), MAC, LAB,
     "no_reply_expected"),
]


@pytest.mark.parametrize("what, req, mac, subnet, reason", IGNORE_TABLE,
                         ids=[row[0] for row in IGNORE_TABLE])
def test_ignored(what, req, mac, subnet, reason):
    result = run(req, subnet=subnet, mac=mac)
    assert isinstance(result, Ignore) and result.reason == reason
    assert reason in policy.IGNORE_REASONS


def test_pool_exhausted_is_ignored():
    assert run(request(MessageType.DISCOVER), lease=None).reason == "pool_exhausted"


# request, lease answer -> reply type, destination (ip, port, broadcast)
DEST_TABLE = [
    ("broadcast flag", request(MessageType.DISCOVER), Lease("198.18.0.150", 600),
     MessageType.OFFER, ("255.255.255.255", 68, True)),
    ("no flag, no ciaddr", request(MessageType.DISCOVER, flags=0), Lease("198.18.0.150", 600),
     MessageType.OFFER, ("255.255.255.255", 68, True)),
    ("renewing unicast", request(MessageType.REQUEST, flags=0, ciaddr="198.18.0.150"),
     Lease("198.18.0.150", 600), MessageType.ACK, ("198.18.0.150", 68, False)),
    ("nak broadcast", request(MessageType.REQUEST, flags=0, ciaddr="198.18.0.150"),
     Refusal("address taken"), MessageType.NAK, ("255.255.255.255", 68, True)),
    ("relayed", request(MessageType.DISCOVER, giaddr="198.18.5.1"), Lease("198.18.5.100", 600),
     MessageType.OFFER, ("198.18.5.1", 67, False)),
    ("relayed nak", request(MessageType.REQUEST, giaddr="198.18.5.1"), Refusal("wrong net"),
     MessageType.NAK, ("198.18.5.1", 67, False)),
    ("inform", request(MessageType.INFORM, flags=0, ciaddr="198.18.0.77"), None,
     MessageType.ACK, ("198.18.0.77", 68, False)),
]


@pytest.mark.parametrize("what, req, lease, rtype, dest", DEST_TABLE,
                         ids=[row[0] for row in DEST_TABLE])
def test_destination_rfc2131_4_1(what, req, lease, rtype, dest):
    result = run(req, lease=lease)
    assert result.message.message_type == rtype
    d = result.destination
    assert (d.ip, d.port, d.broadcast) == dest


def test_nak_carries_message_and_no_address():
    msg = run(request(MessageType.REQUEST), lease=Refusal("address in use")).message
    assert msg.message_type == MessageType.NAK
    assert msg.yiaddr == "0.0.0.0" and msg.options[Opt.MESSAGE] == b"address in use"
    assert Opt.LEASE_TIME not in msg.options


def test_inform_has_no_address_or_lease_time():
    msg = run(request(MessageType.INFORM, ciaddr="198.18.0.77", flags=0), lease=None).message
    assert msg.yiaddr == "0.0.0.0" and Opt.LEASE_TIME not in msg.options
    assert msg.ciaddr == "198.18.0.77"


def test_option_82_echoed_on_relayed_reply():
    info = b"\x01\x04port\x02\x03sw1"
    req = request(MessageType.DISCOVER, giaddr="198.18.5.1", arch=0, vendor=b"PXEClient",
                  extra={Opt.RELAY_AGENT_INFO: info})
    result = run(req, lease=Lease("198.18.5.100", 600), subnet=REMOTE,
                 mac="52:54:00:00:00:09")
    assert result.message.options[Opt.RELAY_AGENT_INFO] == info
    assert result.message.giaddr == "198.18.5.1"
    assert result.boot.file == "remote.kpxe"  # subnet default
    assert result.message.siaddr == "198.18.5.2"  # subnet next_server


def test_relay_chooses_subnet_from_cache():
    assert INV.subnet_for_relay("198.18.5.1").name == "lab"  # listed in relays first
    assert INV.subnet_for_relay("198.18.9.1") is None


def test_reserved_address_only_inside_subnet():
    host = INV.host(MAC)
    assert policy.reserved_address(host, LAB) == "198.18.0.20"
    assert policy.reserved_address(host, REMOTE) is None
    assert policy.reserved_address(None, LAB) is None


def test_requested_address_by_state():
    selecting = request(MessageType.REQUEST, extra={Opt.REQUESTED_IP: codec.ip_bytes("1.2.3.4")})
    renewing = request(MessageType.REQUEST, ciaddr="5.6.7.8")
    assert policy.requested_address(selecting) == "1.2.3.4"
    assert policy.requested_address(renewing) == "5.6.7.8"
    assert policy.requested_address(request(MessageType.REQUEST)) is None


# ---------------------------------------------------------------- proxyDHCP

def proxy(req, boot_server=False, mac="52:54:00:00:00:09"):
    return policy.decide_proxy(req, INV.host(mac), None, None, CTX, mac, boot_server)


def test_proxy_offer_has_boot_file_and_no_address():
    uuid = b"\x00" + bytes(range(16))
    result = proxy(request(MessageType.DISCOVER, arch=7, vendor=b"PXEClient:Arch:00007",
                           extra={Opt.CLIENT_UUID: uuid}))
    msg = result.message
    assert msg.message_type == MessageType.OFFER and msg.yiaddr == "0.0.0.0"
    assert msg.file == b"ipxe.efi" and msg.siaddr == SERVER
    assert msg.options[Opt.VENDOR_CLASS_ID] == b"PXEClient"
    assert msg.options[Opt.VENDOR_SPECIFIC] == policy.PXE_VENDOR_OPTIONS
    assert msg.options[Opt.CLIENT_UUID] == uuid
    assert Opt.LEASE_TIME not in msg.options and Opt.SUBNET_MASK not in msg.options
    assert (result.destination.ip, result.destination.port) == ("255.255.255.255", 68)


PROXY_IGNORED = [
    ("plain client", request(MessageType.DISCOVER, vendor=b"udhcp 1.35"), False, "not_pxe"),
    ("request on 67 is the address server's", request(MessageType.REQUEST, vendor=b"PXEClient"),
     False, "no_reply_expected"),
    ("discover on 4011", request(MessageType.DISCOVER, vendor=b"PXEClient"), True,
     "unsupported_type"),
]


@pytest.mark.parametrize("what, req, boot_server, reason", PROXY_IGNORED,
                         ids=[r[0] for r in PROXY_IGNORED])
def test_proxy_ignores(what, req, boot_server, reason):
    assert proxy(req, boot_server).reason == reason


def test_proxy_boot_server_ack_and_disabled_host():
    req = request(MessageType.REQUEST, arch=0, vendor=b"PXEClient", flags=0,
                  ciaddr="198.18.0.77")
    msg = proxy(req, boot_server=True).message
    assert msg.message_type == MessageType.ACK and msg.file == b"undionly.kpxe"
    assert msg.yiaddr == "0.0.0.0"
    disabled = request(MessageType.DISCOVER, arch=0, vendor=b"PXEClient",
                       mac="52:54:00:00:00:02")
    assert proxy(disabled, mac="52:54:00:00:00:02").reason == "host_disabled"
