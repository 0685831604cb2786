"""Live migration between stores (issue 7), on real lab stores.

Each backend is once the source and once the target of a migration walked through
every stage; one pair (etcd -> ZooKeeper) goes through the full stage sequence with
candidate processes of two adjacent stages side by side and the leader SIGKILLed and
SIGSTOPped at each step, checked by the conformance history checker (S1, S2, S3)
across the whole migration; a stale-stage candidate refuses to lead, naming the stage
it must move to; ``tenure migrate status/advance`` behave as documented.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import tenure
from tenure.cli.main import main as tenure_main
from tenure.conformance.lab.fixtures import SharedClusters
from tenure.conformance.suite.backends import PROFILES
from tenure.conformance.suite.harness import CandidateGroup, CandidateProcess
from tenure.migration import STAGES, MigrationStageError, migration_url

pytestmark = [pytest.mark.slow, pytest.mark.conformance, pytest.mark.lab]

PAIRS = [("sqlite", "etcd"), ("etcd", "zookeeper"), ("zookeeper", "consul"),
         ("consul", "redis"), ("redis", "sqlite")]


def backend_url(name: str, clusters: SharedClusters, workdir: Path) -> str:
    if name == "sqlite":
        return f"sqlite://{workdir}/{uuid.uuid4().hex[:6]}.db"
    return clusters.get(name).url


def pair_ttl(*names: str) -> float:
    return max(PROFILES[name].ttl for name in names)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Re-checks a store-side condition (nothing to wait on: store state changes)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "pair", [pytest.param(p, id=f"{p[0]}-to-{p[1]}",
                          marks=[getattr(pytest.mark, b) for b in set(p)]) for p in PAIRS])
def test_each_stage_hands_over_to_the_next_with_rising_tokens_and_stale_stages_refuse(
    pair: tuple[str, str], lab_clusters: SharedClusters, tmp_path: Path,
) -> None:
    source, target = (backend_url(name, lab_clusters, tmp_path) for name in pair)
    ttl = pair_ttl(*pair)
    name = f"migration/{pair[0]}-{pair[1]}/{uuid.uuid4().hex[:8]}"
    guard = tenure.FencingGuard(str(tmp_path / "fence.db"))
    tokens: list[int] = []

    def client(stage: str, cid: str) -> tenure.Client:
        return tenure.connect(migration_url(stage, source, target), ttl=ttl, candidate_id=cid)

    # An observer (on dual-source: it reads both stores) follows the token in force.
    watcher = client("dual-source", "c-watcher")
    observed: list[tenure.LeaderInfo | None] = []
    observer = watcher.election(name).on_change(observed.append)
    # Each adjacent pair of stages side by side: the older leads, the newer waits and
    # takes over when the older resigns (a rolling restart, one candidate at a time).
    older = client("source", "c-source")
    lead = older.election(name).campaign(timeout=30)
    tokens.append(lead.token)
    assert guard.accept(name, lead.token)
    for stage in STAGES[1:]:
        newer = client(stage, f"c-{stage}")
        won: list[tenure.Leadership] = []
        waiter = threading.Thread(target=_campaign_into, args=(newer, name, won))
        waiter.start()
        wait_until(_queued(older, newer, name), 30, f"{stage} candidate queued")
        assert older.election(name).leader() is not None
        lead.resign()
        waiter.join(timeout=90)
        older.close()
        assert won, f"the {stage} candidate did not take over"
        lead, older = won[0], newer
        assert lead.token > tokens[-1], f"{stage} token {lead.token} after {tokens}"
        assert guard.accept(name, lead.token)
        tokens.append(lead.token)
        info = older.election(name).leader()
        assert info is not None and info.token == lead.token  # observe applies the offset
        lead.guarded_write(f"{name}/data", b"x")
    wait_until(lambda: bool(observed) and observed[-1] is not None
               and observed[-1].token == tokens[-1], 30, "observer saw the last leader")
    seen = [info.token for info in observed if info is not None]
    assert seen == sorted(set(seen)) and set(seen) <= set(tokens), (seen, tokens)
    observer.stop()
    watcher.close()
    # The election has passed dual-target: older stages refuse, naming the stage to use.
    lead.resign()
    for stale in ("source", "dual-source"):
        with client(stale, f"c-stale-{stale}") as late, \
                pytest.raises(MigrationStageError, match="restart it with stage dual-target"):
            late.election(name).campaign(timeout=30)
    # target -> dual-target (rollback) keeps the same token space.
    with client("dual-target", "c-back") as back:
        again = back.election(name).campaign(timeout=30)
        assert again.token > tokens[-1]
        assert guard.accept(name, again.token)
        again.resign()
    older.close()


def _campaign_into(client: tenure.Client, name: str, won: list[tenure.Leadership]) -> None:
    won.append(client.election(name).campaign(timeout=60))


def _queued(viewer: tenure.Client, candidate: tenure.Client, name: str) -> Callable[[], bool]:
    return lambda: candidate.candidate_id in {
        x.candidate_id for x in viewer.election(name).contenders()}


@pytest.mark.sqlite
@pytest.mark.redis
def test_a_target_candidate_refuses_before_any_dual_target_leader(
    lab_clusters: SharedClusters, tmp_path: Path,
) -> None:
    source = backend_url("sqlite", lab_clusters, tmp_path)
    target = backend_url("redis", lab_clusters, tmp_path)
    with tenure.connect(migration_url("target", source, target), ttl=1) as early, \
            pytest.raises(MigrationStageError, match="restart it with stage dual-target"):
        early.election(f"migration/early/{uuid.uuid4().hex[:8]}").campaign(timeout=30)


def current_leader(members: list[CandidateProcess]) -> CandidateProcess:
    """The member whose latest event is an election (leaders change only by faults
    here: nobody resigns)."""
    latest = [(e["t"], m) for m in members for e in m.events if e["kind"] == "elected"]
    return max(latest, key=lambda pair: pair[0])[1]


def elected_after(members: list[CandidateProcess], t: float, timeout: float) -> dict[str, object]:
    """Waits for any member's election after monotonic time ``t``."""
    end = time.monotonic() + timeout
    while True:
        found = [e for m in members for e in m.events if e["kind"] == "elected" and e["t"] > t]
        if found:
            return min(found, key=lambda e: float(e["t"]))
        assert time.monotonic() < end, f"no new leader within {timeout:g} s"
        time.sleep(0.02)  # several processes' event lists: re-read them


@pytest.mark.etcd
@pytest.mark.zookeeper
def test_full_migration_with_adjacent_stages_side_by_side_and_leader_crashes_and_pauses(
    lab_clusters: SharedClusters, tmp_path: Path,
) -> None:
    source = lab_clusters.get("etcd").url
    target = lab_clusters.get("zookeeper").url
    ttl = pair_ttl("etcd", "zookeeper")
    bound = 2 * ttl + 20
    election = f"migration/full/{uuid.uuid4().hex[:8]}"
    failovers = 0
    with CandidateGroup(migration_url("source", source, target), election, tmp_path) as group:

        def spawn(stage: str, label: str) -> CandidateProcess:
            return group.spawn(backend=migration_url(stage, source, target), ttl=ttl,
                               rounds=1000, name=f"{stage}-{label}")

        live = [spawn("source", "a"), spawn("source", "b")]
        elected_after(live, 0.0, 60)
        for old, new in itertools.pairwise(STAGES):
            newcomers = [spawn(new, "a"), spawn(new, "b")]
            expected = {str(m.wait_for("started", timeout=60)["cid"]): new for m in newcomers}
            expected.update({str(m.wait_for("started")["cid"]): old for m in live})
            everyone = live + newcomers
            # Side by side: status shows every live candidate with its own stage.
            wait_until(_published(source, target, election, expected), 60,
                       f"{old} and {new} candidates all published")
            # SIGKILL the leader: someone else leads (an old- or new-stage candidate).
            victim = current_leader(everyone)
            killed_at = time.monotonic()
            victim.kill()
            everyone.remove(victim)
            elected_after(everyone, killed_at, bound)
            failovers += 1
            # SIGSTOP the new leader past its TTL: another leads; resumed, it reports
            # the loss (and its late writes are refused: S3 in the checker).
            paused = current_leader(everyone)
            mark = len(paused.events)
            paused_at = time.monotonic()
            paused.pause()
            elected_after([m for m in everyone if m is not paused], paused_at, bound)
            paused.resume()
            paused.wait_for("lost", after=mark, timeout=bound)
            failovers += 1
            # Finish the rolling restart: the old stage's candidates go; a new-stage
            # candidate leads.
            leader = current_leader(everyone)
            finished_at = time.monotonic()
            for member in everyone:
                if member in live and member.process.poll() is None:
                    member.kill()
            live = [m for m in newcomers if m.process.poll() is None]
            assert live, f"no {new} candidate survived"
            if leader not in live:
                elected_after(live, finished_at, bound)
            if new == "dual-target":
                refused = [m for m in everyone if m.has("refused")]
                for member in refused:  # a dual-source candidate that won after the epoch
                    assert "restart it with stage dual-target" in str(
                        member.wait_for("refused")["reason"])
        wait_until(lambda: set(_candidates(tenure_status(source, target, election))
                               .values()) == {"target"}, bound, "only target candidates left")
        assert tenure_status(source, target, election)["offset"] is not None
        report = group.check()
    assert report.ok, report.violations
    elected = sorted((e for m in group.members for e in m.events if e["kind"] == "elected"),
                     key=lambda e: e["t"])
    tokens = [e["token"] for e in elected]
    assert tokens == sorted(set(tokens)), f"tokens not strictly rising: {tokens}"
    for stage in STAGES:  # every stage led at some point of the run
        assert any(str(e["cid"]).startswith(f"{stage}-") for e in elected), (stage, elected)
    assert failovers == 6


def _published(source: str, target: str, election: str,
               expected: dict[str, str]) -> Callable[[], bool]:
    def check() -> bool:
        shown = _candidates(tenure_status(source, target, election))
        return all(shown.get(cid) == stage for cid, stage in expected.items())
    return check


def _candidates(status: dict[str, object]) -> dict[str, str]:
    candidates = status["candidates"]
    assert isinstance(candidates, dict)
    return candidates


def tenure_status(source: str, target: str, election: str) -> dict[str, object]:
    """``tenure migrate status --json`` (the operator's view)."""
    out = run_cli(["migrate", "status", "--from", source, "--to", target,
                   "--election", election, "--json"])
    assert out[0] == 0, out
    result: dict[str, object] = json.loads(out[1])
    return result


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tenure_main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.sqlite
@pytest.mark.redis
def test_migrate_status_and_advance_gate_each_stage(
    lab_clusters: SharedClusters, tmp_path: Path,
) -> None:
    source = backend_url("sqlite", lab_clusters, tmp_path)
    target = backend_url("redis", lab_clusters, tmp_path)
    name = f"migration/cli/{uuid.uuid4().hex[:8]}"
    common = ["--from", source, "--to", target, "--election", name]

    def connect(stage: str, cid: str) -> tenure.Client:
        return tenure.connect(migration_url(stage, source, target), ttl=1, candidate_id=cid)

    with connect("source", "old-1") as old, connect("dual-source", "new-1") as new:
        lead = old.election(name).campaign(timeout=30)
        cancel = threading.Event()
        waiting = threading.Thread(target=_campaign_quietly, args=(new, name, cancel))
        waiting.start()
        wait_until(lambda: len(_candidates(tenure_status(source, target, name))) == 2,
                   30, "both candidates published")
        code, out, _ = run_cli(["migrate", "status", *common])
        assert code == 0
        assert "old-1" in out and "new-1" in out and "dual-source" in out
        assert "leader in source: old-1" in out
        code, _, err = run_cli(["migrate", "advance", *common, "dual-target"])
        assert code == 1 and "old-1 runs source" in err and "move it to dual-source" in err
        code, out, _ = run_cli(["migrate", "advance", *common, "dual-source"])
        assert code == 0 and "safe to roll out dual-source" in out
        code, _, err = run_cli(["migrate", "advance", *common, "target"])
        assert code == 1 and "no token offset" in err
        cancel.set()
        waiting.join(timeout=30)
        lead.resign()
    with connect("dual-target", "new-2") as dual:
        lead = dual.election(name).campaign(timeout=30)
        status = tenure_status(source, target, name)
        assert status["offset"] is not None and status["epoch"] is not None
        assert status["target_leader"] is not None
        code, _, err = run_cli(["migrate", "advance", *common, "dual-source"])
        assert code == 1 and "rollback is possible only to dual-target" in err
        code, out, _ = run_cli(["migrate", "advance", *common, "target"])
        assert code == 0, out
        lead.resign()


def _campaign_quietly(client: tenure.Client, name: str, cancel: threading.Event) -> None:
    with pytest.raises(tenure.CampaignCancelled):
        client.election(name).campaign(cancel=cancel)


@pytest.mark.unit
def test_a_migration_table_in_tenure_toml_names_the_stage(tmp_path: Path) -> None:
    from tenure.config import load_settings

    config = tmp_path / "tenure.toml"
    config.write_text('ttl = 2\n[migration]\nsource = "zookeeper://zk:2181"\n'
                      'target = "etcd://e:2379"\nstage = "dual-source"\n')
    settings = load_settings(config_file=config)
    assert settings.url.scheme == "migrate+dual-source"
    assert settings.url.options == {"source": "zookeeper://zk:2181", "target": "etcd://e:2379"}
    config.write_text('[migration]\nsource = "zookeeper://zk:2181"\n')
    with pytest.raises(tenure.ConfigError, match="source, target and stage"):
        load_settings(config_file=config)
    with pytest.raises(tenure.ConfigError, match=r"unknown backend scheme .migrate\+sideways"):
        tenure.connect(migration_url("source", "sqlite:///x.db", "sqlite:///y.db")
                       .replace("migrate+source", "migrate+sideways"))


@pytest.mark.sqlite
def test_tenure_contenders_lists_the_leader_and_the_waiters(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/c.db"
    name = "cli/contenders"
    with tenure.connect(url, ttl=1, candidate_id="lead") as a, \
            tenure.connect(url, ttl=1, candidate_id="wait") as b:
        lead = a.election(name).campaign(value="addr-1", timeout=10)
        cancel = threading.Event()
        waiting = threading.Thread(target=_campaign_quietly, args=(b, name, cancel))
        waiting.start()
        wait_until(lambda: len(a.election(name).contenders()) == 2, 10, "waiter queued")
        code, out, _ = run_cli(["contenders", "--backend", url, "--election", name, "--json"])
        assert code == 0
        assert [(c["candidate_id"], c["value"]) for c in json.loads(out)] == [
            ("lead", "addr-1"), ("wait", "")]
        cancel.set()
        waiting.join(timeout=10)
        lead.resign()
