"""The lead-forever loop (``Election.run``) on every backend: it campaigns again after
the store ended its session and after a pause past its TTL, and calls ``on_stopped``
exactly once per leadership."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import tenure
from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.harness import CandidateProcess
from tenure.leadership import State

pytestmark = pytest.mark.conformance

RUN_CANDIDATE = Path(__file__).with_name("run_candidate.py")


def test_the_run_loop_campaigns_again_after_the_store_ended_its_session(
    target: Target,
) -> None:
    name = target.election("run-session")
    started: list[int] = []
    stopped: list[tuple[int, str]] = []
    second = threading.Event()
    with tenure.connect(target.url, ttl=target.profile.ttl, candidate_id="runner") as client:
        election = client.election(name)

        def work(lead: tenure.Leadership) -> None:
            started.append(lead.token)
            if len(started) == 1:
                # The store ends the session behind the core's back (as an expiry or an
                # operator would): every entry of it goes, and the core finds out.
                client.store.close_session()
            else:
                second.set()
            lead.ended.wait()

        runner = threading.Thread(
            target=election.run, args=(work,),
            kwargs={"on_stopped": lambda lead, why: stopped.append((lead.token, why))},
            daemon=True,
        )
        runner.start()
        assert second.wait(target.profile.ttl * 3 + 30), (started, stopped)
        assert started[1] > started[0]
        assert [token for token, _ in stopped] == [started[0]]
    runner.join(timeout=30)
    assert not runner.is_alive()
    # Closing the client ended the second leadership: on_stopped once more, and only once.
    assert [token for token, _ in stopped] == started


def test_the_run_loop_stops_when_work_returns_and_resigns(target: Target) -> None:
    name = target.election("run-return")
    calls: list[tuple[str, State]] = []
    with tenure.connect(target.url, ttl=target.profile.ttl) as client:
        election = client.election(name)
        election.run(lambda lead: None,
                     on_stopped=lambda lead, why: calls.append((why, lead.state)))
        assert calls == [("work returned", State.RESIGNED)]
        assert election.leader() is None


def test_a_run_loop_paused_past_its_ttl_stops_once_and_leads_again_later(
    target: Target,
) -> None:
    ttl = target.profile.ttl
    name = target.election("run-pause")
    command = [sys.executable, str(RUN_CANDIDATE), target.url, name, str(ttl), "paused-one"]
    runner = CandidateProcess(command, "runner")
    try:
        first = runner.wait_for("started", timeout=60)
        with tenure.connect(target.url, ttl=ttl, candidate_id="other") as other:
            runner.pause()
            try:
                # The successor wins only after the paused leader's session expired.
                successor = other.election(name).campaign(timeout=ttl * 3 + 30)
            finally:
                runner.resume()
            assert successor.token > first["token"]
            stopped = runner.wait_for("stopped", timeout=ttl * 3 + 30)
            assert stopped["token"] == first["token"] and stopped["state"] == "lost"
            successor.resign()
            again = runner.wait_for("started", after=runner.events.index(stopped),
                                    timeout=ttl * 3 + 30)
            assert again["token"] > successor.token
        stops = [e for e in runner.events if e["kind"] == "stopped"]
        assert [e["token"] for e in stops] == [first["token"]], "on_stopped fired twice"
    finally:
        runner.kill()
