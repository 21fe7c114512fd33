"""An adopted machine's hardware report meets the groups: ``match.arch``, ``match.firmware`` and
``match.hw.<path>`` select on the ``hw`` that adoption copied from the discovered record, and the
effective host keeps its ``hw`` for templates."""

from __future__ import annotations

import ipaddress

from enlistkit import MAC, REPORT

from shared import discovery, groups, hardware
from shared.records import Subnet
from shared.schema import KINDS
from shared.validation import parse_record

SUBNETS = {"lab": Subnet("lab", ipaddress.IPv4Network("198.18.5.0/24"))}


def _group(name: str, raw: dict[str, str]):
    record, problems = parse_record(KINDS["group"], name, raw)
    assert record is not None, problems
    return record


def _adopted_host():
    dump = {"discovered": {MAC: {"ip": "198.18.5.120", "hw": hardware.dumps(
        hardware.check(REPORT))}}, "host": {}}
    changes = discovery.adoption_changes(dump, MAC, "debian12", hostname="node1",
                                         tags=("rack1",))
    host, problems = parse_record(KINDS["host"], MAC, changes[("host", MAC)])
    assert host is not None and not problems, problems
    return host


def test_group_selectors_read_the_adopted_hosts_hardware_report():
    host = _adopted_host()
    assert host.hw["arch"] == "x86_64" and host.hw["firmware"] == "bios"
    for raw, matched in [
            ({"match.arch": "x86_64"}, True), ({"match.arch": "arm64"}, False),
            ({"match.firmware": "bios"}, True), ({"match.firmware": "uefi"}, False),
            ({"match.hw.dmi.vendor": "qemu"}, True), ({"match.hw.dmi.serial": "LAB-*"}, True),
            ({"match.hw.disks.0.name": "vda"}, True), ({"match.hw.disks[0].serial": "disk-1"}, True),
            ({"match.hw.nics.0.driver": "virtio_net"}, True),
            ({"match.hw.dmi.vendor": "Dell*"}, False), ({"match.hw.disks.1.name": "*"}, False)]:
        assert groups.matches(_group("g", raw), host, SUBNETS) is matched, raw


def test_the_most_specific_hardware_group_wins_and_the_effective_host_keeps_hw():
    host = _adopted_host()
    qemu = _group("qemu", {"match.hw.dmi.vendor": "QEMU", "match.firmware": "bios",
                           "kernel_args": "console=ttyS0,115200", "var.disk": "/dev/vda"})
    rack = _group("rack1", {"match.tags": "rack1", "kernel_args": "console=tty0",
                            "profile": "rocky9"})
    found = groups.resolve(host, [rack, qemu], SUBNETS)
    assert [name for name, _ in found.groups] == ["qemu", "rack1"]
    assert found.host.kernel_args == "console=ttyS0,115200"
    assert found.sources["kernel_args"] == "group:qemu"
    assert found.host.profile == "debian12" and found.sources["profile"] == "host"
    assert found.host.vars["disk"] == "/dev/vda"
    assert found.host.hw == host.hw  # templates see hw.disks[0].name on the effective host
