"""A small Redfish BMC for the tests, speaking the DMTF schema as real BMCs do, whose one
ComputerSystem is a QEMU machine (vmctl.Vm): ``On`` starts it, ``ForceOff`` stops it, a restart
or power cycle does both, and ``PowerState`` is whether it runs.

Resources: the service root ``/redfish/v1`` (unauthenticated), ``Systems`` (a collection with one
member), the ComputerSystem (``PowerState``, ``Boot`` with its override and allowable values,
``Actions`` ``#ComputerSystem.Reset`` with ``target`` and either
``ResetType@Redfish.AllowableValues`` or an ``@Redfish.ActionInfo``), ``SessionService`` and
its ``Sessions`` (``POST`` ``{"UserName", "Password"}`` gives ``X-Auth-Token`` and a
``Location`` to ``DELETE``); every resource has ``@odata.id`` and ``@odata.type``. Requests
other than the service root need the session token or HTTP basic authentication; errors are
Redfish error bodies (``error.code``, ``@Message.ExtendedInfo``). The system has an ETag; a
PATCH whose ``If-Match`` differs gets 412. A one-time Pxe boot override makes the next start
``-boot order=n`` and is then ``Disabled`` again.

``GET /mock/requests`` (no auth) lists the requests received (method, path, body without
passwords), for the tests.

    python redfish_mock.py --port P --state DIR --user U --password PW
        [--allow On,ForceOff,...] [--action-info] [--tls CERT KEY]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import ssl
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vmctl import Vm  # noqa: E402

SYS = "/redfish/v1/Systems/1"
RESET = f"{SYS}/Actions/ComputerSystem.Reset"
INFO = f"{SYS}/ResetActionInfo"
SESSIONS = "/redfish/v1/SessionService/Sessions"
ALL_RESETS = ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi",
              "ForceOn", "PushPowerButton", "PowerCycle"]


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": f"Base.1.8.{code}", "message": message,
                                        "@Message.ExtendedInfo": [{
                                            "@odata.type": "#Message.v1_1_1.Message",
                                            "MessageId": f"Base.1.8.{code}",
                                            "Message": message, "Severity": "Warning"}]}},
                             status=status)


class Bmc:
    def __init__(self, vm: Vm, user: str, password: str, allow: list[str],
                 action_info: bool) -> None:
        self.vm = vm
        self.user, self.password = user, password
        self.allow = allow
        self.action_info = action_info
        self.sessions: dict[str, str] = {}  # token -> session id
        self.boot = {"BootSourceOverrideEnabled": "Disabled",
                     "BootSourceOverrideTarget": "None"}
        self.requests: list[dict] = []
        self.most_sessions = 0  # the most sessions open at once

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record, self.auth])
        r = app.router
        r.add_get("/redfish/v1", self.root)
        r.add_get("/redfish/v1/", self.root)
        r.add_get("/redfish/v1/Systems", self.systems)
        r.add_get(SYS, self.system)
        r.add_patch(SYS, self.patch)
        r.add_post(RESET, self.reset)
        r.add_get(INFO, self.info)
        r.add_get("/redfish/v1/SessionService", self.session_service)
        r.add_get(SESSIONS, self.session_list)
        r.add_post(SESSIONS, self.login)
        r.add_delete(SESSIONS + "/{id}", self.logout)
        r.add_get("/mock/requests", self.log)
        return app

    @web.middleware
    async def record(self, request: web.Request, handler):
        body = None
        if request.can_read_body:
            try:
                body = json.loads(await request.text())
            except ValueError:
                body = "(not JSON)"
            if isinstance(body, dict) and "Password" in body:
                body = dict(body, Password="(hidden)")
        if request.path != "/mock/requests":
            self.requests.append({"method": request.method, "path": request.path,
                                  "body": body, "token": "X-Auth-Token" in request.headers,
                                  "basic": request.headers.get("Authorization", "")
                                  .startswith("Basic ")})
        return await handler(request)

    @web.middleware
    async def auth(self, request: web.Request, handler):
        if request.path.rstrip("/") == "/redfish/v1" or request.path == "/mock/requests" or (
                request.path == SESSIONS and request.method == "POST"):
            return await handler(request)
        token = request.headers.get("X-Auth-Token")
        if token and token in self.sessions:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        if given.startswith("Basic "):
            user, _, password = base64.b64decode(given[6:]).decode().partition(":")
            if user == self.user and password == self.password:
                return await handler(request)
        response = error(401, "NoValidSession", "There is no valid session established with "
                         "the implementation.")
        response.headers["WWW-Authenticate"] = 'Basic realm="mock BMC"'
        return response

    def _system(self) -> dict:
        state = "On" if self.vm.running() else "Off"
        action = {"target": RESET}
        if self.action_info:
            action["@Redfish.ActionInfo"] = INFO
        else:
            action["ResetType@Redfish.AllowableValues"] = self.allow
        return {"@odata.id": SYS, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
                "Id": "1", "Name": "QEMU test machine", "SystemType": "Physical",
                "Manufacturer": "QEMU", "PowerState": state,
                "Status": {"State": "Enabled", "Health": "OK"},
                "Boot": dict(self.boot, **{
                    "BootSourceOverrideTarget@Redfish.AllowableValues": [
                        "None", "Pxe", "Hdd", "Cd", "BiosSetup"],
                    "BootSourceOverrideMode": "Legacy"}),
                "Actions": {"#ComputerSystem.Reset": action}}

    def _etag(self) -> str:
        body = json.dumps(self._system(), sort_keys=True).encode()
        return 'W/"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    async def root(self, _request):
        return web.json_response({
            "@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
            "Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.17.0",
            "UUID": "92384634-2938-2342-8820-489239905423",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": SESSIONS}}})

    async def systems(self, _request):
        return web.json_response({
            "@odata.id": "/redfish/v1/Systems",
            "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
            "Name": "Computer System Collection", "Members@odata.count": 1,
            "Members": [{"@odata.id": SYS}]})

    async def system(self, _request):
        return web.json_response(self._system(), headers={"ETag": self._etag()})

    async def info(self, _request):
        return web.json_response({
            "@odata.id": INFO, "@odata.type": "#ActionInfo.v1_3_0.ActionInfo",
            "Id": "ResetActionInfo", "Name": "Reset Action Info",
            "Parameters": [{"Name": "ResetType", "Required": True, "DataType": "String",
                            "AllowableValues": self.allow}]})

    async def patch(self, request: web.Request):
        match = request.headers.get("If-Match")
        if match and match != self._etag():
            return error(412, "PreconditionFailed", "The ETag supplied did not match the "
                         "ETag required to change this resource.")
        body = await request.json()
        boot = body.get("Boot") or {}
        target = boot.get("BootSourceOverrideTarget")
        if target and target not in ("None", "Pxe", "Hdd", "Cd", "BiosSetup"):
            return error(400, "PropertyValueNotInList", f"The value {target} for the property "
                         "BootSourceOverrideTarget is not in the list of acceptable values.")
        self.boot.update({k: v for k, v in boot.items() if k in self.boot})
        return web.Response(status=204)

    def _start(self) -> None:
        pxe = self.boot["BootSourceOverrideEnabled"] in ("Once", "Continuous") and \
            self.boot["BootSourceOverrideTarget"] == "Pxe"
        self.vm.start(pxe=pxe)
        if self.boot["BootSourceOverrideEnabled"] == "Once":
            self.boot = {"BootSourceOverrideEnabled": "Disabled",
                         "BootSourceOverrideTarget": "None"}

    async def reset(self, request: web.Request):
        body = await request.json()
        kind = body.get("ResetType")
        if kind not in self.allow:
            return error(400, "ActionParameterValueNotInList", f"The value {kind} for the "
                         "parameter ResetType in the action ComputerSystem.Reset is not in "
                         "the list of acceptable values.")
        on = self.vm.running()
        if kind in ("On", "ForceOn"):
            if on:
                return error(409, "ResourceInStandby", "The system is already on.")
            self._start()
        elif kind in ("ForceOff", "GracefulShutdown"):
            self.vm.stop()
        elif kind in ("ForceRestart", "GracefulRestart", "PowerCycle"):
            self.vm.stop()
            self._start()
        elif kind == "PushPowerButton":
            self.vm.stop() if on else self._start()
        return web.Response(status=204)

    async def session_service(self, _request):
        return web.json_response({
            "@odata.id": "/redfish/v1/SessionService",
            "@odata.type": "#SessionService.v1_1_8.SessionService", "Id": "SessionService",
            "ServiceEnabled": True, "SessionTimeout": 600,
            "Sessions": {"@odata.id": SESSIONS}})

    async def session_list(self, _request):
        return web.json_response({
            "@odata.id": SESSIONS, "@odata.type": "#SessionCollection.SessionCollection",
            "Members@odata.count": len(self.sessions),
            "Members": [{"@odata.id": f"{SESSIONS}/{i}"} for i in self.sessions.values()]})

    async def login(self, request: web.Request):
        try:
            body = await request.json()
        except ValueError:
            return error(400, "MalformedJSON", "The request body submitted was malformed JSON.")
        if body.get("UserName") != self.user or body.get("Password") != self.password:
            return error(401, "ResourceAtUriUnauthorized", "While accessing the resource at "
                         f"{SESSIONS}, the service received an authorization error.")
        token, sid = secrets.token_hex(16), secrets.token_hex(4)
        self.sessions[token] = sid
        self.most_sessions = max(self.most_sessions, len(self.sessions))
        return web.json_response({
            "@odata.id": f"{SESSIONS}/{sid}", "@odata.type": "#Session.v1_6_0.Session",
            "Id": sid, "UserName": self.user}, status=201,
            headers={"X-Auth-Token": token, "Location": f"{SESSIONS}/{sid}"})

    async def logout(self, request: web.Request):
        sid = request.match_info["id"]
        for token, known in list(self.sessions.items()):
            if known == sid:
                del self.sessions[token]
                return web.Response(status=204)
        return error(404, "ResourceMissingAtURI", f"The resource at {request.path} was not "
                     "found.")

    async def log(self, _request):
        return web.json_response({"requests": self.requests, "sessions": len(self.sessions),
                                  "most_sessions": self.most_sessions})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--allow", default=",".join(ALL_RESETS))
    parser.add_argument("--action-info", action="store_true")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args(argv)
    bmc = Bmc(Vm(args.state), args.user, args.password, args.allow.split(","),
              args.action_info)
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
    web.run_app(bmc.app(), host=args.host, port=args.port, ssl_context=context,
                print=lambda *a: print(*a, flush=True), access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
