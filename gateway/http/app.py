"""The gateway's aiohttp application: routes, auth, errors, metrics.

    config = GatewayConfig(backend_url="sqlite:///tmp/t.db", ttl=5)
    app = build_app(config)
    web.run_app(app, host="127.0.0.1", port=7480, handler_cancellation=True)

Routes (all JSON unless noted; see docs/http.md and ``/openapi.json``):
``GET /v1/elections/{name}/leader`` (cache; ``?fresh=true`` reads the store),
``GET /v1/elections/{name}/observe`` (SSE), ``POST /v1/elections/{name}/campaign``
(waits, returns a handle to keep alive), ``POST /v1/elections/{name}/hold`` (SSE: held
while open), ``GET|DELETE /v1/leaderships/{handle}``, ``POST .../keepalive``,
``.../proclaim``, ``.../write``, ``GET /metrics``, ``GET /healthz``, ``GET /openapi.json``.
The app must run with ``handler_cancellation=True``: a caller that disconnects while its
campaign waits cancels it (the queue entry is removed), and one whose hold stream closes
resigns. Serve it with :class:`GatewayRunner`, which also answers malformed HTTP with a
JSON problem and one log line (aiohttp alone answers text/plain and logs a traceback).

In front of every route (:func:`guard`): the ``Host`` must name this gateway (else 421)
and an ``Origin`` must be its own or an ``--allowed-origin`` (else 403) -- the DNS
rebinding and cross-site defences of :class:`tenure.http.auth.SiteCheck`; ``OPTIONS``
answers ``Allow`` (and the CORS preflight for an allowed origin); then the bearer token
(401); unknown or repeated query parameters are refused by name (400), and so is a body
that is not ``application/json`` (415).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from tenure import aio
from tenure.config import DEFAULT_TTL
from tenure.errors import ConfigError, StoreUnavailable, TenureError
from tenure.http import openapi
from tenure.http.auth import Redactor, SiteCheck, TokenCheck
from tenure.http.handles import Holder, Holders, TooManyCampaigns, UnknownHandle
from tenure.http.problems import (
    MAX_HANDOFF_TIMEOUT,
    MAX_TIMEOUT,
    MAX_TTL,
    MIN_HANDOFF_TIMEOUT,
    Field,
    HTTPProblem,
    candidate_id,
    check_content_type,
    check_query,
    election_name,
    from_tenure_error,
    key_name,
    query_flag,
    query_seconds,
    read_body,
    seconds,
    text_value,
)
from tenure.http.watch import Watches, WatchFailed
from tenure.metrics import JsonLog, Metrics
from tenure.names import DEFAULT_MAX_VALUE_BYTES
from tenure.priority import check_priority
from tenure.store import LeaderInfo

log = logging.getLogger("tenure.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class GatewayConfig:
    """Everything ``tenure serve`` decides before it starts serving."""

    backend_url: str | None = None
    ttl: float = DEFAULT_TTL
    config_file: str | None = None
    tokens: tuple[str, ...] = ()
    max_campaigns: int = 256
    max_ttl: float = 60.0
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    watch_idle: float = 60.0
    heartbeat: float = 15.0
    first_read_timeout: float = 10.0
    json_log: IO[str] | None = None
    redact: Redactor = field(default_factory=Redactor)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    warm_sessions: int = 2
    """Idle clients (store connection + open session) kept ready per TTL in use; 0: a
    fresh client per campaign (see :mod:`tenure.http.pool`)."""


class Gateway:
    """The state behind the routes: one observer client, the watches and the holders.

        gw = Gateway(config); await gw.start()
        ...                                  # the routes use gw.holders / gw.watches
        await gw.close()
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tokens = TokenCheck(config.tokens)
        self.sites = SiteCheck(config.allowed_hosts, config.allowed_origins)
        self.stopping = asyncio.Event()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.requests = Counter("tenure_http_requests", "HTTP requests answered",
                                ["route", "status"], registry=self.registry)
        self._counted: dict[tuple[str, int], Any] = {}
        self._answers: dict[str, tuple[LeaderInfo | None, bytes]] = {}
        Gauge("tenure_gateway_leaderships", "Leaderships held for callers",
              registry=self.registry).set_function(lambda: len(self.holders))
        Gauge("tenure_gateway_campaigns_waiting", "Campaigns waiting to win",
              registry=self.registry).set_function(lambda: self.holders.campaigning)
        Gauge("tenure_gateway_watches", "Elections watched", registry=self.registry
              ).set_function(lambda: len(self.watches) if self.watches else 0)
        self.json_log = JsonLog(config.json_log, config.redact) if config.json_log else None
        opened = Counter("tenure_gateway_store_clients_opened",
                         "Store clients (one connection and one session each) the gateway "
                         "opened: path=background (warm pool) or campaign (none was warm)",
                         ["path"], registry=self.registry)
        self.holders = Holders(config.backend_url, default_ttl=config.ttl,
                               max_campaigns=config.max_campaigns,
                               config_file=config.config_file, on_change=self._holder_changed,
                               warm=config.warm_sessions,
                               on_open=lambda path: opened.labels(path).inc())
        Gauge("tenure_gateway_warm_sessions", "Idle store sessions ready for campaigns",
              registry=self.registry).set_function(lambda: len(self.holders.pool))
        self.observer: aio.Client | None = None
        self.watches: Watches | None = None
        self.backend = ""
        self.limits = openapi.Limits(max_value_bytes=config.max_value_bytes,
                                     max_ttl=min(MAX_TTL, config.max_ttl))

    async def start(self) -> None:
        """Connects the observer client (ConfigError/StoreUnavailable if it cannot) and
        learns the store's TTL range, which bounds what callers may ask for."""
        self.observer = await aio.connect(self.config.backend_url, ttl=self.config.ttl,
                                          config_file=self.config.config_file)
        self.backend = self.observer.backend
        store = self.observer.sync.store.limits
        self.limits = openapi.Limits(
            max_value_bytes=self.config.max_value_bytes, min_ttl=store.min_ttl,
            max_ttl=min(MAX_TTL, self.config.max_ttl, store.max_ttl), ttl_step=store.ttl_step)
        self.watches = Watches(self.observer, idle=self.config.watch_idle)
        self.watches.start()
        self.holders.start()
        self.metrics.start()
        if self.json_log is not None:
            self.json_log.start()

    async def shutdown(self) -> None:
        """Before open requests are cancelled: ends every stream (observers' streams
        close, hold streams get ``resigned``) and resigns every leadership held."""
        self.stopping.set()
        await self.holders.shutdown()

    async def close(self) -> None:
        """Resigns every held leadership, stops the watches, closes the client."""
        self.stopping.set()
        await self.holders.close()
        if self.watches is not None:
            await self.watches.close()
        if self.observer is not None:
            await self.observer.close()
        self.metrics.close()
        if self.json_log is not None:
            self.json_log.close()

    def count(self, route: str, status: int) -> None:
        """Counts one answered request (the label lookup is cached: routes and
        statuses are few)."""
        child = self._counted.get((route, status))
        if child is None:
            child = self._counted[(route, status)] = self.requests.labels(route, str(status))
        child.inc()

    def leader_body(self, name: str, info: LeaderInfo | None) -> bytes:
        """The JSON answer for ``name`` led by ``info``, encoded once per leader change
        (the watch hands out the same object until the next change)."""
        cached = self._answers.get(name)
        if cached is not None and cached[0] is info:
            return cached[1]
        body = json.dumps(_leader_answer(name, info)).encode()
        if len(self._answers) >= MAX_CACHED_ANSWERS:
            self._answers.clear()
        self._answers[name] = (info, body)
        return body

    def _holder_changed(self, kind: str, holder: Holder) -> None:
        if self.json_log is not None and kind == "ended":
            self.json_log.write("caller_leadership_ended", election=holder.election,
                                candidate_id=holder.leadership.candidate_id,
                                token=holder.leadership.token, mode=holder.mode,
                                reason=holder.end_reason)

    def owner(self, request: web.Request) -> str | None:
        """The caller identity handles are bound to (token hash, unix peer uid)."""
        parts = []
        who = request.get("tenure_caller")
        if who:
            parts.append(str(who))
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None and sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
                parts.append(f"uid:{struct.unpack('3i', creds)[1]}")
        return "|".join(parts) or None


GATEWAY = web.AppKey("gateway", Gateway)

def _priority(name: str, raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():  # JSON Schema: 1.0 is an integer
        raw = int(raw)
    try:
        return check_priority(raw)
    except ConfigError as exc:
        raise HTTPProblem(400, "invalid_value", str(exc), name) from None


CAMPAIGN_FIELDS = {
    "candidate_id": Field(candidate_id),
    "timeout": Field(seconds(MAX_TIMEOUT)),
    "priority": Field(_priority),
}

# The query parameters each route takes (by canonical path); any other is refused (400).
QUERY_PARAMETERS = {
    "/v1/elections/{name}/leader": ("fresh",),
    "/v1/elections/{name}/observe": ("timeout",),
}
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"
MAX_CACHED_ANSWERS = 4096  # encoded leader answers kept, one per election asked about


def _gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def _leader_answer(name: str, info: LeaderInfo | None) -> dict[str, Any]:
    return {"election": name, "leader": None if info is None else info.as_dict()}


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, sort_keys=True)}\n\n".encode()


async def _start_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    return response


async def health(request: web.Request) -> web.Response:
    gw = _gateway(request)
    return web.json_response({"ok": True, "backend": gw.backend.split("://", 1)[0],
                              "leaderships": len(gw.holders)})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(_gateway(request).registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    gw = _gateway(request)
    return web.json_response(openapi.document(gw.limits, gw.tokens.enabled))


async def leader(request: web.Request) -> web.Response:
    gw = _gateway(request)
    name = election_name(request.match_info["name"])
    fresh = query_flag(request, "fresh")
    assert gw.observer is not None and gw.watches is not None
    if fresh:
        info = await gw.observer.election(name).leader()
        return web.json_response(_leader_answer(name, info))
    info = await gw.watches.get(name).current(gw.config.first_read_timeout)
    return web.Response(body=gw.leader_body(name, info), content_type="application/json",
                        charset="utf-8")


async def observe(request: web.Request) -> web.StreamResponse:
    gw = _gateway(request)
    name = election_name(request.match_info["name"])
    timeout = query_seconds(request, "timeout", MAX_TIMEOUT)
    assert gw.watches is not None
    watch = gw.watches.get(name)
    end = None if timeout is None else time.monotonic() + timeout
    queue: asyncio.Queue[tuple[int, LeaderInfo | None] | BaseException] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in watch.follow(gw.config.first_read_timeout):
                queue.put_nowait(item)
        except (WatchFailed, TimeoutError) as exc:
            queue.put_nowait(exc)

    pumping = asyncio.ensure_future(pump())
    try:
        first = await queue.get()
        if isinstance(first, BaseException):
            raise HTTPProblem(503, "store_unavailable",
                              f"cannot observe election {name!r}: {first}; retry later")
        response = await _start_sse(request)
        item: tuple[int, LeaderInfo | None] | BaseException = first
        while True:
            if isinstance(item, BaseException):
                await response.write(_sse("error", {"message": gw.config.redact(
                    f"the watch stopped: {item}; reconnect to resume")}))
                break
            seq, info = item
            await response.write(_sse("leader", _leader_answer(name, info), seq))
            item_or_none = await _next_or_heartbeat(queue, response, end, gw.config.heartbeat,
                                                    gw.stopping)
            if item_or_none is None:
                break
            item = item_or_none
        return response
    finally:
        pumping.cancel()


async def _next_or_heartbeat(
    queue: asyncio.Queue[tuple[int, LeaderInfo | None] | BaseException],
    response: web.StreamResponse, end: float | None, heartbeat: float,
    stopping: asyncio.Event,
) -> tuple[int, LeaderInfo | None] | BaseException | None:
    """The next queued item, writing heartbeat comments meanwhile; None at ``end`` or
    once the gateway is stopping."""
    while not stopping.is_set():
        wait = heartbeat if end is None else min(heartbeat, end - time.monotonic())
        if wait <= 0:
            return None
        getting = asyncio.ensure_future(queue.get())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            done, _ = await asyncio.wait({getting, stop}, timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not getting.done():
                getting.cancel()
        if getting in done:
            return getting.result()
        if stop in done or (end is not None and time.monotonic() >= end):
            return None
        await response.write(b": heartbeat\n\n")
    return None


async def _campaign(request: web.Request, mode: str) -> Holder:
    gw = _gateway(request)
    name = election_name(request.match_info["name"])
    limits = gw.limits
    fields = dict(CAMPAIGN_FIELDS, value=Field(text_value(limits.max_value_bytes)),
                  ttl=Field(seconds(limits.max_ttl, low=limits.min_ttl, step=limits.ttl_step)))
    body = await read_body(request, fields)
    try:
        return await gw.holders.campaign(
            name, owner=gw.owner(request), mode=mode, candidate_id=body.get("candidate_id"),
            value=body.get("value", b""), timeout=body.get("timeout"), ttl=body.get("ttl"),
            priority=body.get("priority"),
        )
    except TooManyCampaigns as exc:
        raise HTTPProblem(429, "too_many_campaigns", str(exc)) from None
    except TenureError as exc:
        raise from_tenure_error(exc, "ttl" if "TTL" in str(exc) else None) from None


async def campaign(request: web.Request) -> web.Response:
    holder = await _campaign(request, "handle")
    try:
        return web.json_response(holder.describe())
    except BaseException:
        await _gateway(request).holders.end(holder, "the caller went away")
        raise


async def hold(request: web.Request) -> web.StreamResponse:
    gw = _gateway(request)
    holder = await _campaign(request, "stream")
    reason = "the stream closed"
    try:
        response = await _start_sse(request)
        await response.write(_sse("elected", holder.describe()))
        beat = max(0.05, min(gw.config.heartbeat, holder.ttl / 3))
        while not holder.ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(holder.ended.wait(), timeout=beat)
            if not holder.ended.is_set():
                await response.write(_sse("heartbeat", {"valid_for": holder.valid_for(),
                                                        "token": holder.leadership.token}))
        kind = holder.end_kind or "resigned"
        reason = holder.end_reason
        await response.write(_sse(kind, {"reason": gw.config.redact(holder.end_reason),
                                         "token": holder.leadership.token}))
        return response
    finally:
        await gw.holders.end(holder, reason)


def _holder(request: web.Request) -> Holder:
    """The caller's holder for the path's handle, still held: 404 if unknown (or not
    the caller's), 410 with the reason once it ended (kept that way for
    :data:`~tenure.http.handles.TOMBSTONE_SECONDS`)."""
    gw = _gateway(request)
    try:
        holder = gw.holders.get(request.match_info["handle"], gw.owner(request))
    except UnknownHandle:
        raise HTTPProblem(404, "unknown_handle",
                          "no leadership with this handle belongs to you (the handle is "
                          "wrong, or it ended long ago); campaign again", "handle") from None
    _require_held(holder)
    return holder


def _require_held(holder: Holder) -> None:
    if holder.ended.is_set():
        raise HTTPProblem(410, "leadership_ended",
                          f"leadership of election {holder.election!r} (token "
                          f"{holder.leadership.token}) has ended ({holder.end_kind}): "
                          f"{holder.end_reason}; campaign again to lead")


async def status(request: web.Request) -> web.Response:
    return web.json_response(_holder(request).describe())


async def keepalive(request: web.Request) -> web.Response:
    await read_body(request, {})
    holder = _holder(request)
    _gateway(request).holders.keepalive(holder)
    return web.json_response(holder.describe())


async def proclaim(request: web.Request) -> web.Response:
    gw = _gateway(request)
    body = await read_body(request, {
        "value": Field(text_value(gw.limits.max_value_bytes), required=True)})
    holder = _holder(request)
    await holder.leadership.proclaim(body["value"])
    return web.json_response(holder.describe())


async def guarded_write(request: web.Request) -> web.Response:
    gw = _gateway(request)
    body = await read_body(request, {
        "key": Field(key_name, required=True),
        "value": Field(text_value(gw.limits.max_value_bytes), required=True)})
    holder = _holder(request)
    await holder.leadership.guarded_write(body["key"], body["value"])
    return web.json_response({"written": True, "key": body["key"],
                              "token": holder.leadership.token})


def _successor(name: str, raw: Any) -> str:
    if raw is None:
        raise HTTPProblem(400, "invalid_value", f"{name!r} must name a waiting candidate", name)
    return str(candidate_id(name, raw))


def _on_failure(name: str, raw: Any) -> str:
    if raw is None:
        return "keep"
    if raw not in ("keep", "resign"):
        raise HTTPProblem(400, "invalid_value",
                          f"{name!r} must be \"keep\" or \"resign\", not {raw!r}", name)
    return str(raw)


async def handoff(request: web.Request) -> web.Response:
    """Hands the leadership to the waiting candidate ``to``; 200 with the outcome
    (``ok`` false when it failed: ``message`` names the candidate and says why)."""
    body = await read_body(request, {
        "to": Field(_successor, required=True),
        "timeout": Field(seconds(MAX_HANDOFF_TIMEOUT, low=MIN_HANDOFF_TIMEOUT)),
        "on_failure": Field(_on_failure)})
    holder = _holder(request)
    result = await _gateway(request).holders.handoff(
        holder, body["to"], body.get("timeout") or 10.0, body.get("on_failure") or "keep")
    answer = result.as_dict()
    answer["handle"] = None if result.leadership is None else holder.handle
    if result.leadership is not None:
        answer["token"] = holder.leadership.token
    return web.json_response(answer)


async def resign(request: web.Request) -> web.Response:
    holder = _holder(request)
    await _gateway(request).holders.end(holder, "resigned")
    return web.Response(status=204)


def _local_address(request: web.Request) -> tuple[str, int] | None:
    """The (ip, port) the connection arrived on; None on a unix socket."""
    if request.transport is None:
        return None
    sockname = request.transport.get_extra_info("sockname")
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


def _check_site(gw: Gateway, request: web.Request) -> None:
    """421 for a Host that is not this gateway, 403 for a foreign Origin (on a unix
    socket no browser can connect, so Host is not checked there; Origin still is)."""
    tls = request.secure
    local = _local_address(request)
    host = request.headers.get("Host")
    if local is not None:
        problem = gw.sites.host_problem(host, local, tls)
        if problem is not None:
            status = 400 if host is None else 421
            raise HTTPProblem(status, "misdirected_request" if host else "missing_host",
                              problem, "Host")
    origin = request.headers.get("Origin")
    if origin is not None and not gw.sites.origin_allowed(origin, host or "", tls):
        raise HTTPProblem(403, "foreign_origin",
                          f"'Origin: {origin[:100]}' is another site: web pages elsewhere may "
                          "not use this gateway; start it with --allowed-origin ORIGIN to let "
                          "that page in", "Origin")
    if origin is not None and gw.sites.cross_origin(origin):
        request["tenure_cors_origin"] = origin


def _options(request: web.Request) -> web.Response:
    """``OPTIONS``: 204 with ``Allow`` (and the CORS preflight answer for an allowed
    origin), 404 for a path no route serves."""
    exc = request.match_info.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed):
        methods = sorted(exc.allowed_methods | {"OPTIONS"})
    elif exc is None:
        methods = sorted({request.method, "OPTIONS"})
    else:
        raise exc
    headers = {"Allow": ", ".join(methods)}
    if "tenure_cors_origin" in request:
        headers.update({"Access-Control-Allow-Methods": ", ".join(methods),
                        "Access-Control-Allow-Headers": CORS_HEADERS,
                        "Access-Control-Max-Age": "600"})
    return web.Response(status=204, headers=headers)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host/Origin checks, OPTIONS, auth, query and Content-Type checks, error mapping,
    request counting (see the module docstring for the order)."""
    gw = _gateway(request)
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        _check_site(gw, request)
        if request.method == "OPTIONS":
            response: web.StreamResponse = _options(request)
            status = response.status
            return response
        if gw.tokens.enabled and request.path != "/healthz":
            caller = gw.tokens.identify(request.headers.get("Authorization"))
            if caller is None:
                raise HTTPProblem(401, "unauthorized",
                                  "this gateway needs 'Authorization: Bearer TOKEN' (a token "
                                  "from its --token-file)", headers={"WWW-Authenticate": "Bearer"})
            request["tenure_caller"] = caller
        if request.match_info.http_exception is None:
            check_query(request, QUERY_PARAMETERS.get(route_name, ()))
            check_content_type(request)
        response = await handler(request)
        status = response.status
        return response
    except HTTPProblem as problem:
        status = problem.status
        return problem.response(gw.config.redact)
    except TenureError as exc:
        mapped = from_tenure_error(exc)
        if isinstance(exc, StoreUnavailable):
            gw.metrics.store_error(gw.backend, route_name)
        status = mapped.status
        return mapped.response(gw.config.redact)
    except (TimeoutError, WatchFailed) as exc:
        gw.metrics.store_error(gw.backend, route_name)
        status = 503
        return HTTPProblem(503, "store_unavailable",
                           f"the store did not answer ({exc or 'timeout'}); retry later"
                           ).response(gw.config.redact)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return HTTPProblem(exc.status, exc.reason.lower().replace(" ", "_"),
                           f"{exc.reason}: {request.method} {request.path[:200]}",
                           headers=allow).response(gw.config.redact)
    except (ConnectionResetError, asyncio.CancelledError):
        status = 499
        raise
    except Exception as exc:
        log.error("internal error on %s %s: %s", request.method, route_name,
                  gw.config.redact(repr(exc)), exc_info=sys.exc_info())
        return HTTPProblem(500, "internal", "internal error (logged)").response(
            gw.config.redact)
    finally:
        gw.count(route_name, status)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Lets an ``--allowed-origin`` page read the answer (streams included)."""
    origin = request.get("tenure_cors_origin")
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"


class _JSONErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering what it cannot parse as a JSON problem
    and logging one line (aiohttp's own answer is text/plain and its log a traceback)."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response was sent already; closing the connection")
        if status >= 500:
            log.error("internal error handling a request from %s", request.remote,
                      exc_info=exc)
            problem = HTTPProblem(status, "internal", "internal error (logged)")
        else:
            first = (message or str(exc or "") or "malformed request").strip().splitlines()
            reason = (first[0] if first else "malformed request").rstrip(": ")[:200]
            log.info("refused a malformed HTTP request from %s (%d): %s", request.remote,
                     status, reason)
            problem = HTTPProblem(status, "malformed_request",
                                  f"malformed HTTP request ({reason}); send well-formed HTTP/1.1")
        response = problem.response(lambda text: text)
        response.force_close()
        return response


class _JSONErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JSONErrorHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` for the gateway app: ``handler_cancellation`` on, and malformed
    HTTP answered as JSON (:class:`_JSONErrorHandler`)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, handler_cancellation=True, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JSONErrorServer  # same state, our connection handler
        return server


def build_app(config: GatewayConfig) -> web.Application:
    """The aiohttp application for ``config`` (serve it with :class:`GatewayRunner`)."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    gateway = Gateway(config)
    app[GATEWAY] = gateway

    async def lifecycle(app: web.Application) -> Any:
        await gateway.start()
        yield
        await gateway.close()

    async def shutdown(app: web.Application) -> None:
        await gateway.shutdown()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(shutdown)
    app.on_response_prepare.append(_cors_headers)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get(r"/v1/elections/{name:.+}/leader", leader)
    app.router.add_get(r"/v1/elections/{name:.+}/observe", observe)
    app.router.add_post(r"/v1/elections/{name:.+}/campaign", campaign)
    app.router.add_post(r"/v1/elections/{name:.+}/hold", hold)
    app.router.add_get("/v1/leaderships/{handle}", status)
    app.router.add_delete("/v1/leaderships/{handle}", resign)
    app.router.add_post("/v1/leaderships/{handle}/keepalive", keepalive)
    app.router.add_post("/v1/leaderships/{handle}/proclaim", proclaim)
    app.router.add_post("/v1/leaderships/{handle}/write", guarded_write)
    app.router.add_post("/v1/leaderships/{handle}/handoff", handoff)
    return app
