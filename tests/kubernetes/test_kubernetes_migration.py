"""Live migration to and from the kubernetes backend (etcd -> kubernetes and kubernetes ->
SQLite), walked through every stage with a handover at each, tokens rising across the
whole migration and a fencing guard accepting each new leader; older stages then refuse."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from pathlib import Path

import pytest

import tenure
from tenure.conformance.lab.fixtures import SharedClusters
from tenure.migration import STAGES, MigrationStageError, migration_url

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]


def _url(name: str, clusters: SharedClusters, workdir: Path) -> str:
    if name == "sqlite":
        return f"sqlite://{workdir}/{uuid.uuid4().hex[:6]}.db"
    return clusters.get(name).url


@pytest.mark.parametrize("pair", [pytest.param(("etcd", "kubernetes"), marks=pytest.mark.etcd,
                                               id="etcd-to-kubernetes"),
                                  pytest.param(("kubernetes", "sqlite"), marks=pytest.mark.sqlite,
                                               id="kubernetes-to-sqlite")])
def test_every_stage_hands_over_with_rising_tokens(
    pair: tuple[str, str], lab_clusters: SharedClusters, tmp_path: Path,
) -> None:
    source, target = (_url(name, lab_clusters, tmp_path) for name in pair)
    name = f"migration/{pair[0]}-{pair[1]}/{uuid.uuid4().hex[:8]}"
    guard = tenure.FencingGuard(str(tmp_path / "fence.db"))

    # Every client is closed however the test ends: a leaked one would go on renewing
    # its session in the shared lab cluster under later tests (e.g. the traffic count).
    with contextlib.ExitStack() as clients:

        def client(stage: str, cid: str) -> tenure.Client:
            return clients.enter_context(tenure.connect(
                migration_url(stage, source, target), ttl=2, candidate_id=cid))

        older = client("source", "c-source")
        lead = older.election(name).campaign(timeout=30)
        tokens = [lead.token]
        assert guard.accept(name, lead.token)
        for stage in STAGES[1:]:
            newer = client(stage, f"c-{stage}")
            won: list[tenure.Leadership] = []
            waiter = threading.Thread(
                target=lambda c=newer, w=won: w.append(c.election(name).campaign(timeout=60)))
            waiter.start()
            end = time.monotonic() + 30
            while f"c-{stage}" not in {x.candidate_id for x in older.election(name).contenders()}:
                assert time.monotonic() < end, f"the {stage} candidate never queued"
                time.sleep(0.05)  # store-side state: nothing to wait on
            lead.resign()
            waiter.join(timeout=90)
            older.close()
            assert won, f"the {stage} candidate did not take over"
            lead, older = won[0], newer
            assert lead.token > tokens[-1], (stage, lead.token, tokens)
            assert guard.accept(name, lead.token)
            tokens.append(lead.token)
            lead.guarded_write(f"{name}/data", stage.encode())
        lead.resign()
        with client("source", "c-stale") as late, pytest.raises(MigrationStageError):
            late.election(name).campaign(timeout=30)
        older.close()
