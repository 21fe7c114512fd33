"""Power control: what a host's power settings mean, and the results of power actions (pure).

A host says how its power is controlled with the ``power`` field (docs/power.md):

=========  =====================================================================================
method     how
=========  =====================================================================================
wol        Wake-on-LAN: a magic packet (6 x 0xff, then the MAC 16 times) sent as a UDP
           broadcast to port 9 on a deploy interface (``power.wol_interfaces``, else
           ``dhcp.interfaces``), never elsewhere. It can only power on.
ipmi       IPMI 2.0 (RMCP+, ``ipmitool -I lanplus``) to the BMC at ``power_address``:
           ``chassis power on|off|cycle|status``, ``chassis bootdev pxe`` for one PXE boot.
redfish    Redfish over HTTP(S) to the BMC at ``power_address``: ``ComputerSystem.Reset`` with a
           reset type the system allows, and the boot override ``Pxe``/``Once`` before a PXE
           power-on or cycle.
=========  =====================================================================================

This module turns a host record into a :class:`Target` (or a :class:`PowerError` saying what is
missing), builds and finds magic packets, and holds the :class:`Result` of an action: one line
for the CLI, one JSON object for the API, the fields of the ``power.result`` event. The drivers
(:mod:`shared.power_ipmi`, :mod:`shared.power_redfish`, :mod:`shared.power_wol`) do the I/O and
:mod:`shared.powerctl` runs actions for many hosts. Nothing here holds a socket, and the secret
(``power_secret``) is never part of a result, an event or a message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

ACTIONS = ("on", "off", "cycle", "status")
METHODS = ("wol", "ipmi", "redfish")
OUTCOMES = ("ok", "already", "failed", "unsupported")
# why an action failed (the result's reason, a metric label's value set is OUTCOMES only)
REASONS = ("unreachable", "auth_refused", "unsupported", "bmc_error", "not_configured",
           "interface_refused", "timeout", "tool_missing", "tls")
REDFISH_AUTH = ("session", "basic")
IPMI_PORT = 623
WOL_PORT = 9

_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?|\[[0-9A-Fa-f:.]+\]")
_SYSTEM_RE = re.compile(r"/redfish/v1/Systems/[A-Za-z0-9._~%:@!$&'()*+,;=-]+/?")
_IFNAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,15}")


class PowerError(Exception):
    """A power action that cannot be done; ``reason`` is one of :data:`REASONS` and the message
    names the host, the BMC address (when there is one) and why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------- inventory field checks

def parse_address(value: str) -> str:
    """``power_address``: a host name or address with an optional port (``10.0.0.5``,
    ``bmc1.example:623``, ``[fd00::5]:443``), or for Redfish an ``http://`` or ``https://``
    URL of the BMC (no path). ValueError names what is wrong."""
    text = value.strip()
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in ("http", "https"):
            raise ValueError("a BMC URL starts with https:// or http://")
        rest = rest.rstrip("/")
        if "/" in rest:
            raise ValueError("give the BMC's address only (https://bmc:443), not a path")
    host, port = split_host_port(rest)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    if not _HOST_RE.fullmatch(host):
        raise ValueError("expected a host name or an address, with an optional :port "
                         "(bmc1.example, 10.0.0.5:623) or an https:// URL")
    return text


def split_host_port(text: str) -> tuple[str, int | None]:
    """``("host", port or None)`` from ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        end = text.find("]")
        host, tail = text[:end + 1], text[end + 1:]
    elif text.count(":") == 1:
        host, tail = text.split(":")[0], ":" + text.split(":")[1]
    else:
        host, tail = text, ""
    if tail:
        if not tail.startswith(":") or not tail[1:].isdigit():
            raise ValueError(f"{text!r}: the port must be a number")
        return host, int(tail[1:])
    return host, None


def parse_system(value: str) -> str:
    """``power_system``: the Redfish ComputerSystem's path (``/redfish/v1/Systems/1``)."""
    text = value.strip()
    if not _SYSTEM_RE.fullmatch(text):
        raise ValueError("expected a Redfish system path such as /redfish/v1/Systems/1")
    return text.rstrip("/")


def parse_interface(value: str) -> str:
    text = value.strip()
    if not _IFNAME_RE.fullmatch(text):
        raise ValueError("expected a network interface name (at most 15 characters)")
    return text


def record_problems(values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, value, reason) of a host's power settings that do not go together: an IPMI or
    Redfish host without ``power_address``."""
    method = values.get("power")
    out = []
    if method in ("ipmi", "redfish") and not values.get("power_address"):
        out.append(("power_address", "", f"power={method} needs the BMC's address "
                    "(power_address)"))
    if method == "ipmi" and str(values.get("power_address", "")).find("://") >= 0:
        out.append(("power_address", values["power_address"],
                    "an IPMI BMC is a host[:port], not a URL"))
    return out


# ---------------------------------------------------------------- what to power, and how

@dataclasses.dataclass(frozen=True)
class Target:
    """One host's power settings, as the drivers need them (``secret`` never leaves them)."""

    mac: str
    method: str
    address: str = ""  # the BMC (IPMI, Redfish) as written, for messages
    host: str = ""  # the BMC's host name or address
    port: int | None = None
    scheme: str = "https"  # Redfish
    user: str = ""
    secret: str = dataclasses.field(default="", repr=False)
    system: str | None = None  # Redfish ComputerSystem path; None: the only one
    auth: str = "session"  # Redfish: session (X-Auth-Token) or basic
    verify_tls: bool = True  # Redfish over https
    wol_mac: str = ""  # WoL: the MAC the magic packet wakes (default the host's)
    interface: str | None = None  # WoL: the deploy interface to send on

    def where(self) -> str:
        """The BMC named in messages (never with credentials)."""
        return f" (BMC {self.address})" if self.address else ""

    def base_url(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}"


def target(host) -> Target:
    """The :class:`Target` of a parsed host record (:class:`shared.records.Host`); PowerError
    (``not_configured``) when the host has no ``power`` method."""
    method = getattr(host, "power", None)
    if not method:
        raise PowerError("not_configured", f"host {host.mac}: no power control set (bootyard "
                         "host set MAC --power wol|ipmi|redfish ...; docs/power.md)")
    address = host.power_address or ""
    hostname, port, scheme = "", None, "https"
    if address:
        rest = address
        if "://" in address:
            scheme, _, rest = address.partition("://")
            scheme = scheme.lower()
            rest = rest.rstrip("/")
        hostname, port = split_host_port(rest)
        hostname = hostname.strip("[]")
    return Target(mac=host.mac, method=method, address=address, host=hostname, port=port,
                  scheme=scheme, user=host.power_user or "", secret=host.power_secret or "",
                  system=host.power_system, auth=host.power_auth,
                  verify_tls=host.power_verify_tls, wol_mac=host.power_mac or host.mac,
                  interface=host.power_interface)


def wol_interfaces(target: Target, allowed: Iterable[str]) -> tuple[str, ...]:
    """The interfaces a magic packet for ``target`` goes out on: the host's ``power_interface``
    if it is a deploy interface, else every deploy interface. PowerError (``interface_refused``)
    when there is none, or the host names another interface: Wake-on-LAN is only ever sent on
    the deploy network."""
    allowed = tuple(dict.fromkeys(a for a in allowed if a))
    if not allowed:
        raise PowerError("interface_refused", f"host {target.mac}: Wake-on-LAN refused: no "
                         "deploy interface is configured (set power.wol_interfaces, or "
                         "dhcp.interfaces, to the interface of the deploy network)")
    if target.interface:
        if target.interface not in allowed:
            raise PowerError("interface_refused", f"host {target.mac}: Wake-on-LAN refused on "
                             f"interface {target.interface!r} (power_interface): magic packets "
                             f"go only on the deploy interfaces {', '.join(allowed)}")
        return (target.interface,)
    return allowed


# ---------------------------------------------------------------- Wake-on-LAN codec

def magic_packet(mac: str) -> bytes:
    """The Wake-on-LAN payload for ``mac`` (canonical ``aa:bb:...``): 6 bytes 0xff, then the
    MAC 16 times (102 bytes)."""
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return b"\xff" * 6 + raw * 16


def find_magic(data: bytes) -> str | None:
    """The MAC of the first magic packet anywhere in ``data`` (a frame or a UDP payload, as a
    NIC looks for it), or None."""
    start = 0
    while True:
        at = data.find(b"\xff" * 6, start)
        if at < 0 or len(data) - at < 102:
            return None
        body = data[at + 6:at + 102]
        mac = body[:6]
        if mac != b"\xff" * 6 and body == mac * 16:
            return ":".join(f"{b:02x}" for b in mac)
        start = at + 1


# ---------------------------------------------------------------- results

@dataclasses.dataclass(frozen=True)
class Result:
    """What one power action on one host did."""

    mac: str
    action: str
    method: str  # wol, ipmi, redfish, or "" (not configured)
    outcome: str  # ok, already, failed, unsupported
    state: str = "unknown"  # on, off, unknown: the power state after the action (or read)
    reason: str = ""  # for failed and unsupported: one of REASONS
    detail: str = ""  # one line for the operator (never a secret)
    address: str = ""  # the BMC
    seconds: float = 0.0
    pxe: bool = False  # a one-time PXE boot was asked of the BMC

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "already")

    def line(self) -> str:
        """The CLI's line: MAC, method, action, outcome, state, detail."""
        text = f"{self.mac}  {self.method or '-':<7}  {self.action:<6}  {self.outcome:<11}  " \
               f"{self.state:<7}"
        if self.detail:
            text += f"  {self.detail}"
        return text.rstrip()

    def json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def event_fields(self) -> dict[str, str]:
        """The ``power.result`` event's fields (no secret, no MAC: the event carries it)."""
        out = {"action": self.action, "method": self.method or "none", "outcome": self.outcome,
               "state": self.state, "seconds": f"{self.seconds:.3f}"}
        if self.reason:
            out["reason"] = self.reason
        if self.detail:
            out["detail"] = self.detail[:300]
        if self.address:
            out["bmc"] = self.address
        if self.pxe:
            out["pxe"] = "once"
        return out


def failed(target_or_mac, action: str, error: PowerError, seconds: float = 0.0) -> Result:
    """The Result of an action a PowerError stopped (``unsupported`` for an action the method
    cannot do)."""
    if isinstance(target_or_mac, Target):
        mac, method, address = target_or_mac.mac, target_or_mac.method, target_or_mac.address
    else:
        mac, method, address = target_or_mac, "", ""
    outcome = "unsupported" if error.reason == "unsupported" else "failed"
    return Result(mac, action, method, outcome, reason=error.reason, detail=str(error),
                  address=address, seconds=seconds)
