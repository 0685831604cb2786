"""Gateway security: tokens off-loopback, handles bound to their caller, TLS, store
credentials kept out of argv, messages and metrics, and clear 4xx errors for bad input."""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from httpkit import Gateway, call

pytestmark = [pytest.mark.http, pytest.mark.sqlite]


def _tokens(tmp_path: Path, count: int = 2) -> tuple[Path, list[str]]:
    tokens = [secrets.token_urlsafe(24) for _ in range(count)]
    path = tmp_path / "tokens"
    path.write_text("\n".join(tokens) + "\n")
    return path, tokens


def _serve_fails(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli.main", "serve", *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


def test_a_non_loopback_address_without_a_token_is_refused(tmp_path: Path) -> None:
    done = _serve_fails("--backend", f"sqlite://{tmp_path}/s.db", "--listen", "0.0.0.0:0",
                        env={"TENURE_GATEWAY_TOKEN": ""})
    assert done.returncode == 2
    assert "needs a bearer token" in done.stderr and "--token-file" in done.stderr


def test_off_loopback_every_call_needs_the_bearer_token_and_handles_are_bound_to_it(
    tmp_path: Path,
) -> None:
    token_file, (alice, bob) = _tokens(tmp_path)
    args = ["--backend", f"sqlite://{tmp_path}/s.db", "--token-file", str(token_file)]
    with Gateway.start(args, listen="0.0.0.0:0") as gw:
        leader_url = f"{gw.url}/v1/elections/sec/leader"
        assert call("GET", leader_url)[0] == 401
        assert call("GET", leader_url, token="wrong-token-wrong-token")[0] == 401
        assert call("GET", gw.url + "/metrics")[0] == 401
        assert call("GET", gw.url + "/healthz")[0] == 200
        assert call("GET", leader_url, token=alice)[0] == 200
        status, grant = call("POST", f"{gw.url}/v1/elections/sec/campaign", {}, token=alice)
        assert status == 200
        handle = grant["handle"]
        assert len(handle) >= 40
        for method, path, body in [("POST", "/keepalive", None),
                                   ("POST", "/proclaim", {"value": "x"}),
                                   ("DELETE", "", None)]:
            status, answer = call(method, f"{gw.url}/v1/leaderships/{handle}{path}", body,
                                  token=bob)
            assert status == 404, (method, path, answer)
        assert call("POST", f"{gw.url}/v1/leaderships/{handle}/keepalive", token=alice)[0] == 200
        assert call("DELETE", f"{gw.url}/v1/leaderships/{handle}", token=alice)[0] == 204
        # Ended, it answers its owner 410 (why it ended) and anyone else still 404.
        assert call("GET", f"{gw.url}/v1/leaderships/{handle}", token=alice)[0] == 410
        assert call("GET", f"{gw.url}/v1/leaderships/{handle}", token=bob)[0] == 404
        status, doc = call("GET", gw.url + "/openapi.json", token=alice)
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_tls_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    token_file, (token, _) = _tokens(tmp_path)
    args = ["--backend", f"sqlite://{tmp_path}/s.db", "--token-file", str(token_file),
            "--tls-cert", str(cert), "--tls-key", str(key)]
    with Gateway.start(args, listen="0.0.0.0:0") as gw:
        assert gw.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        status, answer = call("GET", f"{gw.url}/v1/elections/tls/leader", token=token,
                              context=context)
    assert status == 200 and answer["leader"] is None


def test_store_credentials_stay_out_of_argv_messages_logs_and_metrics(tmp_path: Path) -> None:
    password = "hunter2-" + secrets.token_hex(4)
    refused = _serve_fails("--backend", f"redis://user:{password}@127.0.0.1:1")
    assert refused.returncode == 2
    assert password not in refused.stderr and "--backend-file" in refused.stderr
    backend_file = tmp_path / "backend"
    backend_file.write_text(f"redis://user:{password}@127.0.0.1:1/0?nonsense=1\n")
    failed = _serve_fails("--backend-file", str(backend_file))
    assert failed.returncode != 0 and "error" in failed.stderr
    assert password not in failed.stderr + failed.stdout
    # A working gateway whose URL came from the environment: nothing shows it.
    url = f"sqlite://{tmp_path}/s.db"
    with Gateway.start(["--log-format", "json"], env={"TENURE_BACKEND": url}) as gw:
        cmdline = Path(f"/proc/{gw.process.pid}/cmdline").read_bytes().decode()
        metrics = str(call("GET", gw.url + "/metrics")[1])
        call("POST", f"{gw.url}/v1/elections/creds/campaign", {"timeout": 0})
    assert url not in cmdline and str(tmp_path) not in metrics
    assert '"event": "campaign_won"' in gw.stderr()  # the JSON leadership log


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/v1/elections/a%20b/leader", None, 400, "name"),
    ("/v1/elections/a/../b/leader", None, 400, "name"),
    ("/v1/elections/" + "x" * 201 + "/leader", None, 400, "name"),
    ("/v1/elections/ok/campaign", {"value": "v" * 5000}, 400, "value"),
    ("/v1/elections/ok/campaign", {"timeout": -1}, 400, "timeout"),
    ("/v1/elections/ok/campaign", {"ttl": 0.001}, 400, "ttl"),
    ("/v1/elections/ok/campaign", {"candidate_id": "has space"}, 400, "candidate_id"),
    ("/v1/elections/ok/campaign", {"colour": "red"}, 400, "colour"),
    ("/v1/elections/ok/campaign", [1, 2], 400, None),
    ("/v1/leaderships/not-a-handle/keepalive", None, 404, "handle"),
])
def test_bad_input_gets_a_4xx_json_error_naming_the_field(
    tmp_path: Path, path: str, body: object, status: int, field: str | None,
    sqlite_gateway: Gateway,
) -> None:
    method = "GET" if path.endswith("/leader") else "POST"
    got, answer = call(method, sqlite_gateway.url + path, body)
    assert got == status, answer
    if status != 404 or field:
        assert answer["field"] == field and answer["message"], answer


def test_bodies_are_size_limited(sqlite_gateway: Gateway) -> None:
    status, answer = call("POST", sqlite_gateway.url + "/v1/elections/big/campaign",
                          raw=b'{"value": "' + b"v" * 70000 + b'"}')
    assert status == 413 and answer["error"] == "body_too_large"
    status, answer = call("POST", sqlite_gateway.url + "/v1/elections/big/campaign",
                          raw=b"{not json")
    assert status == 400 and answer["error"] == "invalid_json"


@pytest.fixture(scope="module")
def sqlite_gateway(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = tmp_path_factory.mktemp("gw")
    with Gateway.start(["--backend", f"sqlite://{path}/s.db", "--ttl", "1"]) as gw:
        yield gw


def test_a_malformed_request_carrying_the_token_leaks_it_nowhere(tmp_path: Path) -> None:
    token_file, (token, _) = _tokens(tmp_path)
    args = ["--backend", f"sqlite://{tmp_path}/s.db", "--token-file", str(token_file)]
    with Gateway.start(args) as gw:
        host, port = gw.url.rsplit("/", 1)[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n"
                         f"Authorization: Bearer {token}\x01\r\n\r\n".encode())
            answer = sock.recv(65536)
        deadline = time.monotonic() + 10
        while "malformed" not in gw.stderr():
            assert time.monotonic() < deadline, gw.stderr()
            time.sleep(0.02)  # polling another process's stderr: nothing to await
        logged = gw.stderr()
    assert b" 400 " in answer.split(b"\r\n")[0] and b"application/json" in answer
    assert token.encode() not in answer
    assert token not in logged and "Traceback" not in logged
