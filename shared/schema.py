"""The inventory's Redis key schema and its validation (pure: no Redis here).

Every object is one Redis hash of strings, named ``bootyard:<kind>:<id>`` (:mod:`shared.keys`
builds every key):

=========  ==================================  =============================================
kind       key                                 id
=========  ==================================  =============================================
host       ``bootyard:host:52:54:00:ab:cd:ef``  canonical MAC (lower case, colons)
profile    ``bootyard:profile:debian12``        name: ``[a-z0-9][a-z0-9._-]*``, up to 63
subnet     ``bootyard:subnet:lab``              name
export     ``bootyard:export:web1-root``        name (a block device exported over AoE/iSCSI)
mirror     ``bootyard:mirror:debian``           name (an OS mirror kept in sync by rsync)
netboot    ``bootyard:netboot:catalina``        name (an Apple NetBoot image offered over BSDP)
group      ``bootyard:group:rack1``             name (hosts matched by selectors: groups.py)
image      ``bootyard:image:debian12``          name (a kernel, initrds, a squashfs under the
                                               images root, written by ``bootyard image import``)
discovery_rule ``bootyard:discovery_rule:dell`` name (adopts discovered machines it matches)
discovered ``bootyard:discovered:52:54:...``    MAC of a machine that reported its hardware from the
                                               discovery image (docs/discovery.md), not yet a host
=========  ==================================  =============================================

docs/inventory.md documents every field. This module declares them: each kind's
:class:`FieldSpec` s (the parser of each field, its help text, required, list-like, secret), its
record type and its id; :data:`KINDS` is the table every other module reads. The rest lives next
to it: the field parsers in :mod:`shared.fields`, the record types in :mod:`shared.records`,
validation of one hash in :mod:`shared.validation` (``parse_record``), and the hash's other forms
(canonical text, the structured YAML form) in :mod:`shared.hashform`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from shared import keys
from shared.addresses import AddressError, normalise_mac
from shared.fields import (
    BOOT_MODES,
    EXPORT_KINDS,
    IMAGE_SOURCES,
    INSTALL_KINDS,
    LIVE_STYLES,
    MIRROR_CHECKS,
    NAME_RE,
    NETROOT_STYLES,
    POWER_METHODS,
    _absolute_path,
    _bool,
    _chap_name,
    _chap_secret,
    _checksums,
    _choice,
    _cmdline,
    _hostname,
    _hostname_pattern,
    _hw,
    _hw_match,
    _image_path,
    _image_paths,
    _initiator_list,
    _int_between,
    _ipv4,
    _ipv4_list,
    _iqn,
    _kernel_args,
    _location,
    _locations,
    _mac,
    _match_field,
    _mirror_source,
    _name,
    _network,
    _option_field,
    _power_check,
    _ranges,
    _rsync_patterns,
    _tags,
    _text,
)
from shared.records import (
    Discovered,
    DiscoveryRule,
    Export,
    Group,
    Host,
    Image,
    Mirror,
    NetbootImage,
    Profile,
    Subnet,
)

VAR_PREFIX = "var."


@dataclasses.dataclass(frozen=True)
class Family:
    """Fields ``<prefix><name>`` gathered into one record attribute (and one YAML section),
    as ``var.<name>`` are: ``option.<name>`` (DHCP options), ``match.<key>`` (selectors)."""

    prefix: str
    attr: str  # the record attribute and the YAML/JSON section
    parse: Callable[[str, str], Any]  # (name, value) -> value, or FieldError
    doc: str


OPTION_FAMILY = Family("option.", "options", _option_field,
                       "custom DHCP option: option.<name or number> = [TYPE:]VALUE")
MATCH_FAMILY = Family("match.", "match", _match_field,
                      "selector: match.tags, match.mac, match.arch, match.firmware, "
                      "match.subnet, match.hw.<path>")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    parse: Callable[[str], Any]
    doc: str
    required: bool = False
    list_like: bool = False  # comma-separated: exported to YAML as a list
    secret: bool = False  # never printed, logged or recorded (shared/secrets.py mask(): power_secret, CHAP secrets)


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    record: type
    id_field: str
    fields: Mapping[str, FieldSpec]
    has_vars: bool = False
    families: tuple[Family, ...] = ()

    def family(self, fname: str) -> Family | None:
        """The family a field name belongs to (``option.ntp-servers``), or None."""
        for family in self.families:
            if fname.startswith(family.prefix):
                return family
        return None

    def key(self, ident: str) -> str:
        return keys.object_key(self.name, self.canonical_id(ident))

    @property
    def pattern(self) -> str:
        return keys.object_pattern(self.name)

    def canonical_id(self, ident: str) -> str:
        if self.name in MAC_KINDS:
            return normalise_mac(ident)
        value = ident.strip().lower()
        if not NAME_RE.fullmatch(value):
            raise AddressError(f"{ident!r} is not a valid {self.name} name (lower-case letters, "
                               "digits, '.', '_' and '-', up to 63)")
        return value


_ANY_TEXT = FieldSpec(_text, "free text")
MAC_KINDS = ("host", "discovered")  # kinds whose id is a MAC

KINDS: dict[str, Kind] = {
    "host": Kind("host", "hosts", Host, "mac", {
        "hostname": FieldSpec(_hostname, "host name handed out by DHCP and used in templates"),
        "ip": FieldSpec(_ipv4, "fixed (reserved) IPv4 address; empty for a pool address"),
        "profile": FieldSpec(_name, "name of the profile this host boots"),
        "boot_mode": FieldSpec(_choice(BOOT_MODES), "install, live, netroot, sanboot or local"),
        "tags": FieldSpec(_tags, "comma-separated labels", list_like=True),
        "enabled": FieldSpec(_bool, "yes (default) or no: services do not boot a disabled host"),
        "description": _ANY_TEXT,
        # power control (docs/power.md)
        "power": FieldSpec(_choice(POWER_METHODS), "power control: wol, ipmi or redfish"),
        "power_address": FieldSpec(_power_check("parse_address"), "BMC address: host[:port] (IPMI, Redfish) "
                                   "or https://host[:port] (Redfish)"),
        "power_user": FieldSpec(_text, "BMC user name"),
        "power_secret": FieldSpec(_text, "BMC password (a secret: never printed; '-' on the "
                                  "command line reads it from standard input)", secret=True),
        "power_system": FieldSpec(_power_check("parse_system"), "Redfish ComputerSystem path (default: the "
                                  "BMC's only system)"),
        "power_auth": FieldSpec(_choice(("session", "basic")), "Redfish authentication: "
                                "session (default) or basic"),
        "power_verify_tls": FieldSpec(_bool, "yes (default): verify the Redfish BMC's TLS "
                                      "certificate; no for a self-signed one"),
        "power_mac": FieldSpec(_mac, "MAC the Wake-on-LAN packet wakes (default: the host's)"),
        "power_interface": FieldSpec(_power_check("parse_interface"), "deploy interface Wake-on-LAN is sent on "
                                     "(default: every deploy interface)"),
        "kernel": FieldSpec(_location, "kernel overriding the profile's (rare): a path under "
                            "the images root or a URL"),
        "kernel_args": FieldSpec(_kernel_args, "extra kernel arguments, after the profile's "
                                 "cmdline (console=ttyS0,115200 net.ifnames=0)"),
        "once_profile": FieldSpec(_name, "one-shot boot: this profile once, then back "
                                  "(bootyard host rescue)"),
        "once_mode": FieldSpec(_choice(("install", "live", "netroot", "sanboot")),
                               "boot mode of the one-shot boot (default live)"),
        "hw": FieldSpec(_hw, "hardware report (JSON, docs/discovery.md); templates see it as hw"),
    }, has_vars=True, families=(OPTION_FAMILY,)),
    "profile": Kind("profile", "profiles", Profile, "name", {
        "kernel": FieldSpec(_location, "kernel path under the images root, or an http(s):// "
                            "or tftp:// URL"),
        "initrd": FieldSpec(_locations, "comma-separated initrd paths or URLs", list_like=True),
        "cmdline": FieldSpec(_cmdline, "kernel command line (Jinja2 template)"),
        "install": FieldSpec(_choice(INSTALL_KINDS), "none, kickstart, preseed or cloud-init"),
        "template": FieldSpec(_text, "install template file name in the templates directory"),
        "root_image": FieldSpec(_location, "squashfs root image path under the images root "
                                "or a URL (live)"),
        "live_style": FieldSpec(_choice(LIVE_STYLES), "dracut (root=live:URL) or rooturl"),
        "netroot_style": FieldSpec(_choice(NETROOT_STYLES), "AoE netroot: dracut "
                                   "(netroot=aoe:eS.L rd.neednet=1) or kernel (root= only)"),
        "export": FieldSpec(_name, "block export to boot from (netroot, sanboot)"),
        "arch": FieldSpec(_choice(("x86_64", "i386", "arm64")), "machine architecture"),
        "description": _ANY_TEXT,
        "menu": FieldSpec(_bool, "yes: offered in the unknown-host menu (http.unknown_host "
                          "menu); no (default)"),
        "image": FieldSpec(_name, "image (bootyard image import) whose kernel, initrds and "
                           "squashfs the profile boots where it sets none of its own"),
    }, has_vars=True),
    "subnet": Kind("subnet", "subnets", Subnet, "name", {
        "network": FieldSpec(_network, "IPv4 network in CIDR form", required=True),
        "ranges": FieldSpec(_ranges, "dynamic pools: FIRST-LAST[,FIRST-LAST...]", list_like=True),
        "router": FieldSpec(_ipv4, "default gateway (DHCP option 3)"),
        "dns": FieldSpec(_ipv4_list, "DNS servers (option 6)", list_like=True),
        "domain": FieldSpec(_hostname, "domain name (option 15)"),
        "lease_time": FieldSpec(_int_between(60, 31536000), "lease time in seconds"),
        "relays": FieldSpec(_ipv4_list, "relay (giaddr) addresses that reach this subnet",
                            list_like=True),
        "next_server": FieldSpec(_ipv4, "TFTP server address (siaddr)"),
        "boot_file_bios": FieldSpec(_text, "boot file for legacy BIOS PXE"),
        "boot_file_uefi": FieldSpec(_text, "boot file for x86 UEFI PXE"),
        "boot_file_arm64": FieldSpec(_text, "boot file for ARM64 UEFI PXE"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "description": _ANY_TEXT,
    }, families=(OPTION_FAMILY,)),
    "export": Kind("export", "exports", Export, "name", {
        "kind": FieldSpec(_choice(EXPORT_KINDS), "aoe or iscsi", required=True),
        "backing": FieldSpec(_text, "backing file or block device path", required=True),
        "readonly": FieldSpec(_bool, "yes or no (default)"),
        "cow": FieldSpec(_bool, "yes: backing is a golden image, never written; each host "
                                "writes to its own copy-on-write overlay. no (default)"),
        "aoe_shelf": FieldSpec(_int_between(0, 65534), "AoE shelf (major) number"),
        "aoe_slot": FieldSpec(_int_between(0, 254), "AoE slot (minor) number"),
        "iqn": FieldSpec(_iqn, "iSCSI target name"),
        "lun": FieldSpec(_int_between(0, 255), "iSCSI LUN of the disk (default 0: iPXE's "
                                               "iscsi:server::::iqn finds it)"),
        "description": _ANY_TEXT,
        "chap_user": FieldSpec(_chap_name, "iSCSI: CHAP user name initiators log in with"),
        "chap_secret": FieldSpec(_chap_secret, "iSCSI: CHAP secret initiators must prove "
                                 "(12-255 characters; with it, CHAP is required)", secret=True),
        "chap_mutual_user": FieldSpec(_chap_name, "iSCSI: the target's CHAP name for mutual "
                                      "CHAP (default: the iqn)"),
        "chap_mutual_secret": FieldSpec(_chap_secret, "iSCSI: the target's secret for mutual "
                                        "CHAP (12-255 characters, not the chap_secret)",
                                        secret=True),
        "allow": FieldSpec(_initiator_list, "iSCSI: initiators allowed to log in (IQNs, "
                           "addresses, networks); empty: any", list_like=True),
        "unmatched": FieldSpec(_choice(("plain", "refuse")), "iSCSI: a session that belongs "
                               "to no inventory host gets the plain disk (plain, default; "
                               "the golden image read-only for cow) or is refused (refuse)"),
        "write_cache": FieldSpec(_bool, "iSCSI: yes (default): a write-back cache (WCE 1), "
                                 "writes durable on FUA or SYNCHRONIZE CACHE; no: every write "
                                 "durable when answered"),
    }),
    "mirror": Kind("mirror", "mirrors", Mirror, "name", {
        "source": FieldSpec(_mirror_source, "rsync://host/module/path or an absolute local "
                            "directory", required=True),
        "path": FieldSpec(_name, "directory under the mirror root", required=True),
        "interval": FieldSpec(_int_between(300, 604800), "seconds between syncs"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "include": FieldSpec(_rsync_patterns, "comma-separated rsync patterns copied even when "
                             "an exclude matches", list_like=True),
        "exclude": FieldSpec(_rsync_patterns, "comma-separated rsync patterns not copied",
                             list_like=True),
        "bwlimit": FieldSpec(_int_between(0, 10_000_000), "rsync bandwidth limit in KiB/s "
                             "(0: none)"),
        "check": FieldSpec(_choice(MIRROR_CHECKS), "what is checked before a publish: auto "
                           "(default: apt or yum if the tree looks like one), apt, yum, files"),
        "keep": FieldSpec(_int_between(0, 100), "old snapshots kept besides the published one "
                          "(default: mirrorsync.keep)"),
        "keyring": FieldSpec(_absolute_path, "OpenPGP keyring file (on the mirrorsync host) whose "
                             "key must have signed an apt mirror's InRelease or Release.gpg"),
        "description": _ANY_TEXT,
    }),
    "netboot": Kind("netboot", "netboots", NetbootImage, "name", {
        "index": FieldSpec(_int_between(1, 65535), "BSDP image index: 1-4095 on this server "
                           "only, 4096-65535 the same image on several servers", required=True),
        "boot_file": FieldSpec(_text, "booter path under the TFTP root", required=True),
        "root_path": FieldSpec(_text, "root image URL (http://.../NetBoot.dmg or nfs:...)",
                               required=True),
        "title": FieldSpec(_text, "name shown in the Mac's startup disk list (default: name)"),
        "image_kind": FieldSpec(_choice(("macos9", "macosx", "macosx-server", "diagnostics")),
                                "BSDP image kind (default macosx)"),
        "install": FieldSpec(_bool, "yes for an install image, no (default) for a boot image"),
        "default": FieldSpec(_bool, "yes for the image a Mac boots when none is chosen"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "description": _ANY_TEXT,
    }),
    "image": Kind("image", "images", Image, "name", {
        "kernel": FieldSpec(_image_path, "kernel path under the images root", required=True),
        "initrd": FieldSpec(_image_paths, "comma-separated initrd paths under the images root",
                            list_like=True),
        "squashfs": FieldSpec(_image_path, "squashfs root image path under the images root"),
        "sha256": FieldSpec(_checksums, "comma-separated PATH=SHA256 of each file (written by "
                            "bootyard image import, checked by bootyard image verify)",
                            list_like=True),
        "source_kind": FieldSpec(_choice(IMAGE_SOURCES), "where the files came from: dir, "
                                 "tarball, iso, url, deb or manual"),
        "source": FieldSpec(_text, "the directory, file or URL imported"),
        "imported": FieldSpec(_text, "when it was imported (UTC, ISO 8601)"),
        "description": _ANY_TEXT,
    }),
    "discovered": Kind("discovered", "discovered", Discovered, "mac", {
        "ip": FieldSpec(_ipv4, "address it reported from"),
        "first_seen": FieldSpec(_int_between(0, 1 << 40), "Unix time of its first report"),
        "last_seen": FieldSpec(_int_between(0, 1 << 40), "Unix time of its last report"),
        "reports": FieldSpec(_int_between(0, 1 << 40), "reports received"),
        "hw": FieldSpec(_hw, "hardware report (JSON, docs/discovery.md)"),
        "description": _ANY_TEXT,
    }),
    "discovery_rule": Kind("discovery_rule", "discovery_rules", DiscoveryRule, "name", {
        "match": FieldSpec(_hw_match, "hardware PATH=GLOB items, all must hold: "
                           "dmi.vendor=QEMU,dmi.product=Standard*", required=True,
                           list_like=True),
        "profile": FieldSpec(_name, "profile of the hosts it adopts", required=True),
        "hostname": FieldSpec(_hostname_pattern, "host name pattern: node-{serial}, rack1-{n} "
                              "(placeholders mac serial uuid vendor product n)"),
        "boot_mode": FieldSpec(_choice(BOOT_MODES), "boot mode of the hosts it adopts"),
        "tags": FieldSpec(_tags, "tags of the hosts it adopts", list_like=True),
        "priority": FieldSpec(_int_between(0, 10000), "lower is tried first (default 100); two "
                              "matching rules of one priority adopt nothing"),
        "enabled": FieldSpec(_bool, "yes (default) or no"),
        "description": _ANY_TEXT,
    }),
}
KINDS["group"] = Kind("group", "groups", Group, "name", {
    "profile": FieldSpec(_name, "profile of the hosts it matches"),
    "kernel": FieldSpec(_location, "kernel overriding the profile's for its hosts"),
    "kernel_args": FieldSpec(_kernel_args, "extra kernel arguments for its hosts"),
    "enabled": FieldSpec(_bool, "yes (default) or no: a disabled group matches nothing"),
    "description": _ANY_TEXT,
}, has_vars=True, families=(MATCH_FAMILY, OPTION_FAMILY))
KIND_BY_PLURAL = {k.plural: k for k in KINDS.values()}


def split_key(key: str) -> tuple[Kind, str] | None:
    """(kind, id) for a bootyard object key, or None if the key is not one."""
    found = keys.split_object_key(key, KINDS)
    return None if found is None else (KINDS[found[0]], found[1])
