"""``layout=native`` on ZooKeeper: tenure candidates, REAL kazoo recipes (``Election``,
``Lock``) in their own processes and a REAL Curator ``LeaderSelector`` (a Java program,
conformance/interop/curator, built by scripts/install-stores.d/50-curator) queue in ONE
election on the same path.

Both sides record their leaderships into one history in the conformance format, on this
host's monotonic clock: a tenure leadership from its ``elected`` event to its resign and
last validity deadline; a native one from the moment its ``leading`` line is read (no
deadline) to the moment the test sends ``release`` (recorded before sending) or SIGKILL.
A native interval is thus inside the real one, so real overlaps show as overlaps. The
checker finds no two leaders at once and strictly increasing tokens (czxids) across kinds.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import interop_kit
import pytest
from interop_kit import NativeProcess, run_tenure_leader, wait_queued
from kazoo.client import KazooClient

import tenure
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.adapters.zookeeper_connection import parse_url
from tenure.childproc import signal_group
from tenure.config import load_settings, parse_backend_url
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.conformance.suite import history
from tenure.conformance.suite.harness import CandidateGroup
from tenure.migration import MigrationStatus, migration_status, migration_url

pytestmark = [pytest.mark.zookeeper, pytest.mark.interop]

TTL = 2.0  # the lab's tickTime 200 ms allows sessions of 0.4-4 s
WAIT = 30.0
REPO = Path(__file__).resolve().parents[2]
KAZOO_CANDIDATE = REPO / "conformance" / "interop" / "zk_candidate.py"
CURATOR_CLASS = "tenure.interop.CuratorCandidate"
NODE = re.compile(r"^_c_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-lock-\d{10}$")


def hosts(cluster: Cluster) -> str:
    return ",".join(node.client_address for node in cluster.nodes)


def native_url(cluster: Cluster) -> str:
    return f"{cluster.url}?layout=native"


def unique(stem: str) -> str:
    return f"interop/{stem}-{time.monotonic_ns()}"


def curator_command(cluster: Cluster, path: str, ident: str) -> list[str]:
    """The Curator candidate's command line; fails (never skips) when it is not built."""
    cache = Path(os.environ.get("TENURE_CACHE", "/var/cache/tenure"))
    built = Path(os.environ.get("TENURE_CURATOR_DIR", cache / "curator" / "current"))
    jar = built / "curator-candidate-1.jar"
    assert jar.is_file(), (f"the Curator candidate is not built ({jar} is missing): run "
                           "scripts/install-stores (its step install-stores.d/50-curator)")
    return ["java", "-cp", f"{jar}{os.pathsep}{built / 'lib'}/*", CURATOR_CLASS,
            hosts(cluster), path, ident, str(int(TTL * 1000))]


class NativeCandidate(NativeProcess):
    """A candidate process speaking the line protocol of conformance/interop (queued,
    leading NODE CZXID OWNER, released, lost); records its leadership into the shared
    history (tests/interop_kit.py)."""

    def __init__(self, command: list[str], name: str, election: str, history_path: Path):
        self.queued = False
        self.node = ""
        self.owner = ""
        self.released = False
        self.lost_at = math.nan
        super().__init__(command, name, election, history_path, stdin=True)

    def on_line(self, line: str, t: float) -> None:
        word, *rest = line.split() or [""]
        if word == "queued":
            self.queued = True
        elif word == "leading":
            self.node, self.owner = rest[0], rest[2]
            self.mark_elected(int(rest[1]), t)
        elif word == "released":
            self.released = True
        elif word == "lost":
            self.lost_at = t

    def wait_queued(self, timeout: float = WAIT) -> None:
        self.wait("queued", lambda: self.queued, timeout)

    def send_release(self) -> None:
        self.send("release")

    def release(self) -> float:
        """Records ``resign``, then tells the process to give leadership up."""
        sent = super().release()
        self.wait("released", lambda: self.released)
        return sent

    def wait_lost(self, timeout: float = WAIT) -> float:
        self.wait("told it lost", lambda: not math.isnan(self.lost_at), timeout)
        return self.lost_at


class TenureCandidate(interop_kit.TenureCandidate):
    """A tenure candidate in this process, TTL 2 s."""

    def __init__(self, url: str, election: str, history_path: Path, name: str) -> None:
        super().__init__(url, election, history_path, name, ttl=TTL)


Candidate = NativeCandidate | TenureCandidate


@pytest.fixture
def processes() -> Iterator[list[NativeCandidate]]:
    started: list[NativeCandidate] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def zk(zookeeper_cluster: Cluster) -> Iterator[KazooClient]:
    client = KazooClient(hosts=hosts(zookeeper_cluster), timeout=10)
    client.start(timeout=WAIT)
    yield client
    client.stop()
    client.close()


def save_handovers(name: str, samples: dict[str, list[float]]) -> None:
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    path = artifacts / "zookeeper-native-handover.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {k: {"samples_s": v, "median_s": statistics.median(v)}
                  for k, v in samples.items() if v}
    path.write_text(json.dumps(data, indent=2) + "\n")
    for direction, values in samples.items():
        if values and "native" in direction:  # printed for the note (no timing asserted)
            print(f"\nhandover {direction.replace('native', name)} median "
                  f"{statistics.median(values) * 1000:.1f} ms over {len(values)} "
                  f"({', '.join(f'{v * 1000:.1f}' for v in values)} ms)")


# -- the option and the node layout ------------------------------------------------------


def test_layout_is_tenure_by_default_native_on_request_and_checked(tmp_path: Path) -> None:
    def config(url: str) -> Any:
        return parse_url(parse_backend_url(url)[0])

    assert config("zookeeper://127.0.0.1:2181").native is False
    assert config("zookeeper://127.0.0.1:2181?layout=tenure").native is False
    native = config("zookeeper://127.0.0.1:2181/apps?layout=native")
    assert native.native is True and native.base == "/apps" and native.root == "/apps/tenure"
    with pytest.raises(tenure.ConfigError, match=r"layout='raft' must be one of tenure, native"):
        config("zookeeper://127.0.0.1:2181?layout=raft")
    toml = tmp_path / "tenure.toml"
    toml.write_text('backend = "zookeeper://127.0.0.1:2181"\n[options]\nlayout = "native"\n')
    assert parse_url(load_settings(config_file=str(toml)).url).native is True


def test_a_native_node_is_curators_form_and_kazoo_with_the_lock_pattern_sees_it(
    zookeeper_cluster: Cluster, zk: KazooClient,
) -> None:
    name = unique("layout")
    path = f"/{name}"
    with tenure.connect(native_url(zookeeper_cluster), ttl=TTL, candidate_id="t") as client:
        lead = client.election(name).campaign(value=b"first", timeout=WAIT)
        [node] = zk.get_children(path)
        data, stat = zk.get(f"{path}/{node}")
        # Curator's protected LeaderSelector node: _c_<uuid>-lock-<seq>, the value only.
        assert NODE.match(node), node
        assert data == b"first" and stat.czxid == lead.token
        assert stat.ephemeralOwner != 0  # ephemeral, as the recipes' nodes
        # No id is stored: the owning session in hex is the candidate id.
        owner = f"{stat.ephemeralOwner:x}"
        assert lead.candidate_id == owner and client.candidate_id == "t"
        lead.proclaim(b"second")
        assert client.election(name).leader() == tenure.LeaderInfo(name, owner, b"second",
                                                                   lead.token)
        # kazoo with the pattern counts it as a contender; kazoo as it comes does not.
        assert zk.Lock(path, "x", extra_lock_patterns=["lock-"]).contenders() == ["second"]
        assert zk.Election(path, "x").contenders() == []
        # A child that is no contender (a LeaderLatch node) is not read as a candidate.
        zk.create(f"{path}/_c_0-latch-", b"latch", ephemeral=True, sequence=True)
        assert [c.candidate_id for c in client.election(name).contenders()] == [owner]
        lead.resign()
    with tenure.connect(zookeeper_cluster.url, ttl=TTL, candidate_id="t-default") as client:
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        lead = client.election(name).campaign(value=b"mine", timeout=WAIT)
        assert lead.ticket.key.startswith(f"/tenure/elections/{name.replace('/', '%2F')}/c-")
        assert client.election(name).leader() == tenure.LeaderInfo(
            name, "t-default", b"mine", lead.token)
        lead.resign()


# -- mixed elections ---------------------------------------------------------------------


def mixed_election(name: str, order: list[Candidate], reader: tenure.Client,
                   on_leader: Any = None) -> dict[str, list[float]]:
    """Queues ``order`` (already started, in that arrival order), then releases each
    leader in turn: the next in line must lead, each only after the previous released.
    Returns the handover durations by direction."""
    handovers: dict[str, list[float]] = {"tenure->native": [], "native->tenure": [],
                                         "native->native": [], "tenure->tenure": []}
    order[0].wait_elected()
    for previous, following in itertools.pairwise(order):
        assert not following.leading, f"{following.name} leads while {previous.name} does"
        info = reader.election(name).leader()
        assert info is not None and info.token == previous.token, (info, previous.name)
        if isinstance(previous, NativeCandidate):
            assert info.candidate_id == previous.owner and info.value == previous.name.encode()
        if on_leader is not None:
            on_leader(previous)
        sent = previous.release()
        elected = following.wait_elected()
        kinds = ["native" if isinstance(c, NativeCandidate) else "tenure"
                 for c in (previous, following)]
        handovers["->".join(kinds)].append(elected - sent)
        assert following.token > previous.token
    if on_leader is not None:
        on_leader(order[-1])
    order[-1].release()
    return handovers


def test_tenure_and_kazoo_recipes_share_one_queue_in_arrival_order(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """tenure, kazoo's Election (its lock given the pattern), tenure, kazoo's Lock:
    they lead in that order, one at a time; observers and ``tenure leader`` see each."""
    name = unique("kazoo")
    url, history_path = native_url(zookeeper_cluster), tmp_path / "history.jsonl"
    seen: list[tenure.LeaderInfo | None] = []

    def kazoo(mode: str, ident: str) -> NativeCandidate:
        candidate = NativeCandidate(
            [sys.executable, str(KAZOO_CANDIDATE), mode, hosts(zookeeper_cluster),
             f"/{name}", ident, str(TTL)], ident, name, history_path)
        processes.append(candidate)
        candidate.wait_queued()
        return candidate

    with tenure.connect(url, ttl=TTL) as reader:
        watch = reader.election(name).on_change(seen.append)
        first = TenureCandidate(url, name, history_path, "tenure-a")
        second = TenureCandidate(url, name, history_path, "tenure-b")
        try:
            first.campaign_in_background(reader)
            first.wait_elected()
            k_election = kazoo("kazoo-election", "kazoo-election")
            second.campaign_in_background(reader)
            k_lock = kazoo("kazoo-lock", "kazoo-lock")
            order: list[Candidate] = [first, k_election, second, k_lock]
            queue = [c.value for c in reader.election(name).contenders()]
            assert queue == [b"tenure-a", b"kazoo-election", b"tenure-b", b"kazoo-lock"]

            def cli_sees(leader: Candidate) -> None:
                token = leader.token
                wait_until(lambda: any(i is not None and i.token == token for i in seen),
                           WAIT, f"the observer to see {leader.name} lead")
                if leader is k_election:  # the CLI reads the native leader
                    text = run_tenure_leader(url, name)
                    assert text.returncode == 0, text.stderr
                    assert text.stdout.strip() == (
                        f"leader {k_election.owner} token {k_election.token} "
                        "value kazoo-election")

            handovers = mixed_election(name, order, reader, cli_sees)
        finally:
            watch.stop()
            first.client.close()
            second.client.close()
    tokens = [c.token for c in order]
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    observed = [i.token for i in seen if i is not None]
    assert observed == sorted(observed) and set(tokens) <= set(observed), (tokens, observed)
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 4
    save_handovers("kazoo", handovers)


def test_tenure_and_curator_leader_selector_share_one_queue_in_arrival_order(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """tenure, Curator, tenure, Curator: they lead in that order, one at a time."""
    name = unique("curator")
    url, history_path = native_url(zookeeper_cluster), tmp_path / "history.jsonl"

    def curator(ident: str) -> NativeCandidate:
        candidate = NativeCandidate(curator_command(zookeeper_cluster, f"/{name}", ident),
                                    ident, name, history_path)
        processes.append(candidate)
        candidate.wait_queued(timeout=2 * WAIT)  # a JVM starting on a loaded machine
        return candidate

    with tenure.connect(url, ttl=TTL) as reader:
        first = TenureCandidate(url, name, history_path, "tenure-a")
        second = TenureCandidate(url, name, history_path, "tenure-b")
        try:
            first.campaign_in_background(reader)
            first.wait_elected()
            c1 = curator("curator-1")
            second.campaign_in_background(reader)
            c2 = curator("curator-2")
            order: list[Candidate] = [first, c1, second, c2]
            queue = [c.value for c in reader.election(name).contenders()]
            assert queue == [b"tenure-a", b"curator-1", b"tenure-b", b"curator-2"]
            handovers = mixed_election(name, order, reader)
        finally:
            first.client.close()
            second.client.close()
    tokens = [c.token for c in order]
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 4
    save_handovers("curator", handovers)


def test_sigkill_of_leaders_of_both_kinds_hands_over_one_at_a_time(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """A tenure leader (own process) SIGKILLed -> the Curator waiter leads once tenure's
    session expired; the Curator leader SIGKILLed -> the kazoo waiter; it SIGKILLed ->
    the tenure waiter. One history, no overlap, rising tokens."""
    name = unique("kill")
    url, history_path = native_url(zookeeper_cluster), tmp_path / "history.jsonl"

    def spawn(command: list[str], ident: str) -> NativeCandidate:
        candidate = NativeCandidate(command, ident, name, history_path)
        processes.append(candidate)
        candidate.wait_queued(timeout=2 * WAIT)
        return candidate

    def kazoo_like(mode: str, ident: str) -> list[str]:
        return [sys.executable, str(KAZOO_CANDIDATE), mode, hosts(zookeeper_cluster),
                f"/{name}", ident, str(TTL)]

    with tenure.connect(url, ttl=TTL) as reader:
        t_proc = spawn(kazoo_like("tenure", "tenure-proc"), "tenure-proc")
        t_proc.wait_elected()
        cur = spawn(curator_command(zookeeper_cluster, f"/{name}", "curator"), "curator")
        kaz = spawn(kazoo_like("kazoo-election", "kazoo"), "kazoo")
        mine = TenureCandidate(url, name, history_path, "tenure-in")
        try:
            mine.campaign_in_background(reader)
            killed = t_proc.kill()
            took = cur.wait_elected(timeout=WAIT) - killed
            assert took >= TTL * 0.5, f"Curator led {took:.2f} s after the kill: too early"
            cur.kill()
            kaz.wait_elected()
            kaz.kill()
            mine.wait_elected()
            assert [t_proc.token, cur.token, kaz.token, mine.token] == sorted(
                {t_proc.token, cur.token, kaz.token, mine.token})
            mine.release()
        finally:
            mine.client.close()
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 4


def test_kazoo_election_without_the_lock_pattern_does_not_see_tenure_and_leads_too(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """The hazard docs/interop.md warns of: kazoo's Election as it comes counts only
    ``__lock__`` nodes, so it leads beside a tenure (or Curator) leader."""
    name = unique("plain-kazoo")
    url = native_url(zookeeper_cluster)
    with tenure.connect(url, ttl=TTL, candidate_id="t") as client:
        lead = client.election(name).campaign(value=b"tenure", timeout=WAIT)
        plain = NativeCandidate(
            [sys.executable, str(KAZOO_CANDIDATE), "kazoo-default", hosts(zookeeper_cluster),
             f"/{name}", "plain", str(TTL)], "plain", name, tmp_path / "h.jsonl")
        processes.append(plain)
        plain.wait_elected()
        lead.ensure()  # tenure still leads: two leaders, as documented
        # tenure sees kazoo's node, behind its own: the arbitration is one-sided.
        assert [c.value for c in client.election(name).contenders()] == [b"tenure", b"plain"]
        lead.resign()


def test_rolling_migration_from_the_native_layout_to_tenures_own(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """docs/interop.md's runbook on ZooKeeper: a ``migrate+source`` candidate (source: the
    native layout, target: tenure's layout on the same ensemble) queues behind a kazoo
    leader, which ``tenure migrate status`` lists as a plain source entry (so
    ``dual-target`` is refused while it runs); once it released, dual-source, dual-target
    and target take over one by one. One leader at a time, rising tokens, and in the end
    the native election is empty while tenure's layout holds the leader."""
    name = unique("migrate")
    source, target = native_url(zookeeper_cluster), zookeeper_cluster.url
    history_path = tmp_path / "history.jsonl"
    tokens: list[int] = []

    def candidate(stage: str) -> TenureCandidate:
        member = TenureCandidate(migration_url(stage, source, target), name, history_path,
                                 f"c-{stage}")
        member.campaign_in_background(None)
        return member

    with tenure.connect(source, ttl=TTL) as on_source, \
            tenure.connect(target, ttl=TTL) as on_target:

        def status() -> MigrationStatus:
            return migration_status(on_source.store, on_target.store, name)

        native = NativeCandidate(
            [sys.executable, str(KAZOO_CANDIDATE), "kazoo-election", hosts(zookeeper_cluster),
             f"/{name}", "kazoo", str(TTL)], "kazoo", name, history_path)
        processes.append(native)
        native.wait_elected()
        tokens.append(native.token)
        older = candidate("source")
        wait_until(lambda: "source" in status().candidates.values(), WAIT,
                   "the source candidate's stage")
        seen = status()
        assert seen.candidates[native.owner] == "source (plain URL)", seen.candidates
        assert any(native.owner in problem for problem in seen.problems("dual-target"))
        native.release()
        older.wait_elected()
        members = [older]
        try:
            tokens.append(older.token)
            for stage in ("dual-source", "dual-target", "target"):
                assert status().problems(stage) == [], status().problems(stage)
                newer = candidate(stage)
                members.append(newer)
                wait_until(lambda stage=stage: stage in status().candidates.values(), WAIT,
                           f"the {stage} candidate's stage")
                older.release()
                newer.wait_elected()
                tokens.append(newer.token)
                older.client.close()
                older = newer
            assert on_source.election(name).leader() is None  # the native queue is empty
            in_target = on_target.election(name).leader()
            assert in_target is not None and in_target.candidate_id == "c-target"
            older.release()
        finally:
            for member in members:
                member.client.close()
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert [i.cid for i in report.intervals] == [
        "kazoo", "c-source", "c-dual-source", "c-dual-target", "c-target"]


def test_a_paused_curator_leader_is_succeeded_and_learns_it_only_after_resuming(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """The limit docs/interop.md states: a Curator leader SIGSTOPped beyond its session
    timeout loses its node and a tenure waiter leads; resumed, Curator interrupts its
    ``takeLeadership`` only once its client processed the expiry -- until then it still
    believes it leads, overlapping its successor (its interval, cut at the pause in the
    history, would otherwise overlap)."""
    name = unique("pause")
    url, history_path = native_url(zookeeper_cluster), tmp_path / "history.jsonl"
    with tenure.connect(url, ttl=TTL) as reader:
        paused = NativeCandidate(curator_command(zookeeper_cluster, f"/{name}", "curator"),
                                 "curator", name, history_path)
        processes.append(paused)
        paused.wait_queued(timeout=2 * WAIT)
        paused.wait_elected()
        mine = TenureCandidate(url, name, history_path, "tenure")
        try:
            mine.campaign_in_background(reader)
            stopped = paused.pause()
            took = mine.wait_elected() - stopped
            assert took >= TTL * 0.5, f"tenure led {took:.2f} s after the pause: too early"
            signal_group(paused.process.pid, signal.SIGCONT)
            resumed = time.monotonic()
            lost = paused.wait_lost()
            assert lost > mine.elected_at, "uncut, the paused leader overlaps its successor"
            print(f"paused Curator: succeeded {took:.2f} s after SIGSTOP; told it lost "
                  f"{(lost - resumed) * 1000:.0f} ms after SIGCONT")
            mine.release()
        finally:
            mine.client.close()
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert [i.cid for i in report.intervals] == ["curator", "tenure"]


def test_priorities_travel_in_the_native_layout(zookeeper_cluster: Cluster) -> None:
    """Preferred candidates need an entry per candidate and one id per session: the
    native layout has both (the priority entry's owner is the candidate's session)."""
    url, name = native_url(zookeeper_cluster), unique("priority")
    preferred: list[tenure.Contender] = []
    with tenure.connect(url, ttl=TTL) as first, tenure.connect(url, ttl=TTL) as second:
        lead = first.election(name).campaign(
            value=b"a", priority=1, timeout=WAIT,
            on_preferred=lambda _lead, contender: preferred.append(contender))
        waiter = threading.Thread(target=lambda: second.election(name).campaign(
            value=b"b", priority=5, timeout=WAIT), daemon=True)
        waiter.start()
        wait_until(lambda: len(first.election(name).contenders()) == 2, WAIT, "two queued")
        assert [(c.value, c.priority) for c in first.election(name).contenders()] == [
            (b"a", 1), (b"b", 5)]
        wait_until(lambda: bool(preferred), WAIT, "the leader told of the preferred waiter")
        assert preferred[0].value == b"b" and preferred[0].priority == 5
        lead.resign()
        waiter.join(WAIT)


def test_resign_sigkill_and_sigstop_of_leaders_of_both_kinds_keep_one_leader_at_a_time(
    zookeeper_cluster: Cluster, processes: list[NativeCandidate], tmp_path: Path,
) -> None:
    """One election, one history, every fault on a leader of each kind: tenure processes
    (conformance candidates, TTL 2 s, writing guarded data while they lead), kazoo
    ``Election`` processes (session 2 s) and tenure candidates in this process. In turn:
    a tenure leader SIGSTOPped (kazoo leads once its session expired; resumed, it reports
    the loss and its writes are refused), the kazoo leader resigns, the tenure one
    resigns, a kazoo leader SIGSTOPped (tenure leads; resumed, kazoo is told nothing: its
    ``Election.run`` function goes on), a tenure leader SIGKILLed, a kazoo one SIGKILLed.
    No two leaders at once, rising czxids; the paused kazoo leader's interval is cut at
    the pause (kit docstring), and uncut it overlaps its successor -- the documented limit."""
    name = unique("faults")
    url = native_url(zookeeper_cluster)
    with CandidateGroup(url, name, tmp_path) as group, \
            tenure.connect(url, ttl=TTL) as reader:
        path = group.history_path

        def kazoo(ident: str) -> NativeCandidate:
            candidate = NativeCandidate(
                [sys.executable, str(KAZOO_CANDIDATE), "kazoo-election",
                 hosts(zookeeper_cluster), f"/{name}", ident, str(TTL)], ident, name, path)
            processes.append(candidate)
            candidate.wait_queued()
            return candidate

        t1 = group.spawn(ttl=TTL, name="t1")
        t1_token = t1.wait_for("elected")["token"]
        k1 = kazoo("k1")
        t1.pause()  # SIGSTOP of a tenure leader: its deadline passes before its session
        k1.wait_elected()
        t1.resume()
        t1.wait_for("lost")
        m1 = TenureCandidate(url, name, path, "m1")
        m1.campaign_in_background(reader)
        k1.release()  # a native leader resigns
        m1.wait_elected()
        k2 = kazoo("k2")
        m1.release()  # a tenure leader resigns
        k2.wait_elected()

        t2 = group.spawn(ttl=TTL, name="t2")
        wait_queued(reader, name, 2)
        k2.pause()  # SIGSTOP of a native leader: cut here
        t2_token = t2.wait_for("elected")["token"]
        k2.resume()
        t2.wait_for("valid", after=len(t2.events))  # t2 leads on after kazoo resumed...
        t2.wait_for("valid", after=len(t2.events))
        seen_at = time.monotonic()
        with k2.cond:  # ...and kazoo's function still runs: nothing tells it it lost
            assert k2.process.poll() is None and k2.lines[-1].startswith("leading"), k2.lines

        k3 = kazoo("k3")
        t2.kill()  # SIGKILL of a tenure leader
        k3.wait_elected()
        m2 = TenureCandidate(url, name, path, "m2")
        try:
            m2.campaign_in_background(reader)
            k3.kill()  # SIGKILL of a native leader
            m2.wait_elected()
            m2.release()
        finally:
            m1.client.close()
            m2.client.close()

    tokens = [t1_token, k1.token, m1.token, k2.token, t2_token, k3.token, m2.token]
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    events = history.load(path)
    report = history.check(events)
    assert report.ok, report.summary()
    assert [i.cid.split("-")[0] for i in report.intervals] == [
        "t1", "k1", "m1", "k2", "t2", "k3", "m2"]
    # Without the cut: the resumed kazoo leader still held its lock while t2 led.
    uncut = [dict(e, t=seen_at) if e["cid"] == "k2" and e["kind"] == "lost" else e
             for e in events]
    overlaps = history.check(uncut).violations
    assert len(overlaps) == 1 and "t2" in overlaps[0] and "k2" in overlaps[0], overlaps
