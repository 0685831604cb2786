"""``tenure handoff`` against a leader process that accepts handoff requests
(``Election.run(..., accept_handoff_requests=True)``): the named waiter -- not the
first in line -- leads next; an absent candidate is refused by name (exit 4) and the
leader keeps leading; a leader that does not listen is named in the error; bad
arguments exit 2. On SQLite and a real Redis."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import tenure
from tenure.conformance.lab.fixtures import SharedClusters, store_for
from tenure.conformance.suite.harness import CandidateProcess

pytestmark = pytest.mark.cli

CANDIDATE = Path(__file__).resolve().parents[1] / "conformance" / "handoff_candidate.py"


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
                        pytest.param("redis", marks=pytest.mark.redis, id="redis")])
def store(request: pytest.FixtureRequest, lab_clusters: SharedClusters,
          tmp_path: Path) -> tuple[str, float]:
    return store_for(request, lab_clusters, tmp_path)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def until_listed(client: tenure.Client, election: str, candidate_id: str) -> None:
    end = time.monotonic() + 30
    while candidate_id not in [c.candidate_id for c in client.election(election).contenders()]:
        assert time.monotonic() < end, f"{candidate_id} was not enqueued"
        time.sleep(0.05)  # there is no event for "enqueued"


def test_tenure_handoff_moves_the_lead_to_the_named_waiter(store: tuple[str, float]) -> None:
    url, ttl = store
    election = f"cli-handoff/{uuid.uuid4().hex[:8]}"
    leader = CandidateProcess([sys.executable, str(CANDIDATE), url, election, str(ttl),
                               "leader", "--accept"], "leader")
    won: dict[str, int] = {}
    cancel = threading.Event()
    clients = {cid: tenure.connect(url, ttl=ttl, candidate_id=cid) for cid in ("first", "named")}

    def wait(cid: str) -> None:
        with contextlib.suppress(tenure.CampaignCancelled):
            won[cid] = clients[cid].election(election).campaign(cancel=cancel).token

    threads = []
    try:
        first = leader.wait_for("started", timeout=60)
        for cid in ("first", "named"):
            threads.append(threading.Thread(target=wait, args=(cid,), daemon=True))
            threads[-1].start()
            until_listed(clients["first"], election, cid)
        base = ["--backend", url, "--election", election]

        absent = cli("handoff", *base, "--to", "ghost", "--timeout", "5")
        assert absent.returncode == 4, absent
        assert "'ghost' is not a live contender" in absent.stdout
        assert clients["first"].election(election).leader().token == first["token"]  # type: ignore[union-attr]

        bad = cli("handoff", *base, "--to", "named", "--on-failure", "maybe")
        assert bad.returncode == 2 and "--on-failure" in bad.stderr

        done = cli("handoff", *base, "--to", "named", "--timeout", str(ttl * 3 + 10), "--json")
        assert done.returncode == 0, (done.stdout, done.stderr, leader.stderr()[-2000:])
        answer = json.loads(done.stdout)
        assert answer["ok"] is True and answer["from_token"] == first["token"]
        stopped = leader.wait_for("stopped", timeout=30)
        assert stopped["reason"] == "handed off to named"
        threads[1].join(30)
        assert won.get("named", 0) > first["token"]
        assert "first" not in won, "the first waiter was reported won during the handoff"
    finally:
        cancel.set()
        for thread in threads:
            thread.join(30)
        for client in clients.values():
            client.close()
        leader.kill()


def test_a_leader_that_does_not_accept_requests_is_named(store: tuple[str, float]) -> None:
    url, ttl = store
    election = f"cli-handoff-deaf/{uuid.uuid4().hex[:8]}"
    with tenure.connect(url, ttl=ttl, candidate_id="deaf") as a, \
            tenure.connect(url, ttl=ttl, candidate_id="waiter") as b:
        lead = a.election(election).campaign(timeout=30)
        waiting = threading.Thread(target=lambda: b.election(election).campaign(timeout=30),
                                   daemon=True)
        waiting.start()
        until_listed(a, election, "waiter")
        refused = cli("handoff", "--backend", url, "--election", election, "--to", "waiter",
                      "--timeout", "1")
        assert refused.returncode == 4
        assert "the leader 'deaf'" in refused.stdout and "did not answer" in refused.stdout
        assert lead.state is tenure.client.State.HELD
        lead.resign()
        waiting.join(30)
