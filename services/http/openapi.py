"""The admin API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Written out here, path by path (``tests/http/test_openapi.py`` checks it against the routes the
application really has, both ways); the objects' field schemas come from shared/schema.py's
kinds, so a new field is described without editing this file.
"""

from __future__ import annotations

from typing import Any

from shared.oneshot import ONCE_MODES
from shared.schema import KIND_BY_PLURAL

PREFIX = "/api/v1"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any] | None = None,
        media: str = "application/json") -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def _fields_schema(kind) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, spec in kind.fields.items():
        if spec.list_like:
            props[name] = {"oneOf": [{"type": "array", "items": {"type": "string"}},
                                     {"type": "string"}], "description": spec.doc}
        else:
            props[name] = {"type": ["string", "null"], "description": spec.doc}
    if kind.has_vars:
        props["vars"] = {"type": "object", "additionalProperties": {"type": ["string", "null"]},
                         "description": "template variables (var.<name>)"}
    for family in kind.families:
        props[family.attr] = {"type": "object",
                              "additionalProperties": {"type": ["string", "null"]},
                              "description": f"{family.doc} ({family.prefix}<name> fields)"}
    return {"type": "object", "properties": props, "additionalProperties": False}


FLAG = {"schema": {"type": "string", "enum": ["yes", "no", "1", "0", "true", "false"]}}


def document() -> dict[str, Any]:
    """The whole document."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "properties": {
            "error": {"type": "string"}, "problems": {"type": "array"}}, "required": ["error"]},
        "Problem": {"type": "object", "properties": {k: {"type": "string"} for k in (
            "key", "field", "value", "reason", "severity")}},
        "Object": {"type": "object", "properties": {
            "key": {"type": "string"}, "id": {"type": "string"}, "fields": {"type": "object"},
            "valid": {"type": "boolean"}, "etag": {"type": "string"},
            "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
            "warnings": {"type": "array", "items": {"type": "string"}}}},
    }
    force = {"name": "force", "in": "query", **FLAG,
             "description": "write even if the checks find errors"}
    if_match = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
                "description": "the ETag read: refused with 412 if the object changed since"}
    ident = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    obj = {"$ref": "#/components/schemas/Object"}
    for plural, kind in KIND_BY_PLURAL.items():
        name = f"{kind.name.capitalize()}Fields"
        schemas[name] = _fields_schema(kind)
        fields = {"$ref": f"#/components/schemas/{name}"}
        body = {"required": True, "content": {"application/json": {"schema": fields}}}
        filters = [{"name": n, "in": "query", "schema": {"type": "string"}}
                   for n in (("tag", "profile", "subnet", "group") if kind.name == "host"
                             else ())
                   + ("after",)]
        filters.append({"name": "limit", "in": "query", "schema": {
            "type": "integer", "minimum": 1, "maximum": 10000},
            "description": "page size; a Link header (rel=next) names the next page"})
        paths[f"{PREFIX}/{plural}"] = {
            "get": {"summary": f"every {kind.name}: {{id: fields}}", "parameters": filters,
                    "responses": {"200": _ok("the objects", {
                        "type": "object", "additionalProperties": fields})}},
            "post": {"summary": f"create a {kind.name} (body: id and fields)",
                     "parameters": [force], "requestBody": body, "responses": {
                         "201": _ok("created", obj), "409": _error("exists"),
                         "422": _error("refused by the checks")}},
        }
        effective = [{"name": "effective", "in": "query", **FLAG, "description":
                      "yes: the host's effective values and where each comes from (host, "
                      "group:<name>, profile:<name>, subnet:<name>, default)"}] \
            if kind.name == "host" else []
        paths[f"{PREFIX}/{plural}/{{id}}"] = {
            "get": {"summary": f"one {kind.name}", "parameters": [ident] + effective,
                    "responses": {"200": _ok("the object (ETag header)", obj),
                                  "404": _error("no such object")}},
            "put": {"summary": f"replace a {kind.name}", "parameters": [ident, force, if_match],
                    "requestBody": body, "responses": {
                        "200": _ok("replaced", obj), "412": _error("changed since read"),
                        "422": _error("refused by the checks")}},
            "patch": {"summary": f"change fields of a {kind.name} (null removes one)",
                      "parameters": [ident, force, if_match], "requestBody": body,
                      "responses": {"200": _ok("changed", obj), "404": _error("no such object"),
                                    "412": _error("changed since read"),
                                    "422": _error("refused by the checks")}},
            "delete": {"summary": f"delete a {kind.name}", "parameters": [ident, force, if_match],
                       "responses": {"204": _ok("deleted"), "404": _error("no such object"),
                                     "412": _error("changed since read"),
                                     "422": _error("would leave a reference dangling")}},
        }
    mac = {"name": "host", "in": "query", "schema": {"type": "string"}}
    dry_run = {"name": "dry_run", "in": "query", **FLAG,
               "description": "answer the diff; write nothing"}
    count = {"name": "count", "in": "query", "schema": {"type": "integer"}}
    paths.update({
        f"{PREFIX}/hosts/{{id}}/token": {"get": {
            "summary": "a host's install token and install URLs", "parameters": [ident],
            "responses": {"200": _ok("token and URLs", {"type": "object"})}}},
        f"{PREFIX}/discovered/{{id}}/adopt": {"post": {
            "summary": "make a discovered machine a host (docs/discovery.md)",
            "parameters": [ident, force], "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object", "required": ["profile"],
                                                "properties": {
                                                    "profile": {"type": "string"},
                                                    "hostname": {"type": "string"},
                                                    "boot_mode": {"type": "string"},
                                                    "tags": {"type": "array",
                                                             "items": {"type": "string"}}},
                                                "additionalProperties": False}}}},
            "responses": {"201": _ok("the new host", obj),
                          "404": _error("no such discovered machine"),
                          "409": _error("a host already"),
                          "422": _error("refused by the checks")}}},
        f"{PREFIX}/hosts/{{id}}/reinstall": {"post": {
            "summary": "install once, then boot the local disk (boot_mode install; the "
                       "installer's done callback sets local)",
            "parameters": [ident, force, dry_run],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"profile": {"type": "string"}}}}}},
            "responses": {"200": _ok("the host", obj), "404": _error("no such host"),
                          "422": _error("refused (a profile with install none, ...)")}}},
        f"{PREFIX}/hosts/{{id}}/rescue": {
            "post": {"summary": "boot a profile once (default live), then the usual boot",
                     "parameters": [ident, force, dry_run],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "required": ["profile"], "properties": {
                             "profile": {"type": "string"},
                             "mode": {"type": "string", "enum": list(ONCE_MODES)}}}}}},
                     "responses": {"200": _ok("the host", obj), "404": _error("no such host"),
                                   "422": _error("refused by the checks")}},
            "delete": {"summary": "cancel a pending one-shot boot",
                       "parameters": [ident, force, dry_run],
                       "responses": {"200": _ok("the host", obj),
                                     "404": _error("no such host")}}},
        f"{PREFIX}/validate": {"get": {"summary": "every problem of the inventory",
                                       "responses": {"200": _ok("{valid, problems}", {
                                           "type": "object"})}}},
        f"{PREFIX}/export": {"get": {"summary": "the inventory as YAML", "responses": {
            "200": _ok("YAML", {"type": "string"}, "application/yaml")}}},
        f"{PREFIX}/import": {"post": {
            "summary": "load a YAML export", "parameters": [
                {"name": "replace", "in": "query", **FLAG},
                {"name": "confirm", "in": "query", **FLAG},
                {"name": "dry_run", "in": "query", **FLAG}],
            "requestBody": {"required": True, "content": {"application/yaml": {
                "schema": {"type": "string"}}}},
            "responses": {"200": _ok("{written, deleted, diff, warnings, dry_run}",
                                     {"type": "object"}),
                          "409": _error("replace would delete: confirm=yes needed"),
                          "422": _error("refused by the checks")}}},
        f"{PREFIX}/history": {"get": {
            "summary": "the inventory's change history", "parameters": [
                mac, {"name": "key", "in": "query", "schema": {"type": "string"}}, count],
            "responses": {"200": _ok("entries, oldest first", {"type": "array"})}}},
        f"{PREFIX}/leases": {"get": {"summary": "every lease: {ip: lease}", "responses": {
            "200": _ok("leases", {"type": "object"})}}},
        f"{PREFIX}/leases/{{ip}}": {"get": {
            "summary": "one lease", "parameters": [
                {"name": "ip", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok("the lease", {"type": "object"}),
                          "404": _error("no lease")}},
            "delete": {"summary": "release a lease (its address goes back to the pool)",
                       "parameters": [{"name": "ip", "in": "path", "required": True,
                                       "schema": {"type": "string"}}],
                       "responses": {"200": _ok("the lease, released", {"type": "object"}),
                                     "404": _error("no lease"),
                                     "409": _error("not held")}}},
        f"{PREFIX}/events": {"get": {"summary": "the latest events, oldest first",
                                     "parameters": [mac, count],
                                     "responses": {"200": _ok("events", {"type": "array"})}}},
        f"{PREFIX}/events/stream": {"get": {
            "summary": "server-sent events from now on (Last-Event-ID resumes)",
            "parameters": [mac], "responses": {"200": _ok("text/event-stream", {
                "type": "string"}, "text/event-stream")}}},
        f"{PREFIX}/overview": {"get": {
            "summary": "mirrors (freshness, size, state) and block exports (size, overlays, "
                       "sessions) at a glance", "responses": {
                "200": _ok('{"mirrors": {name: ...}, "exports": {name: ...}}',
                           {"type": "object"})}}},
        f"{PREFIX}/openapi.json": {"get": {"summary": "this document", "responses": {
            "200": _ok("OpenAPI 3.1", {"type": "object"})}}},
    })
    from services.http.power import openapi_paths
    paths.update(openapi_paths(PREFIX))
    return {
        "openapi": "3.1.0",
        "info": {"title": "bootyard admin API", "version": "1",
                 "description": "docs/api.md. Every request needs Authorization: Bearer <token> "
                                "when http.admin_token is set."},
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
