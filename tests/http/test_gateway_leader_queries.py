"""GET leader as `tenure bench` measures it (conformance/benchmarks/gatewayproc.py):
the bench's callers count only real answers (the gateway's own request counter agrees),
and the answer encoded once per leader change follows every change. Counted, not timed
(~3 s: one `tenure serve` process on SQLite)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tenure
from tenure.conformance.benchmarks.gatewayproc import Gateway, leader_queries

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

ROUTE = "/v1/elections/{name}/leader"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def _served(metrics: str) -> float:
    pattern = rf'tenure_http_requests_total{{route="{re.escape(ROUTE)}",status="200"}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Polls another process's state (the gateway's watch has no event we can await)."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def test_bench_callers_count_answers_and_the_cached_answer_follows_leader_changes(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/store.db"
    with Gateway(url, ttl=1.0) as gateway:
        base = gateway.url.replace("tenure-serve://", "http://")
        before = _served(_get(f"{base}/metrics"))
        rate = leader_queries(gateway.url, "lq/e", 0.5, callers=2)
        served = _served(_get(f"{base}/metrics")) - before
        counted = rate * 0.5
        # what the callers counted was served (a few answers may be in flight at the end)
        assert 0 < counted <= served + 2, (counted, served)

        def leader_of() -> Any:
            return json.loads(_get(f"{base}/v1/elections/lq/e/leader"))["leader"]

        assert leader_of() is None
        with tenure.connect(url, ttl=1.0) as client:
            first = client.election("lq/e").campaign(b"one")
            _until(lambda: (leader_of() or {}).get("token") == first.token)
            assert leader_of()["value"] == "one"
            first.resign()
            _until(lambda: leader_of() is None)
            second = client.election("lq/e").campaign(b"two")
            _until(lambda: (leader_of() or {}).get("token") == second.token)
            assert leader_of()["value"] == "two" and second.token > first.token
            second.resign()
