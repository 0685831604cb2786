"""Request validation and the gateway's JSON errors.

    body = await read_body(request, CAMPAIGN_FIELDS)    # HTTPProblem (4xx) when bad
    raise HTTPProblem(404, "unknown_handle", "no such leadership ...", field="handle")

Every error the gateway returns is ``{"error": CODE, "message": TEXT, "field": NAME|null}``
with a 4xx status for the caller's mistakes, 503 when the store cannot be asked, and 500
only for a bug. Messages name the offending field and say how to fix it; they pass the
gateway's redactor, so no store credential can leak through one.
"""

from __future__ import annotations

import functools
import json
import math
import re
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
MIN_HANDOFF_TIMEOUT = 0.1
MAX_HANDOFF_TIMEOUT = 3600.0
"""Bounds (seconds) of a handoff's timeout (:func:`tenure.handoff.check_handoff_args`)."""
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


@functools.lru_cache(maxsize=1024)  # valid names only: a refusal raises, is not kept
def _valid_election_name(raw: str) -> str:
    return check_election_name(raw)


def election_name(raw: str) -> str:
    """A path's election name, or a 400 naming ``name``."""
    try:
        return _valid_election_name(raw)
    except InvalidNameError as exc:
        raise HTTPProblem(400, "invalid_name", str(exc), "name") from None


def value_char_limit(text: str, max_bytes: int) -> int:
    """The most characters a value like ``text`` may have: ``max_bytes`` divided by the
    UTF-8 width of its widest character (4096 ASCII characters, 2048 up to U+07FF, 1365
    in the rest of the Basic Multilingual Plane, 1024 beyond). Every value within it is
    at most ``max_bytes`` bytes, and the rule is one a JSON Schema can state exactly
    (see :func:`tenure.http.openapi.value_schema`), so document and gateway agree."""
    widest = max(map(ord, text), default=0)
    width = 1 if widest < 0x80 else 2 if widest < 0x800 else 3 if widest < 0x10000 else 4
    return max_bytes // width


def text_value(max_bytes: int) -> Callable[[str, Any], bytes]:
    """A check for a UTF-8 text field within :func:`value_char_limit` (so at most
    ``max_bytes`` bytes); returns the encoded bytes."""
    def check(name: str, raw: Any) -> bytes:
        if not isinstance(raw, str):
            raise HTTPProblem(400, "invalid_value",
                              f"{name!r} must be a string (UTF-8 text)", name)
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPProblem(400, "invalid_value",
                              f"{name!r} holds a lone surrogate (an unpaired \\uD800-\\uDFFF "
                              "escape); send valid Unicode text", name) from None
        limit = value_char_limit(raw, max_bytes)
        if len(raw) > limit:
            width = max_bytes // limit
            raise HTTPProblem(
                400, "invalid_value",
                f"{name!r} is {len(raw)} characters ({len(data)} bytes); with characters "
                f"{width} bytes wide in UTF-8 the limit is {limit} characters ({max_bytes} "
                "bytes / widest character); store a reference, e.g. an address or key, "
                "instead of the payload", name)
        return data
    return check


def seconds(limit: float, *, low: float = 0.0, step: float | None = None,
            ) -> Callable[[str, Any], float | None]:
    """A check for a JSON number of seconds in [low, limit] (a multiple of ``step`` if
    given); null is allowed and means "not given"."""
    def check(name: str, raw: Any) -> float | None:
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise HTTPProblem(400, "invalid_value",
                              f"{name!r} must be a number of seconds, e.g. 30 or 2.5", name)
        return in_range(name, float(raw), limit, low, step)
    return check


def in_range(name: str, value: float, limit: float, low: float = 0.0,
             step: float | None = None) -> float:
    """``value`` if it is finite, in [low, limit] and a multiple of ``step``; else a 400
    naming ``name`` and the range."""
    multiple = step is None or abs(value / step - round(value / step)) <= 1e-9
    if not math.isfinite(value) or not low <= value <= limit or not multiple:
        every = f" in steps of {step:g}" if step else ""
        raise HTTPProblem(400, "invalid_value",
                          f"{name!r} is {value:g}; give seconds from {low:g} to {limit:g}"
                          f"{every}", name)
    return value


_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def query_seconds(request: web.Request, name: str, limit: float) -> float | None:
    """The query parameter ``name`` as seconds in [0, limit] (None when absent); a 400
    naming it for anything but a plain decimal number (no nan, inf or hex)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not _DECIMAL.fullmatch(raw):
        raise HTTPProblem(400, "invalid_value",
                          f"{name!r} is {raw[:50]!r}; give a number of seconds, e.g. "
                          f"{name}=30 or {name}=2.5", name)
    return in_range(name, float(raw), limit)


def query_flag(request: web.Request, name: str) -> bool:
    """The query parameter ``name`` as a boolean (``true``/``false``, also ``1``/``0``);
    absent is False; a 400 naming it otherwise."""
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise HTTPProblem(400, "invalid_value",
                          f"{name!r} is {raw[:50]!r}; give {name}=true or {name}=false", name)
    return raw in ("true", "1")


def check_query(request: web.Request, known: tuple[str, ...]) -> None:
    """A 400 naming the first query parameter that is not in ``known``, or given twice:
    a misspelt option must not be silently ignored (unknown body fields are refused too)."""
    seen: set[str] = set()
    for name, _ in request.query.items():
        if name not in known:
            takes = ", ".join(known) if known else "no query parameters"
            raise HTTPProblem(400, "unknown_parameter",
                              f"unknown query parameter {name[:100]!r}; this endpoint takes "
                              f"{takes}", name[:100])
        if name in seen:
            raise HTTPProblem(400, "invalid_value",
                              f"query parameter {name!r} is given more than once; give it "
                              "once", name)
        seen.add(name)


def check_content_type(request: web.Request) -> None:
    """A 415 unless a request body (or any ``Content-Type``) is ``application/json``.

    Browsers send ``text/plain``, form and multipart bodies cross-site without asking;
    ``application/json`` needs a CORS preflight, which the gateway answers only for an
    ``--allowed-origin``."""
    header = request.headers.get("Content-Type")
    if header is None and not request.body_exists:
        return
    if header is not None and request.content_type == "application/json":
        return
    got = f"'Content-Type: {header[:100]}'" if header is not None else "no Content-Type"
    raise HTTPProblem(415, "unsupported_media_type",
                      f"request bodies must be JSON, got {got}; send the header "
                      "'Content-Type: application/json' (e.g. curl -H 'Content-Type: "
                      "application/json' -d '{...}')", "Content-Type")


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
