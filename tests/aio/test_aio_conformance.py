"""tenure.aio keeps the same S1/S2 properties as the sync API: asyncio candidates are
separate processes recording one history, judged by the same checker."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from tenure.conformance.suite.harness import CandidateGroup, CandidateProcess

pytestmark = [pytest.mark.aio, pytest.mark.slow]

CANDIDATE = Path(__file__).resolve().parent / "aio_candidate.py"


class AioCandidates(CandidateGroup):
    """A CandidateGroup whose members are asyncio candidates."""

    def spawn(self, *, ttl: float | None = None, hold: float | None = None, rounds: int = 1,
              tick: float = 0.05, name: str | None = None) -> CandidateProcess:
        name = name or f"a{len(self.members) + 1}"
        command = [sys.executable, str(CANDIDATE), "--backend", self.backend,
                   "--election", self.election, "--history", str(self.history_path),
                   "--fence", str(self.fence_path), "--rounds", str(rounds),
                   "--tick", str(tick), "--id", f"{name}-{uuid.uuid4().hex[:6]}"]
        if ttl is not None:
            command += ["--ttl", str(ttl)]
        if hold is not None:
            command += ["--hold", str(hold)]
        member = CandidateProcess(command, name)
        self.members.append(member)
        return member


def _election(label: str) -> str:
    return f"aio/{label}/{uuid.uuid4().hex[:8]}"


def test_s1_s2_asyncio_candidates_taking_turns_never_overlap_and_tokens_rise(
    aio_store: tuple[str, float], tmp_path: Path,
) -> None:
    url, ttl = aio_store
    with AioCandidates(url, _election("turns"), tmp_path) as group:
        members = [group.spawn(ttl=ttl, hold=0.1, rounds=3) for _ in range(4)]
        for member in members:
            assert member.wait_exit(timeout=120) == 0, member.stderr()
        report = group.check()
    assert report.ok, report.summary()
    assert len(report.intervals) == 12
    assert report.fenced_accepted > 0


def test_s1_s2_an_asyncio_leader_killed_is_replaced_and_tokens_keep_rising(
    aio_store: tuple[str, float], tmp_path: Path,
) -> None:
    url, ttl = aio_store
    with AioCandidates(url, _election("kill"), tmp_path) as group:
        leader = group.spawn(ttl=ttl)
        first = leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        killed_at = time.monotonic()
        leader.kill()
        elected = follower.wait_for("elected", timeout=ttl + 30)
        report = group.check()
    assert elected["t"] - killed_at < ttl + 3.0
    assert elected["token"] > first["token"]
    assert report.ok, report.summary()


def test_s3_a_paused_asyncio_leader_reports_the_loss_and_its_fenced_writes_fail(
    aio_store: tuple[str, float], tmp_path: Path,
) -> None:
    url, ttl = aio_store
    with AioCandidates(url, _election("pause"), tmp_path) as group:
        leader = group.spawn(ttl=ttl)
        leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        leader.pause()
        follower.wait_for("elected", timeout=ttl + 30)
        follower.wait_for("fenced", accepted=True)
        mark = len(leader.events)
        leader.resume()
        leader.wait_for("lost", after=mark)
        group.close()
        report = group.check()
    assert report.ok, report.summary()
