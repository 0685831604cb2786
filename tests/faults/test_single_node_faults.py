"""Every backend on one node (SQLite embedded): candidates' wall clocks stepped forward
and back with libfaketime (the candidates see the step; nothing in tenure reads the
wall clock, so the history holds), SIGSTOP of the only store node past the TTL, and
kill/restart of it. One seeded rotation per backend (candidate crashes and pauses are
tests/conformance/test_chaos.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.suite.backends import PROFILES, Target, implemented
from tenure.conformance.suite.chaos import ChaosConfig, run_chaos

from .conftest import SEED, assert_class

pytestmark = [pytest.mark.faults, pytest.mark.chaos]

STORE_CLASSES = ("clock-step", "store-pause", "leader-kill")


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
        cluster = lab_module.start(backend, nodes=1)
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
