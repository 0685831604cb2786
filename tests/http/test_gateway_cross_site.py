"""Web pages cannot use the loopback gateway: cross-site requests and DNS-rebinding names
are refused (the ``Host``, ``Origin`` and ``Content-Type`` checks of docs/http.md), as
Jupyter and the Docker API do since their DNS-rebinding reports."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpkit import Gateway, call, request

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

PROXY_NAME = "leader.example.test"
DASHBOARD = "https://dash.example.test"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    path = tmp_path_factory.mktemp("cross-site")
    args = ["--backend", f"sqlite://{path}/s.db", "--ttl", "1",
            "--allowed-host", PROXY_NAME, "--allowed-origin", DASHBOARD + "/"]
    with Gateway.start(args) as gw:
        yield gw


def _port(gw: Gateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def _campaign(gw: Gateway, election: str, headers: dict[str, str],
              body: bytes = b'{"timeout": 0}') -> tuple[int, dict[str, str], object]:
    return request("POST", f"{gw.url}/v1/elections/{election}/campaign", headers, body)


def _nobody_leads(gw: Gateway, election: str) -> bool:
    status, answer = call("GET", f"{gw.url}/v1/elections/{election}/leader?fresh=true")
    assert status == 200, answer
    return answer["leader"] is None


def test_the_reported_cross_site_campaign_is_refused_and_wins_nothing(gateway: Gateway) -> None:
    # The report: a text/plain POST with a foreign Origin and Host won a campaign (200).
    evil = {"Content-Type": "text/plain", "Origin": "http://evil.example",
            "Host": f"evil.example:{_port(gateway)}"}
    status, _, answer = _campaign(gateway, "xsite/report", evil)
    assert status == 421, answer
    assert _nobody_leads(gateway, "xsite/report")


@pytest.mark.parametrize(("headers", "status", "field", "fix"), [
    # Each defence on its own (the other headers are those of a legitimate caller).
    ({"Host": "rebound.example:{port}"}, 421, "Host", "--allowed-host"),
    ({"Origin": "http://evil.example"}, 403, "Origin", "--allowed-origin"),
    ({"Origin": "null"}, 403, "Origin", "--allowed-origin"),
    ({"Content-Type": "text/plain"}, 415, "Content-Type", "Content-Type: application/json"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type",
     "Content-Type: application/json"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "Content-Type",
     "Content-Type: application/json"),
    ({"Content-Type": None}, 415, "Content-Type", "Content-Type: application/json"),
])
def test_each_defence_refuses_alone_with_a_json_problem_naming_the_header_and_the_fix(
    gateway: Gateway, headers: dict[str, str | None], status: int, field: str, fix: str,
) -> None:
    sent = {"Content-Type": "application/json"}
    for name, value in headers.items():
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value.format(port=_port(gateway))
    election = f"xsite/{status}-{uuid.uuid4().hex[:8]}"
    got, answer_headers, answer = _campaign(gateway, election, sent)
    assert got == status, answer
    assert answer_headers["content-type"].startswith("application/json")
    assert isinstance(answer, dict) and answer["field"] == field, answer
    assert fix in answer["message"], answer
    assert _nobody_leads(gateway, election)


@pytest.mark.parametrize("host", [
    "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
    PROXY_NAME, f"{PROXY_NAME}:8443", PROXY_NAME.upper(),
])
def test_the_listen_address_its_loopback_spellings_and_an_allowed_host_are_accepted(
    gateway: Gateway, host: str,
) -> None:
    status, _, answer = request("GET", gateway.url + "/healthz",
                                {"Host": host.format(port=_port(gateway))})
    assert status == 200, answer


@pytest.mark.parametrize("host", [
    "localhost",                      # no port: only right when the port is 80
    "127.0.0.1:1",                    # another port
    "127.0.0.1.nip.io:{port}",        # a rebinding name that resolves to loopback
    "leader.example.test.evil:{port}",
    "evil.example:{port}",
    "[::1",                           # malformed
])
def test_any_other_host_is_misdirected(gateway: Gateway, host: str) -> None:
    status, _, answer = request("GET", gateway.url + "/healthz",
                                {"Host": host.format(port=_port(gateway))})
    assert status == 421, answer
    assert answer["error"] == "misdirected_request" and answer["field"] == "Host"


def test_a_request_without_host_is_refused(gateway: Gateway) -> None:
    status, _, answer = request("GET", gateway.url + "/healthz", {"Host": ""})
    # http.client sends an empty Host line for "": aiohttp reads it as absent or empty.
    assert status in (400, 421), answer
    assert answer["field"] == "Host"


def test_json_with_a_charset_and_bodyless_posts_pass_the_content_type_check(
    gateway: Gateway,
) -> None:
    status, _, answer = _campaign(gateway, "xsite/charset",
                                  {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200, answer
    assert call("DELETE", f"{gateway.url}/v1/leaderships/{answer['handle']}")[0] == 204
    # A keepalive without a body needs no Content-Type (curl -X POST sends none).
    status, _, answer = request("POST", gateway.url + "/v1/leaderships/no-such/keepalive", {})
    assert status == 404, answer


def test_the_gateways_own_origin_is_accepted_without_cors_headers(gateway: Gateway) -> None:
    status, headers, answer = request("GET", gateway.url + "/healthz",
                                      {"Origin": gateway.url})
    assert status == 200, answer
    assert "access-control-allow-origin" not in headers


def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered(
    gateway: Gateway,
) -> None:
    url = gateway.url + "/v1/elections/xsite/cors/campaign"
    status, headers, _ = request("OPTIONS", url, {
        "Origin": DASHBOARD, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204
    assert "POST" in headers["access-control-allow-methods"]
    assert "Content-Type" in headers["access-control-allow-headers"]
    assert "POST" in headers["allow"]
    status, headers, answer = _campaign(gateway, "xsite/cors", {
        "Origin": DASHBOARD, "Content-Type": "application/json"})
    assert status == 200, answer
    assert headers["access-control-allow-origin"] == DASHBOARD
    assert headers["vary"] == "Origin"
    assert call("DELETE", f"{gateway.url}/v1/leaderships/{answer['handle']}")[0] == 204
    # A foreign origin's preflight is refused like its request.
    status, headers, _ = request("OPTIONS", url, {
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and "access-control-allow-origin" not in headers


@pytest.mark.parametrize(("option", "value"), [
    ("--allowed-host", "http://leader.example.com"),
    ("--allowed-host", "*"),
    ("--allowed-host", "a b"),
    ("--allowed-origin", "leader.example.com"),
    ("--allowed-origin", "https://dash.example.com/app"),
    ("--allowed-origin", "*"),
    ("--allowed-origin", "null"),
])
def test_a_malformed_allowed_host_or_origin_is_refused_at_start(
    tmp_path: Path, option: str, value: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "serve", "--backend",
         f"sqlite://{tmp_path}/s.db", "--listen", "127.0.0.1:0", option, value],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert option in done.stderr and "e.g." in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_on_a_unix_socket_host_is_not_checked_but_origin_is(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sock")
    with Gateway.start(["--backend", f"sqlite://{tmp_path}/s.db", "--unix", path]) as gw:
        assert gw.url == f"unix:{path}"

        def get(headers: dict[str, str]) -> int:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(path)
            with sock:
                lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                sock.sendall(f"GET /healthz HTTP/1.1\r\n{lines}Connection: close\r\n\r\n"
                             .encode())
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            return int(answer.split(b" ", 2)[1])

        # No browser can reach a unix socket, so any Host is fine there...
        assert get({"Host": "localhost"}) == 200
        assert get({"Host": "evil.example"}) == 200
        # ...but a request relayed from a web page elsewhere is still refused.
        assert get({"Host": "localhost", "Origin": "https://evil.example"}) == 403
