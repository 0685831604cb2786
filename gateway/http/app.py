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
resigns.
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
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from tenure import aio
from tenure.config import DEFAULT_TTL
from tenure.errors import StoreUnavailable, TenureError
from tenure.http import openapi
from tenure.http.auth import Redactor, TokenCheck
from tenure.http.handles import Holder, Holders, TooManyCampaigns, UnknownHandle
from tenure.http.problems import (
    MAX_TIMEOUT,
    MAX_TTL,
    Field,
    HTTPProblem,
    candidate_id,
    election_name,
    from_tenure_error,
    key_name,
    read_body,
    seconds,
    text_value,
)
from tenure.http.watch import Watches, WatchFailed
from tenure.metrics import JsonLog, Metrics
from tenure.names import DEFAULT_MAX_VALUE_BYTES
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


class Gateway:
    """The state behind the routes: one observer client, the watches and the holders.

        gw = Gateway(config); await gw.start()
        ...                                  # the routes use gw.holders / gw.watches
        await gw.close()
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tokens = TokenCheck(config.tokens)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.requests = Counter("tenure_http_requests", "HTTP requests answered",
                                ["route", "status"], registry=self.registry)
        Gauge("tenure_gateway_leaderships", "Leaderships held for callers",
              registry=self.registry).set_function(lambda: len(self.holders))
        Gauge("tenure_gateway_campaigns_waiting", "Campaigns waiting to win",
              registry=self.registry).set_function(lambda: self.holders.campaigning)
        Gauge("tenure_gateway_watches", "Elections watched", registry=self.registry
              ).set_function(lambda: len(self.watches) if self.watches else 0)
        self.json_log = JsonLog(config.json_log, config.redact) if config.json_log else None
        self.holders = Holders(config.backend_url, default_ttl=config.ttl,
                               max_campaigns=config.max_campaigns,
                               config_file=config.config_file, on_change=self._holder_changed)
        self.observer: aio.Client | None = None
        self.watches: Watches | None = None
        self.backend = ""

    async def start(self) -> None:
        """Connects the observer client (ConfigError/StoreUnavailable if it cannot)."""
        self.observer = await aio.connect(self.config.backend_url, ttl=self.config.ttl,
                                          config_file=self.config.config_file)
        self.backend = self.observer.backend
        self.watches = Watches(self.observer, idle=self.config.watch_idle)
        self.watches.start()
        self.holders.start()
        self.metrics.start()
        if self.json_log is not None:
            self.json_log.start()

    async def close(self) -> None:
        """Resigns every held leadership, stops the watches, closes the client."""
        await self.holders.close()
        if self.watches is not None:
            await self.watches.close()
        if self.observer is not None:
            await self.observer.close()
        self.metrics.close()
        if self.json_log is not None:
            self.json_log.close()

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

CAMPAIGN_FIELDS = {
    "candidate_id": Field(candidate_id),
    "timeout": Field(seconds(MAX_TIMEOUT)),
}


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
    return web.json_response(openapi.document(gw.config.max_value_bytes, gw.tokens.enabled,
                                              min(MAX_TTL, gw.config.max_ttl)))


async def leader(request: web.Request) -> web.Response:
    gw = _gateway(request)
    name = election_name(request.match_info["name"])
    fresh = request.query.get("fresh", "false").lower()
    if fresh not in ("true", "false", "1", "0"):
        raise HTTPProblem(400, "invalid_value", "'fresh' must be true or false", "fresh")
    assert gw.observer is not None and gw.watches is not None
    if fresh in ("true", "1"):
        info = await gw.observer.election(name).leader()
    else:
        info = await gw.watches.get(name).current(gw.config.first_read_timeout)
    return web.json_response(_leader_answer(name, info))


async def observe(request: web.Request) -> web.StreamResponse:
    gw = _gateway(request)
    name = election_name(request.match_info["name"])
    timeout = _query_seconds(request, "timeout")
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
            item_or_none = await _next_or_heartbeat(queue, response, end, gw.config.heartbeat)
            if item_or_none is None:
                break
            item = item_or_none
        return response
    finally:
        pumping.cancel()


async def _next_or_heartbeat(
    queue: asyncio.Queue[tuple[int, LeaderInfo | None] | BaseException],
    response: web.StreamResponse, end: float | None, heartbeat: float,
) -> tuple[int, LeaderInfo | None] | BaseException | None:
    """The next queued item, writing heartbeat comments meanwhile; None at ``end``."""
    while True:
        wait = heartbeat if end is None else min(heartbeat, end - time.monotonic())
        if wait <= 0:
            return None
        try:
            return await asyncio.wait_for(queue.get(), timeout=wait)
        except TimeoutError:
            if end is not None and time.monotonic() >= end:
                return None
            await response.write(b": heartbeat\n\n")


def _query_seconds(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    return seconds(MAX_TIMEOUT)(name, value)


async def _campaign(request: web.Request, mode: str) -> Holder:
    gw = _gateway(request)
    name = election_name(request.match_info["name"])
    fields = dict(CAMPAIGN_FIELDS, value=Field(text_value(gw.config.max_value_bytes)),
                  ttl=Field(seconds(min(MAX_TTL, gw.config.max_ttl), positive=True)))
    body = await read_body(request, fields)
    try:
        return await gw.holders.campaign(
            name, owner=gw.owner(request), mode=mode, candidate_id=body.get("candidate_id"),
            value=body.get("value", b""), timeout=body.get("timeout"), ttl=body.get("ttl"),
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
        kind = "resigned" if holder.end_reason == "resigned" else "lost"
        reason = holder.end_reason
        await response.write(_sse(kind, {"reason": gw.config.redact(holder.end_reason),
                                         "token": holder.leadership.token}))
        return response
    finally:
        await gw.holders.end(holder, reason)


def _holder(request: web.Request) -> Holder:
    gw = _gateway(request)
    try:
        return gw.holders.get(request.match_info["handle"], gw.owner(request))
    except UnknownHandle:
        raise HTTPProblem(404, "unknown_handle",
                          "no leadership with this handle belongs to you (it ended, or the "
                          "handle is wrong); campaign again", "handle") from None


def _require_held(holder: Holder) -> None:
    if holder.ended.is_set():
        raise HTTPProblem(410, "leadership_lost",
                          f"leadership of election {holder.election!r} (token "
                          f"{holder.leadership.token}) has ended: {holder.end_reason}")


async def status(request: web.Request) -> web.Response:
    return web.json_response(_holder(request).describe())


async def keepalive(request: web.Request) -> web.Response:
    holder = _holder(request)
    _require_held(holder)
    _gateway(request).holders.keepalive(holder)
    return web.json_response(holder.describe())


async def proclaim(request: web.Request) -> web.Response:
    gw = _gateway(request)
    holder = _holder(request)
    body = await read_body(request, {
        "value": Field(text_value(gw.config.max_value_bytes), required=True)})
    _require_held(holder)
    await holder.leadership.proclaim(body["value"])
    return web.json_response(holder.describe())


async def guarded_write(request: web.Request) -> web.Response:
    gw = _gateway(request)
    holder = _holder(request)
    body = await read_body(request, {
        "key": Field(key_name, required=True),
        "value": Field(text_value(gw.config.max_value_bytes), required=True)})
    _require_held(holder)
    await holder.leadership.guarded_write(body["key"], body["value"])
    return web.json_response({"written": True, "key": body["key"],
                              "token": holder.leadership.token})


async def resign(request: web.Request) -> web.Response:
    holder = _holder(request)
    await _gateway(request).holders.end(holder, "resigned")
    return web.Response(status=204)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Auth, error mapping, request counting."""
    gw = _gateway(request)
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        if gw.tokens.enabled and request.path != "/healthz":
            caller = gw.tokens.identify(request.headers.get("Authorization"))
            if caller is None:
                raise HTTPProblem(401, "unauthorized",
                                  "this gateway needs 'Authorization: Bearer TOKEN' (a token "
                                  "from its --token-file)", headers={"WWW-Authenticate": "Bearer"})
            request["tenure_caller"] = caller
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
        return HTTPProblem(exc.status, exc.reason.lower().replace(" ", "_"),
                           f"{exc.reason}: {request.method} {request.path[:200]}"
                           ).response(gw.config.redact)
    except (ConnectionResetError, asyncio.CancelledError):
        status = 499
        raise
    except Exception as exc:
        log.error("internal error on %s %s: %s", request.method, route_name,
                  gw.config.redact(repr(exc)), exc_info=sys.exc_info())
        return HTTPProblem(500, "internal", "internal error (logged)").response(
            gw.config.redact)
    finally:
        gw.requests.labels(route_name, str(status)).inc()


def build_app(config: GatewayConfig) -> web.Application:
    """The aiohttp application for ``config`` (serve it with handler_cancellation=True)."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    gateway = Gateway(config)
    app[GATEWAY] = gateway

    async def lifecycle(app: web.Application) -> Any:
        await gateway.start()
        yield
        await gateway.close()

    app.cleanup_ctx.append(lifecycle)
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
    return app
