"""Apple BSDP: golden packets written from Apple's specification, LIST and SELECT round trips."""

from __future__ import annotations

import struct

from scapy.layers.dhcp import BOOTP, DHCP

from services.dhcp import bsdp, codec
from services.dhcp.codec import Message, MessageType, Opt
from services.dhcp.policy import Ignore, ServerContext
from shared.schema import KINDS
from shared.validation import parse_record

CTX = ServerContext(server_ip="198.18.0.1", http_base_url="http://198.18.0.1:8080")
MAC = bytes.fromhex("a4b197000001")
IMAGES = [
    bsdp.Image(index=1001, name="Catalina NetBoot", boot_file="netboot/i386/booter",
               root_path="http://198.18.0.1:8080/images/catalina/NetBoot.dmg", default=True),
    bsdp.Image(index=4100, name="Installer", boot_file="netboot/install/booter",
               root_path="http://198.18.0.1:8080/images/install/NetInstall.dmg", install=True),
]

# INFORM[LIST] as a Mac sends it (Apple BSDP spec): ciaddr set, vendor class
# AAPLBSDPC/i386/<model>, option 43 = {1: LIST, 2: version 1.1, 5: reply port 68, 12: 1500}.
LIST_43 = bytes([1, 1, 1, 2, 2, 1, 1, 5, 2, 0, 68, 12, 2, 0x05, 0xdc])


def inform(bsdp_options: bytes) -> bytes:
    pkt = BOOTP(op=1, xid=0x1001, ciaddr="198.18.0.77", chaddr=MAC + bytes(10)) / DHCP(options=[
        ("message-type", "inform"), ("vendor_class_id", b"AAPLBSDPC/i386/MacBookPro9,1"),
        ("param_req_list", [1, 3, 17, 43, 60]), (43, bsdp_options), ("max_dhcp_size", 1500),
        "end"])
    return bytes(pkt)


def test_image_id_layout():
    assert IMAGES[0].id == 0x010003E9  # kind 1 (Mac OS X) << 24 | index 1001
    assert IMAGES[1].id == 0x81001004  # install bit | kind 1 | index 4100


def test_list_answer():
    req = codec.decode(inform(LIST_43))
    assert bsdp.is_bsdp(req)
    reply = bsdp.answer(req, IMAGES, CTX)
    msg = reply.message
    assert (reply.destination.ip, reply.destination.port) == ("198.18.0.77", 68)
    assert msg.message_type == MessageType.ACK and msg.ciaddr == "198.18.0.77"
    assert msg.options[Opt.VENDOR_CLASS_ID] == b"AAPLBSDPC"
    opts = bsdp.parse_options(msg.options[Opt.VENDOR_SPECIFIC])
    assert opts[1] == b"\x01" and opts[2] == b"\x01\x01"
    assert opts[3] == bytes([198, 18, 0, 1])
    assert struct.unpack("!I", opts[7])[0] == IMAGES[0].id
    expected_list = (struct.pack("!IB", IMAGES[0].id, 16) + b"Catalina NetBoot"
                     + struct.pack("!IB", IMAGES[1].id, 9) + b"Installer")
    assert opts[9] == expected_list
    # the wire form, read by scapy
    pkt = BOOTP(codec.encode(msg))
    raw = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}
    assert raw["vendor_class_id"] == b"AAPLBSDPC"
    assert raw["vendor_specific"] == msg.options[Opt.VENDOR_SPECIFIC]


def test_select_round_trip():
    listed = bsdp.answer(codec.decode(inform(LIST_43)), IMAGES, CTX).message
    opts = bsdp.parse_options(listed.options[Opt.VENDOR_SPECIFIC])
    chosen_id = opts[9][5 + 16:5 + 16 + 4]  # the second image's ID from the list
    select_43 = bsdp.build_options([(1, b"\x02"), (2, b"\x01\x01"), (3, opts[3]),
                                    (8, chosen_id)])
    reply = bsdp.answer(codec.decode(inform(select_43)), IMAGES, CTX)
    msg = reply.message
    back = bsdp.parse_options(msg.options[Opt.VENDOR_SPECIFIC])
    assert back[1] == b"\x02" and back[8] == chosen_id
    assert msg.file == b"netboot/install/booter" and msg.siaddr == "198.18.0.1"
    assert msg.options[17] == b"http://198.18.0.1:8080/images/install/NetInstall.dmg"


def test_select_unknown_image_fails_and_other_server_ignored():
    unknown = bsdp.build_options([(1, b"\x02"), (3, bytes([198, 18, 0, 1])),
                                  (8, struct.pack("!I", 0x01000009))])
    msg = bsdp.answer(codec.decode(inform(unknown)), IMAGES, CTX).message
    assert bsdp.parse_options(msg.options[Opt.VENDOR_SPECIFIC])[1] == b"\x03"
    other = bsdp.build_options([(1, b"\x02"), (3, bytes([198, 18, 0, 9])),
                                (8, struct.pack("!I", IMAGES[0].id))])
    result = bsdp.answer(codec.decode(inform(other)), IMAGES, CTX)
    assert isinstance(result, Ignore) and result.reason == "other_server"


def test_malformed_and_non_bsdp():
    assert isinstance(bsdp.answer(codec.decode(inform(b"\x01\x05\x01")), IMAGES, CTX), Ignore)
    plain = Message(options={Opt.MESSAGE_TYPE: bytes([MessageType.INFORM])})
    assert not bsdp.is_bsdp(plain)


def test_netboot_inventory_kind():
    kind = KINDS["netboot"]
    record, problems = parse_record(kind, "catalina", {
        "index": "1001", "boot_file": "netboot/i386/booter",
        "root_path": "http://x/NetBoot.dmg", "default": "yes"})
    assert problems == [] and record.index == 1001 and record.default
    record, problems = parse_record(kind, "bad", {"index": "0", "boot_file": "b"})
    assert record is None
    assert {p.field for p in problems} == {"index", "root_path"}
