"""The gateway's OpenAPI 3.0 document, served at ``/openapi.json``.

    doc = document(max_value_bytes=4096, auth=True)
    doc["paths"]["/v1/elections/{name}/campaign"]["post"]

Written by hand from the same limits the handlers enforce, so fuzzing it (schemathesis)
exercises exactly the validation the gateway does.
"""

from __future__ import annotations

from typing import Any

from tenure.http.problems import MAX_TIMEOUT, MAX_TTL

NAME_PATTERN = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
HANDLE_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _sse(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "invalid input; `field` names it", 401: "missing or wrong bearer token",
        404: "no such leadership for this caller", 409: "campaign timed out",
        410: "the leadership has ended (lost, resigned or keepalive lapsed)",
        413: "body too large", 429: "too many campaigns held by this gateway",
        503: "the store cannot be asked; retry",
    }
    return {str(s): _json({"$ref": "#/components/schemas/Error"}, texts[s]) for s in statuses}


def document(max_value_bytes: int = 4096, auth: bool = False,
             max_ttl: float = MAX_TTL) -> dict[str, Any]:
    """The OpenAPI document (``auth``: every operation but /healthz needs a bearer token)."""
    name = {"name": "name", "in": "path", "required": True,
            "description": "election name: 1-200 chars of [A-Za-z0-9._-] and '/'",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200,
                       "pattern": NAME_PATTERN}}
    handle = {"name": "handle", "in": "path", "required": True,
              "description": "the secret handle a campaign returned",
              "schema": {"type": "string", "pattern": HANDLE_PATTERN}}
    value = {"type": "string", "maxLength": max_value_bytes,
             "description": f"UTF-8 text, at most {max_value_bytes} bytes"}
    campaign_body = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "candidate_id": {"type": "string", "minLength": 1, "maxLength": 200,
                             "pattern": "^[!-~]+$",
                             "description": "default: generated (host:pid:random)"},
            "value": value,
            "timeout": {"type": "number", "minimum": 0, "maximum": MAX_TIMEOUT,
                        "nullable": True, "description": "seconds; default: wait forever"},
            "ttl": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                    "maximum": max_ttl,
                    "description": "session TTL and keepalive window in seconds "
                    "(within the store's range); default: the gateway's --ttl"},
        },
    }
    leader_errors = _errors(400, 401, 503)
    held_errors = _errors(400, 401, 404, 410, 503)
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "tenure gateway", "version": "1",
                 "description": "Leader election over HTTP: campaign, leader, observe, "
                 "proclaim, resign, guarded write. See docs/http.md."},
        "paths": {
            "/healthz": {"get": {
                "operationId": "health", "security": [],
                "responses": {"200": _json({"type": "object"}, "the gateway is up")}}},
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
                                           "the current leader, or null"), **leader_errors}}},
            "/v1/elections/{name}/observe": {"get": {
                "operationId": "observe", "parameters": [name, {
                    "name": "timeout", "in": "query", "required": False,
                    "description": "stop after this many seconds (default: never)",
                    "schema": {"type": "number", "minimum": 0, "maximum": MAX_TIMEOUT}}],
                "responses": {"200": _sse("server-sent events: `leader` (id = sequence) with "
                                          "a LeaderAnswer, in token order"), **leader_errors}}},
            "/v1/elections/{name}/campaign": {"post": {
                "operationId": "campaign", "parameters": [name],
                "requestBody": {"required": False, "content": {
                    "application/json": {"schema": campaign_body}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/Leadership"},
                                           "won; keep it alive with keepalive within ttl"),
                              **_errors(400, 401, 409, 413, 429, 503)}}},
            "/v1/elections/{name}/hold": {"post": {
                "operationId": "hold", "parameters": [name],
                "requestBody": {"required": False, "content": {
                    "application/json": {"schema": campaign_body}}},
                "responses": {"200": _sse("won: events `elected` (Leadership), `heartbeat`, "
                                          "then `lost` or `resigned`; leadership is held while "
                                          "this response is open"),
                              **_errors(400, 401, 409, 413, 429, 503)}}},
            "/v1/leaderships/{handle}": {
                "get": {"operationId": "status", "parameters": [handle],
                        "responses": {"200": _json({"$ref": "#/components/schemas/Leadership"},
                                                   "this leadership"), **_errors(401, 404)}},
                "delete": {"operationId": "resign", "parameters": [handle],
                           "responses": {"204": {"description": "resigned"},
                                         **_errors(401, 404)}}},
            "/v1/leaderships/{handle}/keepalive": {"post": {
                "operationId": "keepalive", "parameters": [handle],
                "responses": {"200": _json({"$ref": "#/components/schemas/Leadership"},
                                           "kept alive for another ttl"), **held_errors}}},
            "/v1/leaderships/{handle}/proclaim": {"post": {
                "operationId": "proclaim", "parameters": [handle],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["value"],
                    "properties": {"value": value}}}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/Leadership"},
                                           "the new value is proclaimed"),
                              **held_errors, **_errors(413)}}},
            "/v1/leaderships/{handle}/write": {"post": {
                "operationId": "guardedWrite", "parameters": [handle],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "required": ["key", "value"],
                    "properties": {"key": name["schema"], "value": value}}}}},
                "responses": {"200": _json({"type": "object"},
                                           "written, committed only while leader"),
                              **held_errors, **_errors(413)}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"},
                "field": {"type": "string", "nullable": True}}},
            "Leader": {"type": "object", "required": ["candidate_id", "token"], "properties": {
                "election": {"type": "string"}, "candidate_id": {"type": "string"},
                "value": {"type": "string"}, "token": {"type": "integer"}}},
            "LeaderAnswer": {"type": "object", "required": ["election", "leader"],
                             "properties": {"election": {"type": "string"},
                                            "leader": {"allOf": [
                                                {"$ref": "#/components/schemas/Leader"}],
                                                "nullable": True}}},
            "Leadership": {"type": "object", "required": ["handle", "token", "valid_for"],
                           "properties": {
                               "handle": {"type": "string"}, "election": {"type": "string"},
                               "candidate_id": {"type": "string"}, "value": {"type": "string"},
                               "token": {"type": "integer"}, "mode": {"type": "string"},
                               "ttl": {"type": "number"}, "valid_for": {"type": "number"},
                               "keepalive_within": {"type": "number", "nullable": True},
                               "lost": {"type": "boolean"},
                               "lost_reason": {"type": "string", "nullable": True}}},
        }},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
