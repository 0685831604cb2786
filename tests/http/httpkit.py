"""Test helpers: start ``tenure serve`` as a process, call it, read its SSE streams.

    with Gateway.start(["--backend", url, "--ttl", "1"]) as gw:
        status, body = call("POST", gw.url + "/v1/elections/e/campaign", {})

Only the standard library is used for calls, so these helpers exercise the gateway the
way any HTTP client would.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from tenure.childproc import spawn_guarded

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 60.0


class Gateway:
    """A ``tenure serve`` process and the URL it listens on."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain, daemon=True).start()

    @classmethod
    def start(cls, args: list[str], env: dict[str, str] | None = None,
              listen: str = "127.0.0.1:0") -> Gateway:
        """Starts the gateway and waits for its 'listening on' line; fails (never skips)
        if it does not come."""
        command = [sys.executable, "-m", "tenure.cli.main", "serve", *args]
        if "--listen" not in args and "--unix" not in args:
            command += ["--listen", listen]
        full_env = dict(os.environ, **(env or {}))
        process = spawn_guarded(command, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if "listening on" not in line:
            process.kill()
            _, err = process.communicate(timeout=START_TIMEOUT)
            raise AssertionError(f"tenure serve did not start: {line!r} {err.decode()[-3000:]}")
        url = line.rsplit(" ", 1)[1].strip()
        url = url.replace("://0.0.0.0:", "://127.0.0.1:")
        return cls(process, url)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def stderr(self) -> str:
        """What the gateway logged so far."""
        return b"".join(self._stderr).decode(errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL after 20 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def call(method: str, url: str, body: Any = None, token: str | None = None,
         raw: bytes | None = None, context: ssl.SSLContext | None = None,
         timeout: float = 60.0) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON or None)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            text = answer.read()
            status = answer.status
    except urllib.error.HTTPError as error:
        text = error.read()
        status = error.code
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text.decode(errors="replace")


def request(method: str, url: str, headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 60.0) -> tuple[int, dict[str, str], Any]:
    """One request with exactly ``headers`` (http.client adds only Host, unless given,
    and Content-Length); returns (status, headers, parsed JSON or text)."""
    parts = url.split("/", 3)
    connection = http.client.HTTPConnection(parts[2], timeout=timeout)
    try:
        names = {name.lower() for name in headers or {}}
        connection.putrequest(method, "/" + (parts[3] if len(parts) > 3 else ""),
                              skip_host="host" in names, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        text = answer.read()
        got = {name.lower(): value for name, value in answer.getheaders()}
    finally:
        connection.close()
    try:
        return answer.status, got, json.loads(text) if text else None
    except ValueError:
        return answer.status, got, text.decode(errors="replace")


def sse(url: str, method: str = "GET", body: Any = None,
        timeout: float = 60.0) -> Iterator[tuple[str, dict[str, Any], float]]:
    """Yields ``(event, data, t_received)`` from a server-sent-events response."""
    parts = url.split("/", 3)
    host = parts[2]
    connection = http.client.HTTPConnection(host, timeout=timeout)
    payload = None if body is None else json.dumps(body).encode()
    connection.request(method, "/" + parts[3], body=payload,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise AssertionError(f"SSE {url}: {response.status} {response.read()!r}")
    event, data = "message", ""
    try:
        while True:
            line = response.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: "):
                data = text[6:]
            elif text == "" and data:
                yield event, json.loads(data), time.monotonic()
                event, data = "message", ""
    finally:
        connection.close()
