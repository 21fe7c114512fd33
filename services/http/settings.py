"""Settings of the HTTP service (section ``http``); see docs/http.md for each key."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from shared.bootplan import check_unknown_host
from shared.bootstate import Expected
from shared.powerctl import PowerSection
from shared.settings import CommonSettings, non_negative, port_number, positive, setting

SCOPES = ("read", "admin")


def parse_tokens(entries) -> dict[str, tuple[str, str]]:
    """``http.admin_tokens`` entries ``NAME:SCOPE:TOKEN`` (scope ``read`` or ``admin``) as
    {token: (name, scope)}; ValueError names a bad entry (without its token)."""
    tokens: dict[str, tuple[str, str]] = {}
    for entry in entries:
        name, _, rest = entry.strip().partition(":")
        scope, _, token = rest.partition(":")
        if not name or scope not in SCOPES or len(token) < 16:
            raise ValueError(f"admin token {name or '?'!r}: write NAME:SCOPE:TOKEN with scope "
                             "read or admin and a token of at least 16 characters")
        if token in tokens:
            raise ValueError(f"admin tokens {tokens[token][0]!r} and {name!r} are the same")
        tokens[token] = (name, scope)
    return tokens


def _check_tokens(value) -> None:
    parse_tokens(value)


def _workers(value: int) -> None:
    if not 1 <= value <= 64:
        raise ValueError("must be between 1 and 64")


@dataclasses.dataclass(frozen=True)
class HttpSection:
    host: str = setting("0.0.0.0", help="address the boot/file listener binds")
    port: int = setting(8080, help="port of the boot/file listener", check=port_number)
    public_url: str = setting(
        "", help="base URL clients reach this service at (http://10.0.0.1:8080); empty: taken "
                 "from each request's Host header")
    images_root: str = setting("/var/lib/bootyard/images",
                               help="directory served under /images/ (kernels, initrds, roots)")
    mirror_root: str = setting("/var/lib/bootyard/mirror",
                               help="directory served under /mirror/ (OS mirrors)")
    templates_dir: str = setting("templates", help="directory of the Jinja2 install templates")
    token_secret: str = setting(
        "", help="secret for per-host tokens (HMAC-SHA256 of the MAC); required, e.g. the "
                 "output of `openssl rand -hex 32`", secret=True)
    token_in_scripts: bool = setting(
        False, help="put the per-host token into install URLs on kernel command lines (only for "
                    "networks where client addresses cannot be checked; anyone who fetches a "
                    "host's boot script then learns its token)")
    san_server: str = setting(
        "", help="address of the AoE/iSCSI target for sanboot and netroot; empty: the address "
                 "the client reached this service on")
    initiator_prefix: str = setting("iqn.2026-11.org.bootyard",
                                    help="iSCSI initiator names are <prefix>:<hostname or MAC>")
    unknown_host: str = setting("discovery", check=check_unknown_host,
                                help="unknown MACs (one vocabulary with tftp.unknown_host): "
                                     "discovery (record, show a message, next boot device), "
                                     "local (a message, next boot device), none (a bare "
                                     "exit), menu (an iPXE menu: discovery, local disk, the "
                                     "profiles with menu yes) or profile:<name> (boot that "
                                     "profile); 'exit' is the deprecated spelling of none")
    unknown_delay: int = setting(10, help="seconds an unknown host shows its message (and "
                                          "the unknown-host menu waits before its default)",
                                 check=non_negative)
    render_cache_size: int = setting(4096, help="rendered scripts/files kept in memory "
                                                "(0 disables the render cache)",
                                     check=non_negative)
    fast_path: bool = setting(True, help="answer render-cache hits for scripts and install "
                                          "files before aiohttp's request handling")
    workers: int = setting(1, help="processes serving the boot/file listener (SO_REUSEPORT); "
                                   "above 1 this process supervises them (docs/http.md)",
                           check=_workers)
    header_timeout: float = setting(10.0, help="seconds a client has to send a whole request "
                                               "head once it has begun (then: closed)",
                                    check=positive)
    idle_timeout: float = setting(30.0, help="seconds a connection may wait for its next "
                                             "request (then: closed)", check=positive)
    max_connections: int = setting(1000, help="open connections per listener and process; "
                                              "more are closed at once",
                                   check=positive)
    max_body: int = setting(8 << 20, help="largest request body accepted in bytes (admin API "
                                          "imports); a larger one is refused with 413",
                            check=positive)
    file_events: bool = setting(True, help="record an http.file event for each /images/ "
                                           "download (never for /mirror/)")
    admin_enabled: bool = setting(True, help="serve the admin API (/api/v1/...)")
    admin_host: str = setting("127.0.0.1", help="address the admin API binds")
    admin_port: int = setting(9180, help="port of the admin API", check=port_number)
    admin_token: str = setting("", help="bearer token for the admin API; may only be empty "
                                        "when admin_host is a loopback address", secret=True)
    admin_tokens: tuple[str, ...] = setting(
        (), help="more admin API tokens, each NAME:SCOPE:TOKEN (scope read or admin; the name "
                 "is who the history names); admin_token is the one named admin",
        secret=True, check=_check_tokens)
    console: bool = setting(True, help="serve the web console on the admin listener "
                                       "(/console/, docs/console.md)")
    admin_hostnames: tuple[str, ...] = setting(
        (), help="host names the admin API may be reached by (Host header), besides localhost "
                 "and IP addresses; any other name is refused (DNS rebinding)")
    metrics_host: str = setting("0.0.0.0", help="address of the /metrics and /healthz listener")
    metrics_port: int = setting(9103, help="port of the /metrics and /healthz listener "
                                           "(they are also on the boot listener)",
                                check=port_number)


def _image_path(value: str) -> None:
    from shared.scriptvalues import parse_location
    parse_location(value)


def _image_paths(value) -> None:
    if not value:
        raise ValueError("give at least one initrd")
    for item in value:
        _image_path(item)


def _kernel_args(value: str) -> None:
    from shared.scriptvalues import args_problem
    problem = args_problem(value)
    if problem:
        raise ValueError(f"cannot go on a kernel command line: {problem}")


@dataclasses.dataclass(frozen=True)
class DiscoverySection:
    """Section ``discovery`` (docs/discovery.md): the discovery boot of unknown machines."""

    enabled: bool = setting(False, help="unknown MACs boot the discovery image (when "
                                        "http.unknown_host is discovery; with menu it is the "
                                        "menu's first entry) and report their hardware; off: "
                                        "the iPXE message only")
    after: str = setting("poweroff", choices=("poweroff", "wait"),
                         help="what a machine does once it has reported: poweroff, or wait "
                              "(stays up, asking every poll_seconds whether it has been "
                              "adopted, and reboots into its profile when it has)")
    poll_seconds: int = setting(30, check=positive,
                                help="how often a waiting machine asks whether it has been "
                                     "adopted (GET /discovery/next)")
    kernel: str = setting("discovery/vmlinuz", check=_image_path,
                          help="the discovery image's kernel: a path under http.images_root "
                               "(make discovery-image writes it) or a URL")
    initrd: tuple[str, ...] = setting(("discovery/initrd.img",), check=_image_paths,
                                      help="the discovery image's initrd(s), as kernel")
    cmdline: str = setting("console=tty0 console=ttyS0,115200n8", check=_kernel_args,
                           help="more kernel arguments of the discovery boot (consoles)")
    max_report_bytes: int = setting(65536, check=positive,
                                    help="largest report accepted (bytes); larger: 413")
    reports_per_minute: int = setting(6, check=positive,
                                      help="reports accepted per MAC and per address each "
                                           "minute (per HTTP worker); more: 429")
    max_records: int = setting(10000, check=positive,
                               help="discovered records kept at most; a new MAC's report past "
                                    "it is refused (507) until some are adopted or removed")


@dataclasses.dataclass(frozen=True)
class HttpSettings(CommonSettings):
    http: HttpSection = field(default_factory=HttpSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)
    bootstate: Expected = field(default_factory=Expected)  # seconds per boot stage
    power: PowerSection = field(default_factory=PowerSection)  # power actions (docs/power.md)
