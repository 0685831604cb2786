"""Seeded chaos runs on every backend: random crashes, pauses, store-node kills, cuts
and latency, each run's history checked for S1/S2/S3. The seed is printed; a failing
run's history and schedule are saved under artifacts/ for replay.
TENURE_CHAOS_DURATION (seconds from the first leader, default 12) lengthens the runs."""

from __future__ import annotations

import os
import random

import pytest

from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.chaos import PROCESS_FAULTS, ChaosConfig, run_chaos

pytestmark = [pytest.mark.conformance, pytest.mark.chaos, pytest.mark.slow]

DURATION = float(os.environ.get("TENURE_CHAOS_DURATION", "12"))
SEED = int(os.environ.get("TENURE_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))


def test_random_crashes_and_pauses_never_break_safety(target: Target) -> None:
    config = ChaosConfig(seed=SEED, duration=DURATION, faults=PROCESS_FAULTS)
    report = run_chaos(target, config, target.workdir / "chaos")
    print(report.summary())
    assert report.ok, report.summary()
    assert sum(report.faults.values()) >= 3


def test_random_store_faults_never_break_safety(cluster_target: Target) -> None:
    config = ChaosConfig(seed=SEED, duration=DURATION)
    report = run_chaos(cluster_target, config, cluster_target.workdir / "chaos")
    print(report.summary())
    assert report.ok, report.summary()
    assert sum(report.faults.values()) >= 3
