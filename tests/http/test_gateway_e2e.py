"""The HTTP gateway end to end: candidates are separate processes that lead only
through HTTP; faults are real signals. Runs on SQLite and on a real Redis."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from httpkit import HERE, Gateway, call, sse

from tenure.conformance.suite import history
from tenure.conformance.suite.harness import CandidateProcess

pytestmark = [pytest.mark.http, pytest.mark.slow]

BOUND = 3.0  # seconds allowed beyond the TTL for a failover (2 shared cores)


class HTTPCandidates:
    """HTTP candidate processes of one election sharing one history file."""

    def __init__(self, url: str, election: str, workdir: Path) -> None:
        self.url = url
        self.election = election
        self.history = workdir / f"history-{uuid.uuid4().hex[:6]}.jsonl"
        self.members: list[CandidateProcess] = []

    def spawn(self, mode: str = "handle", hold: float | None = None, rounds: int = 1,
              tick: float = 0.1) -> CandidateProcess:
        name = f"h{len(self.members) + 1}"
        command = [sys.executable, str(HERE / "http_candidate.py"), "--url", self.url,
                   "--election", self.election, "--history", str(self.history),
                   "--mode", mode, "--rounds", str(rounds), "--tick", str(tick),
                   "--id", f"{name}-{uuid.uuid4().hex[:6]}"]
        if hold is not None:
            command += ["--hold", str(hold)]
        member = CandidateProcess(command, name)
        self.members.append(member)
        return member

    def check(self) -> history.Report:
        return history.check(history.load(self.history))

    def close(self) -> None:
        for member in self.members:
            if member.process.poll() is None:
                member.kill()


def _election(label: str) -> str:
    return f"http/{label}/{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("mode", ["handle", "stream"])
def test_l2_the_leaders_client_sigkilled_the_other_leads_within_ttl_plus_a_bound(
    store: tuple[str, float], tmp_path: Path, mode: str,
) -> None:
    url, ttl = store
    with Gateway.start(["--ttl", str(ttl)], env={"TENURE_BACKEND": url}) as gw:
        group = HTTPCandidates(gw.url, _election(f"kill-{mode}"), tmp_path)
        try:
            leader = group.spawn(mode)
            first = leader.wait_for("elected")
            follower = group.spawn(mode)
            follower.wait_for("started")
            # The follower's campaign is queued in the gateway before the kill.
            _wait_until(lambda: _metric(gw.url, "tenure_gateway_campaigns_waiting") >= 1)
            killed_at = time.monotonic()
            leader.kill()
            elected = follower.wait_for("elected", timeout=ttl + BOUND + 30)
            report = group.check()
        finally:
            group.close()
    assert elected["t"] - killed_at < ttl + BOUND, elected["t"] - killed_at
    assert elected["token"] > first["token"]
    assert report.ok, report.summary()


def test_s1_s2_http_candidates_taking_turns_and_sse_observers_see_every_change_in_order(
    store: tuple[str, float], tmp_path: Path,
) -> None:
    url, ttl = store
    with Gateway.start(["--ttl", str(ttl)], env={"TENURE_BACKEND": url}) as gw:
        group = HTTPCandidates(gw.url, _election("turns"), tmp_path)
        seen: list[list[dict[str, Any]]] = [[], []]
        ready = [threading.Event(), threading.Event()]
        rounds = 6

        def follow(index: int) -> None:
            stream = f"{gw.url}/v1/elections/{group.election}/observe?timeout=120"
            for event, data, _ in sse(stream):
                assert event == "leader", (event, data)
                seen[index].append(data)
                ready[index].set()
                tokens = {d["leader"]["token"] for d in seen[index] if d["leader"]}
                if len(tokens) >= rounds and data["leader"] is None:
                    return  # every leadership seen and the last one ended

        observers = [threading.Thread(target=follow, args=(i,), daemon=True) for i in (0, 1)]
        for observer in observers:
            observer.start()
        for event in ready:
            assert event.wait(30), "an SSE observer got no first event"
        try:
            members = [group.spawn("handle", hold=0.4, rounds=2) for _ in range(3)]
            for member in members:
                assert member.wait_exit(timeout=120) == 0, member.stderr()
            for observer in observers:
                observer.join(timeout=30)
            watches = _metric(gw.url, "tenure_gateway_watches")
            report = group.check()
        finally:
            group.close()
    assert report.ok, report.summary()
    tokens = [i.token for i in report.intervals]
    assert len(tokens) == 6
    for stream in seen:
        led = [d["leader"]["token"] for d in stream if d["leader"] is not None]
        assert led == sorted(led), f"SSE tokens out of order: {led}"
        assert set(tokens) <= set(led), f"SSE missed a leadership: {tokens} vs {led}"
    assert watches == 1  # one watch inside the gateway for both observers


def test_a_waiting_caller_that_disconnects_leaves_no_queue_entry(
    store: tuple[str, float], tmp_path: Path,
) -> None:
    url, ttl = store
    with Gateway.start(["--ttl", str(ttl)], env={"TENURE_BACKEND": url}) as gw:
        group = HTTPCandidates(gw.url, _election("gone"), tmp_path)
        try:
            leader = group.spawn("handle", hold=2.0)
            leader.wait_for("elected")
            waiter = group.spawn("handle")
            waiter.wait_for("started")
            _wait_until(lambda: _metric(gw.url, "tenure_gateway_campaigns_waiting") >= 1)
            waiter.kill()
            _wait_until(lambda: _metric(gw.url, "tenure_gateway_campaigns_waiting") == 0)
            leader.wait_for("resigned")
            status, answer = call("GET", f"{gw.url}/v1/elections/{group.election}/leader"
                                  "?fresh=true")
        finally:
            group.close()
    assert status == 200 and answer["leader"] is None, answer


def _metric(url: str, name: str) -> float:
    status, text = call("GET", url + "/metrics")
    assert status == 200
    for line in str(text).splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_until(predicate: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.05)  # polling an HTTP metric: nothing to await across processes
