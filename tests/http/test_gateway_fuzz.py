"""Schemathesis fuzzes the gateway's OpenAPI document: no 5xx, no crash, answers that
match the document. Streaming operations (observe, hold) are left to the end-to-end
tests: a fuzzer cannot tell an endless stream from a hang."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from httpkit import Gateway, call

pytestmark = [pytest.mark.http, pytest.mark.sqlite]


def test_fuzzing_the_openapi_document_finds_no_server_error_and_no_crash(tmp_path: Path) -> None:
    # --max-ttl 1: a fuzzed campaign can hold an election for at most 1 s, so the
    # next fuzzed campaign on it (no timeout) waits at most that long.
    args = ["--backend", f"sqlite://{tmp_path}/fuzz.db", "--ttl", "1", "--max-ttl", "1"]
    with Gateway.start(args) as gw:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", gw.url + "/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance,"
             "content_type_conformance",
             "--max-examples", "15", "--exclude-operation-id", "observe",
             "--exclude-operation-id", "hold", "--request-timeout", "20", "--seed", "1"],
            capture_output=True, text=True, timeout=170,
        )
        alive = call("GET", gw.url + "/healthz")[0]
        stderr = gw.stderr()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert alive == 200
    assert "internal error" not in stderr, stderr[-3000:]
