"""The gateway does what its OpenAPI document and docs/http.md say, one finding of the
fuzzer at a time, through plain HTTP against a real ``tenure serve`` (the fuzzer itself
runs in test_gateway_fuzz.py)."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from httpkit import Gateway, call, request, sse

from tenure.errors import InvalidNameError
from tenure.names import check_election_name

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "http.md"
SQLITE_MIN_TTL = 0.5
MAX_TTL = 2.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    path = tmp_path_factory.mktemp("contract")
    args = ["--backend", f"sqlite://{path}/s.db", "--ttl", "1", "--max-ttl", str(MAX_TTL)]
    with Gateway.start(args) as gw:
        yield gw


@pytest.fixture(scope="module")
def doc(gateway: Gateway) -> dict[str, Any]:
    status, answer = call("GET", gateway.url + "/openapi.json")
    assert status == 200
    return dict(answer)


def _election(label: str) -> str:
    return f"contract/{label}/{uuid.uuid4().hex[:8]}"


def _campaign(gw: Gateway, body: dict[str, Any], label: str = "c") -> tuple[int, Any]:
    return call("POST", f"{gw.url}/v1/elections/{_election(label)}/campaign",
                {"timeout": 0, **body})


def _resign(gw: Gateway, grant: dict[str, Any]) -> None:
    assert call("DELETE", f"{gw.url}/v1/leaderships/{grant['handle']}")[0] == 204


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("TRACE", "/healthz", {"GET", "HEAD"}),
    ("PUT", "/metrics", {"GET", "HEAD"}),
    ("DELETE", "/v1/elections/a/campaign", {"POST"}),
    ("GET", "/v1/elections/a/hold", {"POST"}),
    ("POST", "/v1/leaderships/h/write", set()),  # the route exists: POST is allowed
    ("PATCH", "/v1/leaderships/h", {"GET", "HEAD", "DELETE"}),
])
def test_405_says_which_methods_are_allowed_and_options_lists_them(
    gateway: Gateway, method: str, path: str, allowed: set[str],
) -> None:
    status, headers, answer = request(method, gateway.url + path,
                                      {"Content-Type": "application/json"}, b"{}")
    if not allowed:
        assert status != 405, answer
        return
    assert status == 405, answer
    assert set(headers["allow"].replace(" ", "").split(",")) == allowed
    assert answer["error"] == "method_not_allowed"
    status, headers, _ = request("OPTIONS", gateway.url + path)
    assert status == 204
    assert set(headers["allow"].replace(" ", "").split(",")) == allowed | {"OPTIONS"}


def test_the_documented_ttl_range_is_the_one_the_store_and_gateway_accept(
    gateway: Gateway, doc: dict[str, Any],
) -> None:
    body = doc["paths"]["/v1/elections/{name}/campaign"]["post"]["requestBody"]
    ttl = body["content"]["application/json"]["schema"]["properties"]["ttl"]
    assert (ttl["minimum"], ttl["maximum"]) == (SQLITE_MIN_TTL, MAX_TTL)
    for accepted in (SQLITE_MIN_TTL, MAX_TTL, None):
        status, grant = _campaign(gateway, {"ttl": accepted})
        assert status == 200, grant
        assert grant["ttl"] == (1.0 if accepted is None else accepted)
        _resign(gateway, grant)
    for refused in (SQLITE_MIN_TTL - 0.01, MAX_TTL + 0.01, 0, -1):
        status, answer = _campaign(gateway, {"ttl": refused})
        assert status == 400 and answer["field"] == "ttl", answer
        assert f"from {SQLITE_MIN_TTL:g} to {MAX_TTL:g}" in answer["message"], answer


def test_streams_are_declared_as_event_streams_with_a_schema_per_event(
    gateway: Gateway, doc: dict[str, Any],
) -> None:
    declared: dict[str, set[str]] = {}
    for path, method in (("/v1/elections/{name}/observe", "get"),
                         ("/v1/elections/{name}/hold", "post")):
        content = doc["paths"][path][method]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        events = content["text/event-stream"]["itemSchema"]["oneOf"]
        assert all(e["properties"]["data"]["contentMediaType"] == "application/json"
                   for e in events)
        declared[method] = {e["properties"]["event"]["const"] for e in events}
    assert declared == {"get": {"leader", "error"},
                        "post": {"elected", "heartbeat", "lost", "resigned"}}
    validator = jsonschema_rs.validator_for(_bundled(doc, "LeaderAnswer"))
    election = _election("sse")
    for event, data, _ in sse(f"{gateway.url}/v1/elections/{election}/observe?timeout=0.2"):
        assert event == "leader"
        validator.validate(data)


def _bundled(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """Component ``name`` as a standalone JSON Schema (its refs resolve in ``$defs``)."""
    text = json.dumps(doc["components"]["schemas"][name]).replace(
        "#/components/schemas/", "#/$defs/")
    return {**json.loads(text), "$defs": json.loads(json.dumps(
        doc["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/"))}


VALUES = [
    "a" * 4096, "a" * 4097, "é" * 2048, "é" * 2049, "€" * 1365, "€" * 1366,
    "😀" * 1024, "😀" * 1025, "a" * 3000 + "é", "a" * 2047 + "é", "", "\x00 nul and tab\t",
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{len(v)}x{max(v, default='-')!r}")
def test_the_value_limit_is_in_bytes_and_the_schema_states_the_servers_rule_exactly(
    gateway: Gateway, doc: dict[str, Any], value: str,
) -> None:
    body = doc["paths"]["/v1/leaderships/{handle}/proclaim"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]["properties"]["value"]
    valid = jsonschema_rs.validator_for(schema).is_valid(value)
    status, answer = _campaign(gateway, {"value": value}, "value")
    assert (status == 200) == valid, (status, answer)
    assert len(value.encode()) <= 4096 or not valid  # the limit is bytes: never more
    if status == 200:
        assert answer["value"] == value
        _resign(gateway, answer)
    else:
        assert status == 400 and answer["field"] == "value", answer
        assert "bytes" in answer["message"]


def test_a_lone_surrogate_is_not_text(gateway: Gateway) -> None:
    status, answer = call("POST", f"{gateway.url}/v1/elections/{_election('s')}/campaign",
                          raw=b'{"value": "\\ud800", "timeout": 0}')
    assert status == 400 and answer["field"] == "value", answer


NAMES = [
    "a", ".", "...", "..a", "a..", ".a/.b", "a/b/c", "x" * 200, "a-b_c.d",
    "..", "a/..", "../a", "a/../b", "a//b", "/a", "a/", "x" * 201, "a b", "a%b",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_name_pattern_is_the_name_rule(doc: dict[str, Any], name: str) -> None:
    parameter = doc["paths"]["/v1/elections/{name}/leader"]["get"]["parameters"][0]
    schema = parameter["schema"]
    try:
        check_election_name(name)
        rule = True
    except InvalidNameError:
        rule = False
    assert jsonschema_rs.validator_for(schema).is_valid(name) == rule
    assert bool(re.fullmatch(schema["pattern"], name)) == rule or len(name) > 200


@pytest.mark.parametrize("name", ["..", "a/..", "../a", "a/../b", "a/./b"])
def test_dot_segments_reach_the_gateway_and_only_dot_dot_is_refused(
    gateway: Gateway, name: str,
) -> None:
    status, _, answer = request("GET", f"{gateway.url}/v1/elections/{name}/leader")
    if ".." in name.split("/"):
        assert status == 400 and answer["field"] == "name", answer
    else:
        assert status == 200 and answer["election"] == name, answer


@pytest.mark.parametrize(("path", "field"), [
    ("/healthz?verbose=1", "verbose"),
    ("/metrics?name[]=x", "name[]"),
    ("/v1/elections/q/leader?fresh=true&colour=red", "colour"),
    ("/v1/elections/q/leader?frsh=true", "frsh"),
    ("/v1/elections/q/leader?fresh=true&fresh=false", "fresh"),
    ("/v1/elections/q/observe?timeot=5", "timeot"),
    ("/v1/elections/q/campaign?timeout=0", "timeout"),
    ("/v1/leaderships/h/keepalive?ttl=5", "ttl"),
])
def test_unknown_or_repeated_query_parameters_are_refused_by_name(
    gateway: Gateway, path: str, field: str,
) -> None:
    method = "POST" if path.split("?")[0].endswith(("campaign", "keepalive")) else "GET"
    status, _, answer = request(method, gateway.url + path)
    assert status == 400, answer
    assert answer["field"] == field, answer
    assert field in answer["message"]


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "1e999", "-1", "0x10", "", "1_0",
                                 "86401"])
def test_observe_timeout_must_be_a_plain_number_of_seconds(gateway: Gateway, raw: str) -> None:
    status, _, answer = request("GET", f"{gateway.url}/v1/elections/q/observe?timeout={raw}")
    assert status == 400, answer
    assert answer["field"] == "timeout", answer
    assert "nan" not in answer["message"].replace(repr(raw), "")
    assert "seconds" in answer["message"]


def test_observe_with_a_timeout_ends_on_time(gateway: Gateway) -> None:
    started = time.monotonic()
    events = list(sse(f"{gateway.url}/v1/elections/{_election('obs')}/observe?timeout=0.3"))
    assert [e[0] for e in events] == ["leader"]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
])
def test_malformed_http_gets_a_json_problem_and_one_log_line(
    gateway: Gateway, raw: bytes,
) -> None:
    before = gateway.stderr()
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])),
                                  timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0], answer
    assert b"content-type: application/json" in head.lower(), answer
    problem = json.loads(body)
    assert problem["error"] == "malformed_request" and problem["message"], problem
    # The log line is written after the answer; wait for it (bounded).
    deadline = time.monotonic() + 10
    while "refused a malformed HTTP request" not in gateway.stderr()[len(before):]:
        assert time.monotonic() < deadline, gateway.stderr()[len(before):]
        time.sleep(0.02)  # polling another process's stderr: nothing to await
    logged = gateway.stderr()[len(before):]
    assert "Traceback" not in logged, logged
    assert len([line for line in logged.splitlines() if "malformed" in line]) == 1, logged


def test_a_handle_whose_keepalive_lapsed_answers_410_with_the_reason(gateway: Gateway) -> None:
    status, grant = _campaign(gateway, {"ttl": SQLITE_MIN_TTL}, "lapse")
    assert status == 200, grant
    url = f"{gateway.url}/v1/leaderships/{grant['handle']}"
    deadline = time.monotonic() + 30
    while call("GET", url)[0] == 200:  # the keepalive window (0.5 s) runs out
        assert time.monotonic() < deadline, "the handle never lapsed"
        time.sleep(0.05)  # waiting for the gateway's reaper, in another process
    for method, path, body in [("POST", "/keepalive", None), ("GET", "", None),
                               ("POST", "/proclaim", {"value": "x"}),
                               ("POST", "/write", {"key": "k", "value": "v"}),
                               ("DELETE", "", None)]:
        status, answer = call(method, url + path, body)
        assert status == 410, (method, path, answer)
        assert answer["error"] == "leadership_ended"
        assert "no keepalive within 0.5 s" in answer["message"], answer
    assert "410" in DOCS.read_text()


def test_a_resigned_handle_answers_410_and_a_wrong_handle_404(gateway: Gateway) -> None:
    status, grant = _campaign(gateway, {}, "resigned")
    assert status == 200, grant
    url = f"{gateway.url}/v1/leaderships/{grant['handle']}"
    assert call("DELETE", url)[0] == 204
    for method, path in [("POST", "/keepalive"), ("GET", ""), ("DELETE", "")]:
        status, answer = call(method, url + path)
        assert status == 410 and "resigned" in answer["message"], (method, answer)
    status, answer = call("POST", f"{gateway.url}/v1/leaderships/{'x' * 43}/keepalive")
    assert status == 404 and answer["field"] == "handle", answer


def test_stream_holders_are_told_resigned_and_observers_end_when_the_gateway_stops(
    tmp_path: Path,
) -> None:
    gw = Gateway.start(["--backend", f"sqlite://{tmp_path}/s.db", "--ttl", "5"])
    election = _election("stop")
    held: list[tuple[str, dict[str, Any]]] = []
    observed: list[str] = []
    elected, watching = threading.Event(), threading.Event()

    def hold() -> None:
        for event, data, _ in sse(f"{gw.url}/v1/elections/{election}/hold", "POST", {}):
            held.append((event, data))
            elected.set()

    def observe() -> None:
        for event, _, _ in sse(f"{gw.url}/v1/elections/{election}/observe"):
            observed.append(event)
            watching.set()
        observed.append("<end>")

    threads = [threading.Thread(target=hold, daemon=True),
               threading.Thread(target=observe, daemon=True)]
    try:
        for thread in threads:
            thread.start()
        assert elected.wait(30) and watching.wait(30)
        gw.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        code = gw.process.wait(timeout=30)
    finally:
        gw.stop()
    assert code == 0, gw.stderr()[-3000:]
    kinds = [event for event, _ in held]
    assert kinds[0] == "elected" and kinds[-1] == "resigned", kinds
    assert held[-1][1] == {"reason": "the gateway is shutting down",
                           "token": held[0][1]["token"]}
    assert observed[-1] == "<end>", observed


def test_every_route_and_every_campaign_body_field_is_in_the_endpoint_table() -> None:
    from tenure.http.app import CAMPAIGN_FIELDS, GatewayConfig, build_app

    docs = DOCS.read_text()
    app = build_app(GatewayConfig(backend_url="sqlite:///unused.db"))
    routes = [(route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical))
              for route in app.router.routes()
              if route.method != "HEAD" and route.resource is not None]
    assert len(routes) >= 13, routes
    missing = [f"{method} {path}" for method, path in routes
               if f"`{method} {path}`" not in docs]
    assert not missing, f"docs/http.md's endpoint table lacks {missing}"
    row = next(line for line in docs.splitlines()
               if line.startswith("| `POST /v1/elections/{name}/campaign`"))
    for name in [*CAMPAIGN_FIELDS, "value", "ttl"]:
        assert f'"{name}"' in row, f"the campaign row does not name {name!r}: {row}"
