"""Groups and custom DHCP options as pure code: selectors, specificity, ties, layering, the
one-shot boot, option names/types/values, and what DHCP's policy sends (docs/fleet.md,
docs/dhcp.md "Custom options")."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from services.dhcp import codec, policy
from services.dhcp.codec import Message, MessageType, Opt
from services.dhcp.policy import Lease, ServerContext
from services.dhcp.replies import ReplyEncoder
from shared import bootplan, dhcpoptions, groups
from shared.cache import StaticInventory
from shared.records import Group, Host, Profile, Subnet
from shared.schema import KINDS
from shared.validation import parse_record

MAC = "52:54:00:12:34:56"
HW = {"dmi": {"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)",
              "serial": "", "uuid": "0000"},
      "cpus": 2, "memory_bytes": 2 << 30, "firmware": "uefi", "arch": "x86_64",
      "disks": [{"name": "vda", "size_bytes": 8 << 30, "serial": "d1"}],
      "nics": [{"mac": MAC, "link": True}]}
SUBNETS = {"lab": Subnet("lab", ipaddress.IPv4Network("198.18.5.0/24"))}


@dataclasses.dataclass(frozen=True)
class HwHost(Host):
    """A host record with the hardware report the enlist work adds (field ``hw``, JSON)."""

    hw: object = None


def group(name: str, **fields) -> Group:
    raw = {k.replace("__", "."): v for k, v in fields.items()}
    record, problems = parse_record(KINDS["group"], name, raw)
    assert record is not None, problems
    return record


@pytest.mark.parametrize("selector, value, matched", [
    ("tags", "rack1", True), ("tags", "rack1,web", True), ("tags", "rack1,db", False),
    ("mac", MAC, True), ("mac", "52:54:00", True), ("mac", "52-54-00:*", True),
    ("mac", "52:54:01", False), ("mac", "aa:bb:cc:dd:ee:ff,52:54:00:12", True), ("mac", "*", True),
    ("arch", "x86_64", True), ("arch", "arm64", False),
    ("firmware", "uefi", True), ("firmware", "bios", False),
    ("subnet", "lab", True), ("subnet", "other", False),
    ("hw.dmi.vendor", "QEMU", True), ("hw.dmi.vendor", "qemu", True),
    ("hw.dmi.product", "Standard PC*", True), ("hw.dmi.vendor", "Dell*", False),
    ("hw.disks.0.size_bytes", str(8 << 30), True), ("hw.disks[0].name", "vda", True),
    ("hw.disks.1.name", "*", False), ("hw.cpus", "2", True), ("hw.nics.0.link", "true", True),
    ("hw.dmi", "*", False),  # a mapping is not a value
])
def test_selectors(selector, value, matched):
    host = HwHost(MAC, ip="198.18.5.21", tags=("rack1", "web"), hw=HW)
    found = group("g", **{f"match__{selector}": value})
    assert groups.matches(found, host, SUBNETS) is matched


def test_hw_as_json_text_and_no_report():
    import json
    g = group("g", match__hw__dmi__vendor="QEMU")
    assert groups.matches(g, HwHost(MAC, hw=json.dumps(HW)), SUBNETS)
    assert not groups.matches(g, Host(MAC), SUBNETS)  # no report: no hardware selector matches
    assert not groups.matches(g, HwHost(MAC, hw="{not json"), SUBNETS)


@pytest.mark.parametrize("selector, value, reason", [
    ("colour", "red", "unknown selector"), ("mac", "52:54:0", "whole octets"),
    ("mac", "52:54:00:12:34:56:78", "whole octets"), ("arch", "sparc", "x86_64, i386, arm64"),
    ("hw.dmi..vendor", "x", "hw path"), ("hw.dmi.vendor", " ", "give the value"),
    ("tags", "a b", "tags are"),
])
def test_bad_selectors_name_key_field_and_value(selector, value, reason):
    record, problems = parse_record(KINDS["group"], "g", {f"match.{selector}": value})
    assert record is None
    assert problems[0].key == "bootyard:group:g" and problems[0].field == f"match.{selector}"
    assert problems[0].value == value and reason in problems[0].reason


def test_specificity_most_specific_wins_and_host_overrides():
    host = HwHost(MAC, tags=("rack1", "web"), hw=HW, vars={"disk": "/dev/sdb"})
    broad = group("broad", match__mac="*", profile="p-any", var__disk="/dev/sda",
                  var__console="tty0", kernel_args="quiet")
    rack = group("rack", match__tags="rack1", profile="p-rack", var__console="ttyS0")
    qemu = group("qemu", match__tags="rack1", match__hw__dmi__vendor="QEMU", profile="p-qemu")
    assert [groups.specificity(g) for g in (broad, rack, qemu)] == [1, 1, 2]
    found = groups.resolve(host, [broad, rack, qemu], SUBNETS)
    assert found.groups == (("qemu", 2), ("broad", 1), ("rack", 1))
    assert found.host.profile == "p-qemu" and found.sources["profile"] == "group:qemu"
    # broad and rack both set console at specificity 1: a tie
    assert [str(c) for c in found.conflicts] == [
        "var.console: groups broad and rack match with the same specificity (1) and set it "
        "differently"]
    assert "console" not in found.host.vars  # from neither
    assert found.host.vars["disk"] == "/dev/sdb" and found.sources["var.disk"] == "host"
    assert found.host.kernel_args == "quiet" and found.sources["kernel_args"] == "group:broad"
    # the host's own value ends the tie
    found = groups.resolve(dataclasses.replace(host, vars={"console": "tty1"}),
                           [broad, rack, qemu], SUBNETS)
    assert not found.conflicts and found.host.vars["console"] == "tty1"
    # the same value is no tie
    same = group("same", match__tags="web", var__console="ttyS0")
    found = groups.resolve(host, [rack, same], SUBNETS)
    assert not found.conflicts and found.host.vars["console"] == "ttyS0"
    # a disabled group matches nothing
    off = dataclasses.replace(qemu, enabled=False)
    assert groups.resolve(host, [off], SUBNETS).host is host


def test_options_layer_by_code_whatever_the_spelling():
    host = Host(MAC, tags=("rack1",), options={"66": "host.example"})
    g = group("g", match__tags="rack1", **{"option.tftp-server-name": "group.example",
                                          "option.42": "10.0.0.1"})
    found = groups.resolve(host, [g], SUBNETS)
    assert found.host.options == {"tftp-server-name": "host.example",
                                  "ntp-servers": "10.0.0.1"}
    assert found.sources["option.tftp-server-name"] == "host"


def test_one_shot_boot_replaces_profile_and_mode_and_drops_the_kernel_override():
    host = Host(MAC, profile="debian12", boot_mode="local", kernel="custom/vmlinuz",
                kernel_args="console=ttyS0", once_profile="rescue")
    found = groups.resolve(host, [], SUBNETS)
    assert (found.host.profile, found.host.boot_mode, found.host.kernel) == \
        ("rescue", "live", None)
    assert found.host.kernel_args == "console=ttyS0"
    assert found.sources["profile"] == "host:once"


def test_effective_host_is_memoised_per_inventory_version():
    host = Host(MAC, tags=("rack1",))
    g = group("g", match__tags="rack1", profile="p")
    inv = StaticInventory(hosts=[host], groups=[g], profiles=[Profile("p", kernel="k")])
    first = bootplan.records(inv, MAC)[0]
    assert first.profile == "p" and bootplan.records(inv, MAC)[0] is first
    inv.put("group", dataclasses.replace(g, profile="q"))
    assert bootplan.records(inv, MAC)[0].profile == "q"
    inv.remove("group", "g")
    assert bootplan.records(inv, MAC)[0] is host  # no groups: the record itself


# ------------------------------------------------------------------ custom DHCP options

@pytest.mark.parametrize("name, value, code, data", [
    ("ntp-servers", "10.0.0.1, 10.0.0.2", 42, bytes([10, 0, 0, 1, 10, 0, 0, 2])),
    ("42", "10.0.0.1", 42, bytes([10, 0, 0, 1])),
    ("tftp-server-name", "boot.example", 66, b"boot.example"),
    ("224", "text:rack-7", 224, b"rack-7"), ("224", "u8:7", 224, b"\x07"),
    ("224", "u16:8080", 224, b"\x1f\x90"), ("224", "u32:1", 224, b"\x00\x00\x00\x01"),
    ("time-offset", "-3600", 2, (-3600).to_bytes(4, "big", signed=True)),
    ("ip-forwarding", "no", 19, b"\x00"), ("224", "bool:yes", 224, b"\x01"),
    ("vendor-encapsulated-options", "06:01:08:ff", 43, b"\x06\x01\x08\xff"),
    ("43", "hex:0601 08ff", 43, b"\x06\x01\x08\xff"), ("150", "10.0.0.9", 150, bytes([10, 0, 0, 9])),
    ("224", "ip:10.0.0.1", 224, bytes([10, 0, 0, 1])),
    ("interface-mtu", "9000", 26, (9000).to_bytes(2, "big")),
])
def test_option_values(name, value, code, data):
    assert dhcpoptions.parse(name, value) == (code, data)


@pytest.mark.parametrize("name, value, reason", [
    ("subnet-mask", "255.0.0.0", "unknown name"), ("1", "ip:255.0.0.0", "subnet's network"),
    ("51", "u32:60", "lease_time"), ("53", "u8:5", "message type"), ("12", "text:x", "hostname"),
    ("224", "rack", "give its type"), ("224", "u8:256", "between 0 and 255"),
    ("ntp-servers", "10.0.0.256", "not an IPv4 address"), ("224", "hex:0g", "hex bytes"),
    ("224", "text:" + "x" * 256, "at most 255"), ("300", "u8:1", "1 to 254"),
    ("domain-name", "caf\u00e9", "printable ASCII"),
])
def test_refused_options(name, value, reason):
    with pytest.raises(dhcpoptions.OptionError, match=reason):
        dhcpoptions.parse(name, value)
    record, problems = parse_record(KINDS["subnet"], "lab", {"network": "10.0.0.0/24",
                                                             f"option.{name}": value})
    assert record is None and problems[0].field == f"option.{name}"
    assert problems[0].key == "bootyard:subnet:lab" and problems[0].value == value


CTX = ServerContext("198.18.5.1", "http://198.18.5.1:8080")


def request(prl: bytes, pxe: bool = False) -> Message:
    options = {Opt.MESSAGE_TYPE: bytes([MessageType.DISCOVER]), Opt.PARAMETER_REQUEST_LIST: prl}
    if pxe:
        options[Opt.VENDOR_CLASS_ID] = b"PXEClient:Arch:00000:UNDI:002001"
        options[Opt.CLIENT_SYSTEM_ARCH] = b"\x00\x00"
    return Message(xid=1, chaddr=bytes.fromhex(MAC.replace(":", "")) + bytes(10),
                   options=options)


def test_policy_sends_requested_options_with_precedence_and_boot_plan_rules():
    subnet = dataclasses.replace(SUBNETS["lab"], router="198.18.5.1",
                                 options={"ntp-servers": "198.18.5.5",
                                          "routers": "198.18.5.254", "bootfile-name": "phone.cfg"})
    host = Host(MAC, options={"42": "198.18.5.6", "tftp-server-name": "tftp.example",
                              "43": "hex:0a0b"})
    prl = bytes([1, 3, 42, 43, 66, 67])
    reply = policy.decide(request(prl), host, None, subnet, Lease("198.18.5.20", 600), CTX, MAC)
    options = reply.message.options
    assert options[42] == bytes([198, 18, 5, 6])  # the host's over the subnet's
    assert options[3] == bytes([198, 18, 5, 254])  # a custom option over the subnet's field
    assert options[66] == b"tftp.example" and options[43] == b"\x0a\x0b"
    assert options[67] == b"phone.cfg"  # no boot file chosen (not a PXE client): sent
    reply = policy.decide(request(bytes([1, 3])), host, None, subnet,
                          Lease("198.18.5.20", 600), CTX, MAC)
    assert 42 not in reply.message.options and 66 not in reply.message.options  # not asked
    # a PXE client: the boot plan's boot file wins over a custom 67; a custom 43 replaces
    # bootyard's PXE discovery control (documented)
    reply = policy.decide(request(prl, pxe=True), host, None, subnet,
                          Lease("198.18.5.20", 600), CTX, MAC)
    assert reply.message.file == b"undionly.kpxe"
    assert reply.message.options.get(67, b"undionly.kpxe") == b"undionly.kpxe"
    assert reply.message.options[43] == b"\x0a\x0b"
    plain = policy.decide(request(prl, pxe=True), Host(MAC), None, SUBNETS["lab"],
                          Lease("198.18.5.20", 600), CTX, MAC)
    assert plain.message.options[43] == policy.PXE_VENDOR_OPTIONS


def test_reply_templates_carry_the_same_custom_options_as_decide():
    subnet = dataclasses.replace(SUBNETS["lab"], options={"ntp-servers": "198.18.5.5"})
    host = Host(MAC, options={"tftp-server-name": "a.example"})
    encoder = ReplyEncoder()
    for prl in (bytes([1, 42, 66]), bytes([1, 42]), bytes([1])):
        msg = request(prl)
        boot = policy.choose_boot(msg, host, None, subnet, CTX, MAC)
        template = encoder.template(msg, host, None, subnet, 600, CTX, MAC, boot)
        packet, _ = encoder.pack(msg, template, "198.18.5.20", CTX)
        expected = codec.encode(policy.decide(msg, host, None, subnet,
                                              Lease("198.18.5.20", 600), CTX, MAC).message)
        assert packet == expected, prl
