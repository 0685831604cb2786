"""Every backend on one node (SQLite embedded): candidates' wall clocks stepped forward
and back with libfaketime (the candidates see the step; nothing in tenure reads the
wall clock, so the history holds), SIGSTOP of the only store node past the TTL, and
kill/restart of it. One seeded rotation per backend (candidate crashes and pauses are
tests/conformance/test_chaos.py's).

The one Redis instance runs with AOF (``appendfsync always``): the fencing token is only
as durable as the counter, and a lone instance restarted WITHOUT its data starts the
counter again, so the next token can be lower -- the limitation docs/redis.md states and
tests/redis/test_redis_persistence.py demonstrates, not something a kill/restart here
should hit. With AOF the kill/restart is the store restart the contract covers.

The chaos run mostly ends before anyone leads again after the restart, so the history
alone seldom holds a leadership from both sides of it; a fresh client therefore leads
once after the run, and its token must be above every token of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

import tenure
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.suite.backends import PROFILES, Target, implemented
from tenure.conformance.suite.chaos import ChaosConfig, run_chaos

from .conftest import SEED, assert_class

pytestmark = [pytest.mark.faults, pytest.mark.chaos]

STORE_CLASSES = ("clock-step", "store-pause", "leader-kill")
LAB_OPTIONS: dict[str, dict[str, object]] = {"redis": {"persistence": True}}
"""Lab options per backend: what the backend's token guarantee needs from a store that is
killed and restarted (docs/redis.md, "Persistence")."""


def kinds_for(backend: str) -> tuple[str, ...]:
    if backend == "sqlite":
        return ("clock-step",)
    if backend in ("postgres", "kubernetes"):
        return ("clock-step", "store-pause")
    return STORE_CLASSES


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=getattr(pytest.mark, b), id=f"{b}x1") for b in implemented()
])
def test_every_class_on_one_node_happens_and_safety_holds(
    backend: str, lab_module: LabFactory, tmp_path: Path
) -> None:
    profile = PROFILES[backend]
    if backend == "sqlite":
        target = Target(profile, f"sqlite://{tmp_path}/store.db", None, tmp_path)
    else:
        cluster = lab_module.start(backend, nodes=1, **LAB_OPTIONS.get(backend, {}))
        target = Target(profile, cluster.url, cluster, tmp_path)
    kinds = kinds_for(backend)
    config = ChaosConfig(seed=SEED, duration=3.0, candidates=3, faults=kinds, rotate=True,
                         brief=True)
    report = run_chaos(target, config, tmp_path / "chaos")
    print(report.summary())
    for entry in report.schedule:
        print(f"  {entry['t']:6.1f}s {entry['fault']}: {entry.get('evidence', '')}")
    for kind in kinds:
        assert_class(report, kind)
    assert report.check is not None
    tokens = [i.token for i in report.check.intervals]
    after = lead_once(target, report.check.intervals[0].election)
    print(f"  tokens of the run {tokens}, a leadership after it: {after}")
    assert after > max(tokens), (tokens, after)


def lead_once(target: Target, election: str) -> int:
    """The token of one leadership of ``election`` by a fresh client (resigned at once),
    once the run's candidates are gone (their sessions expire within a TTL)."""
    with tenure.connect(target.url, ttl=target.profile.ttl) as client:
        lead = client.election(election).campaign(timeout=60)
        lead.resign()
        return lead.token
