"""Request validation and the gateway's JSON errors.

    body = await read_body(request, CAMPAIGN_FIELDS)    # HTTPProblem (4xx) when bad
    raise HTTPProblem(404, "unknown_handle", "no such leadership ...", field="handle")

Every error the gateway returns is ``{"error": CODE, "message": TEXT, "field": NAME|null}``
with a 4xx status for the caller's mistakes, 503 when the store cannot be asked, and 500
only for a bug. Messages name the offending field and say how to fix it; they pass the
gateway's redactor, so no store credential can leak through one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    ConfigError,
    InvalidNameError,
    InvalidValueError,
    LeadershipLost,
    NotLeader,
    StoreUnavailable,
    TenureError,
    UsageError,
)
from tenure.names import check_candidate_id, check_election_name

MAX_BODY_BYTES = 64 * 1024
MAX_TIMEOUT = 86400.0
MAX_TTL = 3600.0


class HTTPProblem(Exception):
    """An error answer: status, machine-readable code, message, offending field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self, redact: Callable[[str], str]) -> web.Response:
        """The JSON response for this problem."""
        body = {"error": self.code, "message": redact(self.message), "field": self.field}
        return web.json_response(body, status=self.status, headers=self.headers)


def from_tenure_error(exc: TenureError, field: str | None = None) -> HTTPProblem:
    """Maps the core's exception hierarchy to HTTP statuses."""
    message = str(exc)
    if isinstance(exc, InvalidNameError):
        return HTTPProblem(400, "invalid_name", message, field or "name")
    if isinstance(exc, InvalidValueError):
        return HTTPProblem(400, "invalid_value", message, field or "value")
    if isinstance(exc, ConfigError):
        return HTTPProblem(400, "invalid_option", message, field)
    if isinstance(exc, CampaignTimeout):
        return HTTPProblem(409, "campaign_timeout", message, "timeout")
    if isinstance(exc, CampaignCancelled):
        return HTTPProblem(409, "campaign_cancelled", message)
    if isinstance(exc, UsageError):
        return HTTPProblem(409, "usage", message)
    if isinstance(exc, LeadershipLost | NotLeader):
        return HTTPProblem(410, "leadership_lost", message)
    if isinstance(exc, StoreUnavailable):
        return HTTPProblem(503, "store_unavailable", message + "; retry later")
    return HTTPProblem(500, "internal", message)


@dataclass(frozen=True)
class Field:
    """One JSON body field: its check (returns the clean value) and whether required."""

    check: Callable[[str, Any], Any]
    required: bool = False


def election_name(raw: str) -> str:
    """A path's election name, or a 400 naming ``name``."""
    try:
        return check_election_name(raw)
    except InvalidNameError as exc:
        raise HTTPProblem(400, "invalid_name", str(exc), "name") from None


def text_value(max_bytes: int) -> Callable[[str, Any], bytes]:
    """A check for a UTF-8 string field of at most ``max_bytes`` bytes."""
    def check(name: str, raw: Any) -> bytes:
        if not isinstance(raw, str):
            raise HTTPProblem(400, "invalid_value",
                              f"{name!r} must be a string (UTF-8 text)", name)
        data = raw.encode("utf-8", "surrogatepass")
        if len(data) > max_bytes:
            raise HTTPProblem(
                400, "invalid_value",
                f"{name!r} is {len(data)} bytes; the limit is {max_bytes} bytes (store a "
                "reference, e.g. an address or key, instead of the payload)", name)
        return data
    return check


def seconds(limit: float, *, positive: bool = False) -> Callable[[str, Any], float | None]:
    """A check for a number of seconds in [0, limit] (or (0, limit]); null allowed."""
    def check(name: str, raw: Any) -> float | None:
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise HTTPProblem(400, "invalid_value", f"{name!r} must be a number of seconds",
                              name)
        value = float(raw)
        low_ok = value > 0 if positive else value >= 0
        if not math.isfinite(value) or not low_ok or value > limit:
            bound = "> 0" if positive else ">= 0"
            raise HTTPProblem(400, "invalid_value",
                              f"{name!r} is {raw!r}; give seconds {bound} and <= {limit:g}", name)
        return value
    return check


def candidate_id(name: str, raw: Any) -> str | None:
    """A check for a candidate id (printable ASCII, no spaces, 1-200 chars); null allowed."""
    if raw is None:
        return None
    try:
        return check_candidate_id(raw)
    except InvalidValueError as exc:
        raise HTTPProblem(400, "invalid_value", str(exc), name) from None


def key_name(name: str, raw: Any) -> str:
    """A check for a guarded-write key (election-name rules)."""
    try:
        return check_election_name(raw)
    except InvalidNameError as exc:
        raise HTTPProblem(400, "invalid_name", str(exc).replace("election name", "key"),
                          name) from None


async def read_body(request: web.Request, fields: dict[str, Field]) -> dict[str, Any]:
    """Reads and validates a JSON object body against ``fields`` (an empty body is ``{}``)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise HTTPProblem(413, "body_too_large",
                          f"request body is {request.content_length} bytes; the limit is "
                          f"{MAX_BODY_BYTES}")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPProblem(413, "body_too_large",
                          f"request body exceeds {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise HTTPProblem(400, "invalid_json",
                              "request body is not valid JSON; send a JSON object, e.g. "
                              '{"value": "10.0.0.7"}') from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, "invalid_json", "request body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise HTTPProblem(400, "unknown_field",
                          f"unknown field {unknown[0]!r}; known fields: "
                          f"{', '.join(sorted(fields)) or 'none'}", str(unknown[0])[:100])
    clean: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.required:
                raise HTTPProblem(400, "missing_field", f"field {name!r} is required", name)
            continue
        clean[name] = spec.check(name, data[name])
    return clean
