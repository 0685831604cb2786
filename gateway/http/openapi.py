"""The gateway's OpenAPI 3.2 document, served at ``/openapi.json``.

    doc = document(Limits(max_value_bytes=4096, min_ttl=0.5, max_ttl=60), auth=True)
    doc["paths"]["/v1/elections/{name}/campaign"]["post"]

Written by hand from the same limits the handlers enforce, so that a fuzzer
(schemathesis, ``tests/http/test_gateway_fuzz.py``) holds the gateway to it with every
check: each rule here is the server's rule, stated exactly -- names (no empty segment,
no ``..``), values (:func:`value_schema`), the TTL range of the store behind this
gateway, the query parameters each operation takes. Streams are ``text/event-stream``
with one ``itemSchema`` per event (the way OpenAPI 3.2 declares server-sent events);
each event's ``data`` is JSON with its own ``contentSchema``. Every operation lists 400
(bad input, unknown query parameter), 403 (foreign ``Origin``) and 421 (a ``Host`` that
is not this gateway), which the checks in front of every route can answer. What JSON
Schema cannot say is not promised here: how long a campaign waits, or which leader wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenure.http.problems import (
    MAX_HANDOFF_TIMEOUT,
    MAX_TIMEOUT,
    MAX_TTL,
    MIN_HANDOFF_TIMEOUT,
)
from tenure.priority import MAX_PRIORITY

# One segment: 1+ of [A-Za-z0-9._-] but not "..": it starts with a non-dot, is ".", is
# a dot and a non-dot, or is two dots and more. No look-around: every regex engine
# (ECMA-262, Python, Rust) reads it the same way.
_SEGMENT = r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
NAME_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
HANDLE_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"


@dataclass(frozen=True)
class Limits:
    """The numbers the document states: value size, and the TTL range a caller may ask
    for (the store's range within the gateway's ``--max-ttl``; ``ttl_step`` where the
    store only takes multiples, as etcd takes whole seconds)."""

    max_value_bytes: int = 4096
    min_ttl: float = 0.5
    max_ttl: float = MAX_TTL
    ttl_step: float | None = None


def value_schema(max_bytes: int) -> dict[str, Any]:
    """UTF-8 text of at most ``max_bytes`` bytes, as JSON Schema can say it exactly: the
    length in characters times the UTF-8 width of the widest character is at most
    ``max_bytes`` (the gateway's own check, :func:`tenure.http.problems.text_value`)."""
    return {
        "type": "string",
        "description": f"UTF-8 text of at most {max_bytes} bytes, counted as characters x the "
        f"UTF-8 width of the widest one: {max_bytes} ASCII characters, {max_bytes // 2} "
        f"up to U+07FF, {max_bytes // 3} in the rest of the BMP, {max_bytes // 4} beyond",
        "anyOf": [
            {"maxLength": max_bytes, "pattern": r"^[\x00-\x7F]*$"},
            {"maxLength": max_bytes // 2, "pattern": r"^[\x00-\u07FF]*$"},
            {"maxLength": max_bytes // 3, "pattern": r"^[\x00-\uD7FF\uE000-\uFFFF]*$"},
            {"maxLength": max_bytes // 4},
        ],
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _event(name: str, data: dict[str, Any], with_id: bool = False) -> dict[str, Any]:
    """One server-sent event: ``event: name``, ``data:`` JSON matching ``data``."""
    properties: dict[str, Any] = {
        "event": {"const": name},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": data},
    }
    required = ["event", "data"]
    if with_id:
        properties["id"] = {"type": "string", "pattern": "^[0-9]+$"}
        required.append("id")
    return {"type": "object", "required": required, "properties": properties}


def _sse(description: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"description": description,
            "content": {"text/event-stream": {"itemSchema": {"oneOf": list(events)}}}}


_ERROR_TEXTS = {
    400: "invalid input, an unknown query parameter or a malformed request; `field` names "
    "the culprit", 401: "missing or wrong bearer token",
    403: "a foreign `Origin` (a web page on another site); see --allowed-origin",
    404: "no such leadership for this caller", 409: "the campaign timed out",
    410: "the leadership has ended (lost, resigned, keepalive lapsed or the gateway "
    "stopped); the message says why",
    413: "body larger than 64 KiB", 415: "a body that is not `Content-Type: application/json`",
    421: "a `Host` that does not name this gateway (DNS rebinding); see --allowed-host",
    429: "too many campaigns held by this gateway", 503: "the store cannot be asked; retry",
}


def _errors(*statuses: int) -> dict[str, Any]:
    every = {400, 403, 421, *statuses}
    return {str(s): _json({"$ref": "#/components/schemas/Error"}, _ERROR_TEXTS[s])
            for s in sorted(every)}


def _handle_links() -> dict[str, Any]:
    by_handle = {"handle": "$response.body#/handle"}
    return {op: {"operationId": op, "parameters": by_handle,
                 "description": f"{op} with the handle this campaign returned"}
            for op in ("status", "keepalive", "proclaim", "guardedWrite", "handoff", "resign")}


def document(limits: Limits | None = None, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI document (``auth``: every operation but /healthz needs a bearer token)."""
    limits = limits or Limits()
    name = {"name": "name", "in": "path", "required": True,
            "description": "election name: 1-200 characters of [A-Za-z0-9._-] and '/', no "
            "empty segment, no '..' segment",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200,
                       "pattern": NAME_PATTERN}}
    handle = {"name": "handle", "in": "path", "required": True,
              "description": "the secret handle a campaign returned",
              "schema": {"type": "string", "pattern": HANDLE_PATTERN}}
    value = value_schema(limits.max_value_bytes)
    ttl: dict[str, Any] = {
        "type": ["number", "null"], "minimum": limits.min_ttl, "maximum": limits.max_ttl,
        "description": f"session TTL and keepalive window in seconds, {limits.min_ttl:g} to "
        f"{limits.max_ttl:g} (the store's range within the gateway's --max-ttl); default: "
        "the gateway's --ttl"}
    if limits.ttl_step:
        ttl["multipleOf"] = limits.ttl_step
    campaign_body = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "candidate_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 200,
                             "pattern": "^[!-~]+$",
                             "description": "printable ASCII, no spaces; default: generated "
                             "(host:pid:random)"},
            "value": value,
            "timeout": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_TIMEOUT,
                        "description": "seconds to wait; default: wait forever"},
            "priority": {"type": ["integer", "null"], "minimum": -MAX_PRIORITY,
                         "maximum": MAX_PRIORITY,
                         "description": "this candidate's priority, shown to the others "
                         "(higher is preferred; a leader may yield to it); default none"},
            "ttl": ttl,
        },
    }
    json_body = {"application/json": {"schema": campaign_body}}
    held_errors = (400, 401, 404, 410, 503)
    leadership = {"$ref": "#/components/schemas/Leadership"}
    doc: dict[str, Any] = {
        "openapi": "3.2.0",
        "info": {"title": "tenure gateway", "version": "1",
                 "description": "Leader election over HTTP: campaign, leader, observe, "
                 "proclaim, resign, guarded write. See docs/http.md."},
        "paths": {
            "/healthz": {"get": {
                "operationId": "health", "security": [],
                "responses": {"200": _json({"type": "object"}, "the gateway is up"),
                              **_errors()}}},
            "/metrics": {"get": {
                "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_errors(401)}}},
            "/v1/elections/{name}/leader": {"get": {
                "operationId": "leader", "parameters": [name, {
                    "name": "fresh", "in": "query", "required": False,
                    "description": "true: read the store (linearizable) instead of the cache",
                    "schema": {"type": "boolean"}}],
                "responses": {"200": _json({"$ref": "#/components/schemas/LeaderAnswer"},
                                           "the current leader, or null"),
                              **_errors(401, 503)}}},
            "/v1/elections/{name}/observe": {"get": {
                "operationId": "observe", "parameters": [name, {
                    "name": "timeout", "in": "query", "required": False,
                    "description": "stop after this many seconds (default: never)",
                    "schema": {"type": "number", "minimum": 0, "maximum": MAX_TIMEOUT}}],
                "responses": {"200": _sse(
                    "server-sent events: `leader` (id = sequence) with a LeaderAnswer, the "
                    "current state then every change in token order; `error` if the watch "
                    "stops (reconnect); comment lines as heartbeats",
                    _event("leader", {"$ref": "#/components/schemas/LeaderAnswer"}, True),
                    _event("error", {"$ref": "#/components/schemas/StreamError"})),
                    **_errors(401, 503)}}},
            "/v1/elections/{name}/campaign": {"post": {
                "operationId": "campaign", "parameters": [name],
                "requestBody": {"required": False, "content": json_body},
                "responses": {"200": {**_json(leadership, "won; keep it alive with keepalive "
                                              "within ttl"), "links": _handle_links()},
                              **_errors(401, 409, 413, 415, 429, 503)}}},
            "/v1/elections/{name}/hold": {"post": {
                "operationId": "hold", "parameters": [name],
                "requestBody": {"required": False, "content": json_body},
                "responses": {"200": _sse(
                    "won: `elected` (a Leadership), `heartbeat` every min(15 s, ttl/3), then "
                    "`lost` or `resigned` (also when the gateway stops); held while this "
                    "response is open",
                    _event("elected", leadership),
                    _event("heartbeat", {"$ref": "#/components/schemas/Heartbeat"}),
                    _event("lost", {"$ref": "#/components/schemas/Ended"}),
                    _event("resigned", {"$ref": "#/components/schemas/Ended"})),
                    **_errors(401, 409, 413, 415, 429, 503)}}},
            "/v1/leaderships/{handle}": {
                "get": {"operationId": "status", "parameters": [handle],
                        "responses": {"200": _json(leadership, "this leadership, held"),
                                      **_errors(401, 404, 410)}},
                "delete": {"operationId": "resign", "parameters": [handle],
                           "responses": {"204": {"description": "resigned"},
                                         **_errors(401, 404, 410, 503)}}},
            "/v1/leaderships/{handle}/keepalive": {"post": {
                "operationId": "keepalive", "parameters": [handle],
                "responses": {"200": _json(leadership, "kept alive for another ttl"),
                              **_errors(*held_errors, 413, 415)}}},
            "/v1/leaderships/{handle}/proclaim": {"post": {
                "operationId": "proclaim", "parameters": [handle],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["value"],
                    "properties": {"value": value}}}}},
                "responses": {"200": _json(leadership, "the new value is proclaimed"),
                              **_errors(*held_errors, 413, 415)}}},
            "/v1/leaderships/{handle}/write": {"post": {
                "operationId": "guardedWrite", "parameters": [handle],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "required": ["key", "value"],
                    "properties": {"key": name["schema"], "value": value}}}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/Written"},
                                           "written, committed only while leader"),
                              **_errors(*held_errors, 413, 415)}}},
            "/v1/leaderships/{handle}/handoff": {"post": {
                "operationId": "handoff", "parameters": [handle],
                "description": "hands this leadership to the waiting candidate `to`: it "
                "leads next with a larger token and no other waiter in between; 200 with "
                "`ok` false when it failed (`message` names the candidate and says why; "
                "`still_leading` says whether `on_failure: keep` kept or regained it)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["to"],
                    "properties": {
                        "to": {"type": "string", "minLength": 1, "maxLength": 200,
                               "pattern": "^[!-~]+$",
                               "description": "the candidate id of a live waiter"},
                        "timeout": {"type": ["number", "null"],
                                    "minimum": MIN_HANDOFF_TIMEOUT,
                                    "maximum": MAX_HANDOFF_TIMEOUT,
                                    "description": "seconds for the successor to take over; "
                                    "default 10"},
                        "on_failure": {"enum": ["keep", "resign", None],
                                       "description": "keep leading (default) or resign "
                                       "when the handoff fails"}}}}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/Handoff"},
                                           "the outcome of the handoff"),
                              **_errors(*held_errors, 413, 415)}}},
        },
        "components": {"schemas": {
            "Handoff": {"type": "object",
                        "required": ["ok", "candidate", "message", "released",
                                     "still_leading", "leader", "handle"],
                        "properties": {
                            "ok": {"type": "boolean"}, "candidate": {"type": "string"},
                            "message": {"type": "string"}, "released": {"type": "boolean"},
                            "still_leading": {"type": "boolean"},
                            "leader": {"oneOf": [{"$ref": "#/components/schemas/Leader"},
                                                 {"type": "null"}]},
                            "handle": {"type": ["string", "null"]},
                            "token": {"type": "integer"},
                            "from_token": {"type": "integer"},
                            "elapsed": {"type": "number"}}},
            "Error": {"type": "object", "required": ["error", "message", "field"],
                      "properties": {
                          "error": {"type": "string"}, "message": {"type": "string"},
                          "field": {"type": ["string", "null"]}}},
            "Leader": {"type": "object", "required": ["candidate_id", "token"], "properties": {
                "election": {"type": "string"}, "candidate_id": {"type": "string"},
                "value": {"type": "string"}, "token": {"type": "integer"}}},
            "LeaderAnswer": {"type": "object", "required": ["election", "leader"],
                             "properties": {"election": {"type": "string"},
                                            "leader": {"oneOf": [
                                                {"$ref": "#/components/schemas/Leader"},
                                                {"type": "null"}]}}},
            "Leadership": {"type": "object", "required": ["handle", "token", "valid_for"],
                           "properties": {
                               "handle": {"type": "string"}, "election": {"type": "string"},
                               "candidate_id": {"type": "string"}, "value": {"type": "string"},
                               "token": {"type": "integer"},
                               "mode": {"enum": ["handle", "stream"]},
                               "ttl": {"type": "number"}, "valid_for": {"type": "number"},
                               "keepalive_within": {"type": ["number", "null"]},
                               "lost": {"type": "boolean"},
                               "lost_reason": {"type": ["string", "null"]}}},
            "Heartbeat": {"type": "object", "required": ["valid_for", "token"], "properties": {
                "valid_for": {"type": "number"}, "token": {"type": "integer"}}},
            "Ended": {"type": "object", "required": ["reason", "token"], "properties": {
                "reason": {"type": "string"}, "token": {"type": "integer"}}},
            "StreamError": {"type": "object", "required": ["message"], "properties": {
                "message": {"type": "string"}}},
            "Written": {"type": "object", "required": ["written", "key", "token"],
                        "properties": {"written": {"const": True}, "key": {"type": "string"},
                                       "token": {"type": "integer"}}},
        }},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
