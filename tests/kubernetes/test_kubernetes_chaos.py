"""A seeded chaos run on the kubernetes backend with the faults its 1-node lab offers
besides the conformance suite's process faults: apiserver kills (restarted 1-3 s later),
cuts and blackholes between candidates and the apiserver, latency. The history is
checked for S1/S2/S3 as in tests/conformance/test_chaos.py; the seed is printed."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import pytest

from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.suite.backends import PROFILES, Target
from tenure.conformance.suite.chaos import PROCESS_FAULTS, STORE_FAULTS, ChaosConfig, run_chaos

pytestmark = [pytest.mark.kubernetes, pytest.mark.chaos, pytest.mark.slow]

DURATION = float(os.environ.get("TENURE_CHAOS_DURATION", "15"))
SEED = int(os.environ.get("TENURE_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))


def test_apiserver_kills_cuts_and_latency_never_break_safety(
    lab: LabFactory, tmp_path: Path,
) -> None:
    cluster = lab.start("kubernetes")
    # needs_cluster: the suite then puts candidates behind a proxy (the lab's proxy()).
    profile = dataclasses.replace(PROFILES["kubernetes"], needs_cluster=True)
    target = Target(profile, cluster.url, cluster, tmp_path)
    config = ChaosConfig(seed=SEED, duration=DURATION, faults=PROCESS_FAULTS + STORE_FAULTS,
                         rotate=True)
    report = run_chaos(target, config, tmp_path / "chaos")
    print(report.summary())
    assert report.ok, report.summary()
    assert {"node-kill", "cut", "latency"} <= set(report.faults), report.summary()
