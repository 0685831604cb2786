"""Schemathesis holds the live gateway to its OpenAPI document with EVERY check enabled
(status codes, content types, response headers and schemas, SSE events, acceptance of
valid and refusal of invalid input, undeclared methods and ``Allow``, auth, resource
checks): a real ``tenure serve`` on SQLite, every operation including the two event
streams, a bounded number of examples so it ends in a few minutes. Any finding fails
the test; so does a traceback or an internal error in the gateway's log.

The only configuration (tests/http/schemathesis.toml) bounds how much of an endless
event stream is read, and counts 410 Gone (a leadership that has ended) as an answer to
a well-formed request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from httpkit import HERE, Gateway, call

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

EXAMPLES = 20


def test_schemathesis_with_every_check_finds_nothing_on_the_live_gateway(
    tmp_path: Path,
) -> None:
    # --max-ttl 1: a fuzzed campaign can hold an election for at most 1 s, so the
    # next fuzzed campaign on it (no timeout) waits at most that long.
    args = ["--backend", f"sqlite://{tmp_path}/fuzz.db", "--ttl", "1", "--max-ttl", "1"]
    with Gateway.start(args) as gw:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"),
             "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
             "run", gw.url + "/openapi.json", "--checks", "all",
             "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1",
             "--request-timeout", "10", "--generation-database", "none"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )
        alive = call("GET", gw.url + "/healthz")[0]
        stderr = gw.stderr()
    report = done.stdout[-8000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "Operations:       12 selected / 12 total" in done.stdout, report
    assert "Tested: 12" in done.stdout, report
    assert alive == 200
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-3000:]
