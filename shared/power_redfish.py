"""Redfish power control over HTTP(S) (DMTF DSP0266, the ComputerSystem schema).

The pure part reads a BMC's resources and chooses what to send (:func:`power_state`,
:func:`allowed_resets`, :func:`choose_resets`, :func:`boot_override`, :func:`system_path`,
:func:`error_text`); :class:`Client` is the thin aiohttp part. What is sent, in order:

1. ``GET /redfish/v1`` (the service root, unauthenticated as the standard says): where the
   Systems collection and the sessions collection are.
2. Session login (``power_auth session``, the default): ``POST`` the sessions collection
   ``{"UserName", "Password"}``; the ``X-Auth-Token`` of the answer authenticates the rest and
   the session is deleted (``DELETE`` its ``Location``) at the end. A BMC without a session
   service (404/405) is asked with HTTP basic authentication, as is every request with
   ``power_auth basic``.
3. The ComputerSystem: ``power_system``, else the one member of the Systems collection (a BMC
   with several needs ``power_system``). Its ``PowerState`` is the status.
4. A PXE power-on or cycle first ``PATCH``es the system ``{"Boot":
   {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}`` (with the
   system's ETag in ``If-Match`` when it gave one).
5. ``POST`` the ``#ComputerSystem.Reset`` action's ``target`` with a ``ResetType`` the system
   allows (``ResetType@Redfish.AllowableValues``, or the parameters of its
   ``@Redfish.ActionInfo``): for ``on`` On, else ForceOn, else PushPowerButton; for ``off``
   ForceOff, else GracefulShutdown, else PushPowerButton; for ``cycle`` of a machine that is on
   ForceRestart, else PowerCycle, else GracefulRestart (one that is off is powered on). A BMC
   that lists no allowable values gets the first choice; one that refuses a reset type
   (HTTP 400) gets the next.

TLS certificates are verified unless the host says ``power_verify_tls no`` (BMCs often come
with self-signed certificates: docs/power.md).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any

from shared.power import PowerError, Result, Target

SERVICE_ROOT = "/redfish/v1"
RESET_CHOICES = {
    "on": ("On", "ForceOn", "PushPowerButton"),
    "off": ("ForceOff", "GracefulShutdown", "PushPowerButton"),
    "cycle": ("ForceRestart", "PowerCycle", "GracefulRestart"),
}
_ON = ("On", "PoweringOn", "Paused")
_OFF = ("Off", "PoweringOff")


# ---------------------------------------------------------------- pure: reading resources

def power_state(system: Mapping[str, Any]) -> str:
    """``on``, ``off`` or ``unknown`` from a ComputerSystem's ``PowerState``."""
    value = system.get("PowerState")
    return "on" if value in _ON else "off" if value in _OFF else "unknown"


def reset_action(system: Mapping[str, Any]) -> Mapping[str, Any] | None:
    action = (system.get("Actions") or {}).get("#ComputerSystem.Reset")
    return action if isinstance(action, Mapping) and action.get("target") else None


def allowed_resets(action: Mapping[str, Any], action_info: Mapping[str, Any] | None = None
                   ) -> tuple[str, ...] | None:
    """The reset types the action allows (inline ``ResetType@Redfish.AllowableValues``, else
    the ``ResetType`` parameter of its ActionInfo), or None if the BMC does not say."""
    inline = action.get("ResetType@Redfish.AllowableValues")
    if isinstance(inline, list):
        return tuple(str(v) for v in inline)
    for param in (action_info or {}).get("Parameters") or ():
        if isinstance(param, Mapping) and param.get("Name") == "ResetType" and \
                isinstance(param.get("AllowableValues"), list):
            return tuple(str(v) for v in param["AllowableValues"])
    return None


def choose_resets(action: str, state: str, allowed: Sequence[str] | None) -> list[str]:
    """The reset types to try for ``action`` on a machine in ``state``, best first; empty if
    the BMC allows none that fits."""
    wanted = RESET_CHOICES["on" if action == "cycle" and state == "off" else action]
    if allowed is None:
        return list(wanted)
    return [r for r in wanted if r in allowed]


def boot_override(system: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PATCH body for one PXE boot, or None if the system's allowable boot targets do not
    include Pxe."""
    boot = system.get("Boot") or {}
    targets = boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")
    if isinstance(targets, list) and "Pxe" not in targets:
        return None
    return {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}


def system_path(collection: Mapping[str, Any], configured: str | None) -> str:
    """The ComputerSystem to use: ``configured``, else the collection's one member;
    ValueError when there are none or several (name them)."""
    if configured:
        return configured
    members = [m.get("@odata.id") for m in collection.get("Members") or ()
               if isinstance(m, Mapping) and m.get("@odata.id")]
    if len(members) == 1:
        return str(members[0])
    if not members:
        raise ValueError("the BMC lists no system in its Systems collection")
    raise ValueError(f"the BMC has {len(members)} systems ({', '.join(members)}): set "
                     "power_system to the one of this host")


def error_text(status: int, body: Any) -> str:
    """One line from a Redfish error answer (``error.message`` and its extended info)."""
    parts = []
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        err = body["error"]
        for info in err.get("@Message.ExtendedInfo") or ():
            if isinstance(info, Mapping) and info.get("Message"):
                parts.append(str(info["Message"]))
        if not parts and err.get("message"):
            parts.append(str(err["message"]))
    return f"HTTP {status}" + (f": {'; '.join(parts)}" if parts else "")


# ---------------------------------------------------------------- thin client

class Client:
    """One BMC conversation: ``async with Client(target, timeout) as bmc: ...``."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.t = target
        self.timeout = timeout
        self._session = None
        self._token: str | None = None
        self._logout: str | None = None
        self._basic = None

    def _fail(self, reason: str, what: str) -> PowerError:
        return PowerError(reason, f"host {self.t.mac}{self.t.where()}: {what}")

    async def __aenter__(self) -> Client:
        import aiohttp

        if self.t.scheme == "https":
            context: ssl.SSLContext | bool = ssl.create_default_context() if \
                self.t.verify_tls else False
        else:
            context = False
        self._session = aiohttp.ClientSession(
            base_url=self.t.base_url(), timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(ssl=context),
            headers={"Accept": "application/json", "OData-Version": "4.0"})
        import base64
        pair = f"{self.t.user}:{self.t.secret}".encode()
        self._basic = "Basic " + base64.b64encode(pair).decode()
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            if self._logout:
                await self._request("DELETE", self._logout, quiet=True)
        finally:
            await self._session.close()

    async def _request(self, method: str, path: str, body: Any = None, *,
                       headers: Mapping[str, str] | None = None, auth: bool = True,
                       quiet: bool = False) -> tuple[int, Any, Mapping[str, str]]:
        import aiohttp

        extra = dict(headers or {})
        kwargs: dict[str, Any] = {}
        if auth and self._token:
            extra["X-Auth-Token"] = self._token
        elif auth:
            extra["Authorization"] = self._basic
        if body is not None:
            kwargs["data"] = json.dumps(body)
            extra["Content-Type"] = "application/json"
        try:
            async with self._session.request(method, path, headers=extra, **kwargs) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text.strip() else None
                except ValueError:
                    data = None
                return resp.status, data, resp.headers
        except aiohttp.ClientConnectorCertificateError as exc:
            raise self._fail("tls", f"the BMC's TLS certificate is not trusted ({exc.certificate_error}); "
                             "install its CA, or set power_verify_tls no for a self-signed "
                             "certificate") from None
        except aiohttp.ClientSSLError as exc:
            raise self._fail("tls", f"TLS with the BMC failed: {exc}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            if quiet:
                return 0, None, {}
            raise self._fail("unreachable", f"cannot reach the BMC: {exc}") from None
        except TimeoutError:
            if quiet:
                return 0, None, {}
            raise self._fail("timeout", f"no answer from the BMC within "
                             f"{self.timeout:.0f} s ({method} {path})") from None

    async def call(self, method: str, path: str, body: Any = None, *,
                   headers: Mapping[str, str] | None = None) -> tuple[int, Any, Mapping]:
        """A request that must succeed (2xx), else PowerError naming what was refused."""
        status, data, head = await self._request(method, path, body, headers=headers)
        if status in (401, 403):
            raise self._fail("auth_refused", f"the BMC refused {self.t.user or 'the user'!r} "
                             f"({error_text(status, data)}): check power_user and "
                             "power_secret")
        if not 200 <= status < 300:
            raise self._fail("bmc_error", f"{method} {path}: {error_text(status, data)}")
        return status, data, head

    async def login(self) -> dict[str, Any]:
        """Read the service root and log in as ``power_auth`` says; the service root."""
        status, root, _ = await self._request("GET", SERVICE_ROOT + "/", auth=False)
        if status == 404 or not isinstance(root, Mapping):
            raise self._fail("bmc_error", f"no Redfish service root at {SERVICE_ROOT}/ "
                             f"({error_text(status, root)}): is this a Redfish BMC?")
        sessions = ((root.get("Links") or {}).get("Sessions") or {}).get("@odata.id") or \
            f"{SERVICE_ROOT}/SessionService/Sessions"
        if self.t.auth == "session":
            status, data, head = await self._request(
                "POST", sessions, {"UserName": self.t.user, "Password": self.t.secret},
                auth=False)
            if status in (200, 201) and head.get("X-Auth-Token"):
                self._token = head["X-Auth-Token"]
                self._logout = head.get("Location") or (data or {}).get("@odata.id")
                if self._logout and "://" in self._logout:
                    self._logout = "/" + self._logout.split("://", 1)[1].split("/", 1)[1]
            elif status in (400, 401, 403):
                raise self._fail("auth_refused", f"the BMC refused a session for "
                                 f"{self.t.user or 'the user'!r} ({error_text(status, data)})"
                                 ": check power_user and power_secret")
            elif status not in (404, 405, 501):
                raise self._fail("bmc_error", f"session login: {error_text(status, data)}")
            # no session service: HTTP basic authentication from here on
        return dict(root)

    async def system(self, root: Mapping[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        """(path, the ComputerSystem, its ETag)."""
        path = self.t.system
        if not path:
            systems = (root.get("Systems") or {}).get("@odata.id") or f"{SERVICE_ROOT}/Systems"
            _, collection, _ = await self.call("GET", systems)
            try:
                path = system_path(collection or {}, None)
            except ValueError as exc:
                raise self._fail("bmc_error", str(exc)) from None
        _, system, head = await self.call("GET", path)
        if not isinstance(system, Mapping):
            raise self._fail("bmc_error", f"GET {path}: not a ComputerSystem")
        return path, dict(system), head.get("ETag") or (system.get("@odata.etag"))


async def run(target: Target, action: str, *, pxe: bool = True, timeout: float = 30) -> Result:
    """Do ``action`` (on, off, cycle, status) on ``target``'s BMC; PowerError on failure."""
    start = time.monotonic()

    def result(outcome: str, state: str, detail: str, did_pxe: bool = False) -> Result:
        return Result(target.mac, action, "redfish", outcome, state, detail=detail,
                      address=target.address, seconds=time.monotonic() - start, pxe=did_pxe)

    try:
        async with asyncio.timeout(timeout):
            async with Client(target, timeout) as bmc:
                root = await bmc.login()
                path, system, etag = await bmc.system(root)
                state = power_state(system)
                shown = system.get("PowerState", "unknown")
                if action == "status":
                    return result("ok", state, f"PowerState {shown}")
                if action == "on" and state == "on":
                    return result("already", "on", "power was already on (nothing done)")
                if action == "off" and state == "off":
                    return result("already", "off", "power was already off")
                reset = reset_action(system)
                if reset is None:
                    raise bmc._fail("unsupported", f"{path} has no #ComputerSystem.Reset "
                                    "action")
                info = None
                if "ResetType@Redfish.AllowableValues" not in reset and \
                        reset.get("@Redfish.ActionInfo"):
                    _, info, _ = await bmc.call("GET", reset["@Redfish.ActionInfo"])
                allowed = allowed_resets(reset, info if isinstance(info, Mapping) else None)
                choices = choose_resets(action, state, allowed)
                if not choices:
                    raise bmc._fail("unsupported", f"no reset type for {action} among those "
                                    f"the BMC allows ({', '.join(allowed or ())})")
                did_pxe = False
                if pxe and action in ("on", "cycle"):
                    patch = boot_override(system)
                    if patch is None:
                        raise bmc._fail("unsupported", "the BMC does not offer a Pxe boot "
                                        "override (BootSourceOverrideTarget)")
                    await bmc.call("PATCH", path, patch,
                                   headers={"If-Match": etag} if etag else None)
                    did_pxe = True
                refused = []
                for reset_type in choices:
                    status, data, _ = await bmc._request("POST", reset["target"],
                                                         {"ResetType": reset_type})
                    if 200 <= status < 300:
                        detail = f"ResetType {reset_type}" + \
                            (", boot override Pxe once" if did_pxe else "")
                        if refused:
                            detail += f" (refused: {', '.join(refused)})"
                        return result("ok", "off" if action == "off" else "on", detail,
                                      did_pxe)
                    if status in (401, 403):
                        await bmc.call("POST", reset["target"], {"ResetType": reset_type})
                    if status != 400:
                        raise bmc._fail("bmc_error", f"ResetType {reset_type}: "
                                        f"{error_text(status, data)}")
                    refused.append(f"{reset_type}: {error_text(status, data)}")
                raise bmc._fail("unsupported", "the BMC refused every reset type for "
                                f"{action}: {'; '.join(refused)}")
    except TimeoutError:
        raise PowerError("timeout", f"host {target.mac}{target.where()}: no answer within "
                         f"{timeout:.0f} s") from None
