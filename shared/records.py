"""The inventory's typed records: one frozen dataclass a kind (pure: no Redis here).

:func:`shared.validation.parse_record` builds them from Redis hashes (the fields each takes are
declared in :mod:`shared.schema`); services, templates and checks read them. :func:`plain` gives
a record as plain data for templates and JSON, without its secret fields.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Host:
    mac: str
    hostname: str | None = None
    ip: str | None = None
    profile: str | None = None
    boot_mode: str = "install"
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    enabled: bool = True
    description: str = ""
    hw: Mapping[str, Any] | None = None  # the hardware report (shared/hardware.py)
    # power control (shared/power.py, docs/power.md)
    power: str | None = None
    power_address: str | None = None
    power_user: str | None = None
    power_secret: str | None = dataclasses.field(default=None, repr=False,
                                                 metadata={"secret": True})
    power_system: str | None = None
    power_auth: str = "session"
    power_verify_tls: bool = True
    power_mac: str | None = None
    power_interface: str | None = None
    kernel: str | None = None  # overrides the profile's kernel (rare)
    kernel_args: str = ""  # appended after the profile's cmdline
    once_profile: str | None = None  # one-shot boot (bootyard host rescue)
    once_mode: str | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)  # option.<name>


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    kernel: str | None = None
    initrd: tuple[str, ...] = ()
    cmdline: str = ""
    install: str = "none"
    template: str | None = None
    root_image: str | None = None
    live_style: str = "dracut"
    netroot_style: str = "dracut"
    export: str | None = None
    arch: str | None = None
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""
    menu: bool = False  # offered in the unknown-host menu (http.unknown_host menu)
    image: str | None = None  # an image record: kernel/initrd/root_image the profile leaves unset


@dataclasses.dataclass(frozen=True)
class Subnet:
    name: str
    network: ipaddress.IPv4Network
    ranges: tuple[tuple[str, str], ...] = ()
    router: str | None = None
    dns: tuple[str, ...] = ()
    domain: str | None = None
    lease_time: int = 3600
    relays: tuple[str, ...] = ()
    next_server: str | None = None
    boot_file_bios: str | None = None
    boot_file_uefi: str | None = None
    boot_file_arm64: str | None = None
    enabled: bool = True
    description: str = ""
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)  # option.<name>


@dataclasses.dataclass(frozen=True)
class Export:
    name: str
    kind: str
    backing: str
    readonly: bool = False
    cow: bool = False
    aoe_shelf: int | None = None
    aoe_slot: int | None = None
    iqn: str | None = None
    lun: int = 0  # docs/blockexport.md: LUN 0 is the disk (iPXE's iscsi:server::::iqn)
    description: str = ""
    chap_user: str = ""
    chap_secret: str = dataclasses.field(default="", repr=False)
    chap_mutual_user: str = ""
    chap_mutual_secret: str = dataclasses.field(default="", repr=False)
    allow: tuple[str, ...] = ()
    unmatched: str = "plain"
    write_cache: bool = True  # iSCSI: WCE 1 (docs/blockexport.md "Durability and WCE")


@dataclasses.dataclass(frozen=True)
class Mirror:
    name: str
    source: str
    path: str
    interval: int = 21600
    enabled: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    bwlimit: int = 0
    check: str = "auto"
    keep: int | None = None
    keyring: str | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class NetbootImage:
    name: str
    index: int
    boot_file: str
    root_path: str
    title: str | None = None
    image_kind: str = "macosx"
    install: bool = False
    default: bool = False
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Discovered:
    """A machine that booted the discovery image and reported its hardware (docs/discovery.md):
    not a host until it is adopted."""

    mac: str
    ip: str | None = None
    first_seen: int = 0
    last_seen: int = 0
    reports: int = 0
    hw: Mapping[str, Any] | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class DiscoveryRule:
    """Adopts discovered machines whose report matches (docs/discovery.md)."""

    name: str
    match: tuple[str, ...]  # PATH=GLOB items
    profile: str
    hostname: str | None = None  # a pattern: node-{serial}, rack1-{n}
    boot_mode: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 100
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Group:
    """Hosts matched by selectors (``match.<key>``) and what they get (shared/groups.py)."""

    name: str
    match: Mapping[str, str] = dataclasses.field(default_factory=dict)
    profile: str | None = None
    kernel: str | None = None
    kernel_args: str = ""
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Image:
    """Boot files under the images root (``bootyard image import``, docs/inventory.md)."""

    name: str
    kernel: str
    initrd: tuple[str, ...] = ()
    squashfs: str | None = None
    sha256: tuple[tuple[str, str], ...] = ()  # (path under the images root, hex digest)
    source_kind: str = "manual"
    source: str = ""
    imported: str = ""  # UTC time of the import, ISO 8601
    description: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        return (self.kernel,) + self.initrd + ((self.squashfs,) if self.squashfs else ())



def plain(record: Any) -> dict[str, Any]:
    """A parsed record (Host, Profile, Subnet, ...) as plain data for templates and JSON: lists for
    tuples, dicts for mappings, strings for addresses and networks; {} for None. Secret fields
    (``power_secret``) are left out: templates and boot scripts never see them."""
    if record is None:
        return {}
    return {fld.name: _plain_value(getattr(record, fld.name)) for fld in dataclasses.fields(record)
            if not fld.metadata.get("secret")}


def _plain_value(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv4Address)):
        return str(value)
    return value
