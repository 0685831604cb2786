"""``layout=native`` on etcd: tenure candidates and REAL ``etcdctl elect`` processes
(etcd's own ``concurrency.Election``) contend in ONE election.

Both sides record their leaderships into one history in the conformance format
(:mod:`tenure.conformance.suite.history`), on this host's monotonic clock:

* a tenure leadership runs from its ``elected`` event to the earliest of its
  resign/loss and the latest validity deadline it recorded (as everywhere);
* an ``etcdctl elect`` leadership starts when its output (``-w json``: the leader key
  with its create revision) is read -- a few milliseconds after its Campaign returned,
  which is the one point the native process exposes -- and has no deadline: it ends
  when the test sends SIGINT (etcdctl then resigns) or SIGKILL. A native leader paused
  with SIGSTOP is cut at the pause: the native recipe gives it no way to know it lost
  (it never re-checks after a pause), so the history checker cannot judge it; the
  fault test shows the overlap it has once resumed, instead of hiding it.

The checker then finds no two leaders at once among these intervals and strictly
increasing tokens (create revisions) across both kinds.

``etcdctl elect`` sessions have etcd's default 60 s TTL (etcdctl offers no flag for it),
so a SIGKILLed or SIGSTOPped native leader blocks the election for ~60 s: the fault
test takes about two minutes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import interop_kit
import pytest
from interop_kit import LineProcess, NativeProcess, run_tenure_leader, wait_queued

import tenure
from tenure.adapters.etcd import EtcdStore, parse_url
from tenure.config import load_settings, parse_backend_url
from tenure.conformance.lab.cluster import Cluster, find_binary, wait_until
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.suite import history
from tenure.conformance.suite.harness import CandidateGroup
from tenure.migration import MigrationStatus, migration_status, migration_url

pytestmark = [pytest.mark.etcd, pytest.mark.interop]

TTL = 3
NATIVE_TTL = 60  # concurrency.NewSession's default, which etcdctl elect uses
WAIT = 30.0
HANDOVER_ROUNDS = 7


def native_url(cluster: Cluster, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"layout": "native", **options}.items())
    return f"{cluster.url}?{query}"


def unique(stem: str) -> str:
    return f"native-{stem}-{time.monotonic_ns()}"


def etcdctl(cluster: Cluster, *args: str) -> list[str]:
    endpoints = ",".join(node.client_address for node in cluster.nodes)
    return [find_binary("etcdctl", "TENURE_ETCDCTL_BIN"), f"--endpoints={endpoints}",
            "-w", "json", *args]


ETCDCTL_ENV = {**os.environ, "ETCDCTL_API": "3"}


def decode_kv(kv: dict[str, Any]) -> dict[str, Any]:
    """An etcdctl JSON key-value: key and value are base64, numbers decimal."""
    return {
        "key": base64.b64decode(kv["key"]).decode(),
        "value": base64.b64decode(kv.get("value", "")),
        "token": int(kv["create_revision"]),
        "lease": int(kv.get("lease", 0)),
    }


def parse_json(line: str) -> dict[str, Any] | None:
    try:
        response: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        return None
    return response


class NativeCandidate(NativeProcess):
    """``etcdctl elect NAME PROPOSAL``: records ``elected`` (no deadline) when it prints
    its leader key, ``resign`` before SIGINT, ``lost`` before SIGKILL, and ``lost`` at a
    SIGSTOP (the cut a paused native leader needs, see the module docstring)."""

    def __init__(self, cluster: Cluster, election: str, proposal: str, history_path: Path,
                 name: str) -> None:
        self.proposal = proposal
        self.leader: dict[str, Any] | None = None
        super().__init__(etcdctl(cluster, "elect", election, proposal), name, election,
                         history_path, env=ETCDCTL_ENV)

    def on_line(self, line: str, t: float) -> None:
        response = parse_json(line)
        if response is not None and self.leader is None:
            self.leader = decode_kv(response["kvs"][0])
            self.mark_elected(self.leader["token"], t)

    @property
    def lease_hex(self) -> str:
        assert self.leader is not None, f"{self.name} has not been elected"
        return f"{self.leader['lease']:x}"

    def send_release(self) -> None:
        self.signal(signal.SIGINT)  # etcdctl then calls Resign

    def resign(self) -> float:
        """SIGINT (etcdctl then calls Resign); returns the time it was sent."""
        sent = self.release()
        assert self.wait_exit() == 0, self.stderr()
        return sent


class NativeObserver(LineProcess):
    """``etcdctl elect -l NAME``: every leader (and proclaimed value) it prints."""

    def __init__(self, cluster: Cluster, election: str) -> None:
        self.seen: list[dict[str, Any]] = []
        super().__init__(etcdctl(cluster, "elect", "-l", election), f"observer {election}",
                         env=ETCDCTL_ENV)

    def on_line(self, line: str, t: float) -> None:
        response = parse_json(line)
        if response is not None:
            self.seen.extend(decode_kv(kv) for kv in response.get("kvs", []))

    def wait_seen(self, token: int, value: bytes, timeout: float = WAIT) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((kv for kv in self.seen if kv["token"] == token
                         and kv["value"] == value), None)

        with self.cond:
            self.cond.wait_for(lambda: find() is not None or self.eof, timeout)
            found = find()
        assert found is not None, (f"etcdctl elect -l did not show token {token} value "
                                   f"{value!r}; it showed {self.seen}; {self.stderr()}")
        return found


class TenureCandidate(interop_kit.TenureCandidate):
    """A tenure candidate in this process (TTL 3 s), waiting up to a native session."""

    def __init__(self, url: str, election: str, history_path: Path, name: str) -> None:
        super().__init__(url, election, history_path, name, ttl=TTL,
                         campaign_timeout=NATIVE_TTL + WAIT)


def contenders(reader: tenure.Client, election: str) -> list[tenure.Contender]:
    return reader.election(election).contenders()


@pytest.fixture
def native_processes() -> Iterator[list[LineProcess]]:
    started: list[LineProcess] = []
    yield started
    for process in started:
        process.stop()


# -- the option and the key layout ------------------------------------------------------


def test_layout_is_tenure_by_default_native_on_request_and_checked() -> None:
    def config(url: str) -> Any:
        return parse_url(parse_backend_url(url)[0])

    assert config("etcd://127.0.0.1:2379").native is False
    assert config("etcd://127.0.0.1:2379?layout=tenure").native is False
    native = config("etcd://127.0.0.1:2379?layout=native&native_prefix=/")
    assert native.native is True and native.native_prefix == "/"
    with pytest.raises(tenure.ConfigError, match=r"layout='raft' must be one of tenure, native"):
        config("etcd://127.0.0.1:2379?layout=raft")
    with pytest.raises(tenure.ConfigError, match=r"native_prefix= applies to layout=native"):
        config("etcd://127.0.0.1:2379?native_prefix=/")
    with pytest.raises(tenure.ConfigError, match=r"native_prefix='/a b' must be printable"):
        config("etcd://127.0.0.1:2379?layout=native&native_prefix=/a%20b")


def test_layout_native_can_come_from_tenure_toml_options(tmp_path: Path) -> None:
    toml = tmp_path / "tenure.toml"
    toml.write_text('backend = "etcd://127.0.0.1:2379"\n[options]\nlayout = "native"\n')
    settings = load_settings(config_file=str(toml))
    assert parse_url(settings.url).native is True


def test_a_native_layout_key_is_the_recipes_and_etcdctl_observes_its_proclaims(
    etcd_cluster: Cluster, native_processes: list[LineProcess], tmp_path: Path,
) -> None:
    name = unique("layout")
    observer = NativeObserver(etcd_cluster, name)
    native_processes.append(observer)
    with tenure.connect(native_url(etcd_cluster), ttl=TTL, candidate_id="t-layout") as client:
        lead = client.election(name).campaign(value=b"first", timeout=WAIT)
        store = client.store
        assert isinstance(store, EtcdStore)
        lease = store._lease  # the session's lease, to compare with the key etcd holds
        raw = subprocess.run(etcdctl(etcd_cluster, "get", "--prefix", f"{name}/"),
                             env=ETCDCTL_ENV, capture_output=True, check=True, timeout=WAIT)
        [kv] = [decode_kv(kv) for kv in json.loads(raw.stdout)["kvs"]]
        # Campaign's key: <pfx>/<lease id %x>, under the lease, holding the proposal only.
        assert kv == {"key": f"{name}/{lease:x}", "value": b"first", "token": lead.token,
                      "lease": lease}
        assert observer.wait_seen(lead.token, b"first")["key"] == kv["key"]
        lead.proclaim(b"second")
        assert observer.wait_seen(lead.token, b"second")["key"] == kv["key"]
        leader = client.election(name).leader()
        assert leader == tenure.LeaderInfo(name, f"{lease:x}", b"second", lead.token)
        # No id is stored: the lease-id hex is the candidate id, on every side.
        assert lead.candidate_id == f"{lease:x}" and client.candidate_id == "t-layout"
        assert [c.candidate_id for c in client.election(name).contenders()] == [f"{lease:x}"]
        lead.resign()
    # The default layout is untouched: tenure's own keys, id and value packed.
    with tenure.connect(etcd_cluster.url, ttl=TTL, candidate_id="t-default") as client:
        lead = client.election(name).campaign(value=b"mine", timeout=WAIT)
        assert client.election(name).leader() == tenure.LeaderInfo(
            name, "t-default", b"mine", lead.token)
        assert lead.ticket.key.startswith(f"/tenure/{name}/#")
        lead.resign()


def test_native_prefix_joins_an_election_whose_prefix_starts_with_a_slash(
    etcd_cluster: Cluster, native_processes: list[LineProcess], tmp_path: Path,
) -> None:
    name = unique("slash")
    native = NativeCandidate(etcd_cluster, f"/{name}", "go-style", tmp_path / "h.jsonl", "n")
    native_processes.append(native)
    native.wait_elected()
    url = native_url(etcd_cluster, native_prefix="/")
    with tenure.connect(url, ttl=TTL, candidate_id="t-slash") as client:
        assert client.election(name).leader() == tenure.LeaderInfo(
            name, native.lease_hex, b"go-style", native.token)
        waiter = TenureCandidate(url, name, tmp_path / "h.jsonl", "t-slash")
        try:
            waiter.campaign_in_background()
            wait_queued(client, name, 2)
            native.resign()
            waiter.wait_elected()
            assert waiter.token > native.token
            assert waiter.lead is not None and waiter.lead.ticket.key.startswith(f"/{name}/")
            waiter.resign()
        finally:
            waiter.client.close()


# -- mixed elections ---------------------------------------------------------------------


def test_tenure_and_etcdctl_elect_hand_over_in_both_directions_and_observe_each_other(
    etcd_cluster: Cluster, native_processes: list[LineProcess], tmp_path: Path,
) -> None:
    """Five rounds of: tenure leads, an etcdctl waiter queues, tenure resigns -> etcdctl
    leads; tenure queues again, etcdctl gets SIGINT (resigns) -> tenure leads. Both
    observers (etcdctl elect -l, tenure's on_change) see every leader, and tenure leader
    reports the native one."""
    name = unique("handover")
    url = native_url(etcd_cluster)
    path = tmp_path / "history.jsonl"
    observer = NativeObserver(etcd_cluster, name)
    native_processes.append(observer)
    seen: list[tenure.LeaderInfo | None] = []
    tokens: list[int] = []
    mine = TenureCandidate(url, name, path, "tenure-a")

    def both_observers_see(token: int, value: bytes) -> dict[str, Any]:
        """Waits until etcdctl elect -l and tenure's observer both show this leader;
        returns etcdctl's view (key, value, token, lease)."""
        shown = observer.wait_seen(token, value)
        wait_until(lambda: bool(seen) and seen[-1] is not None and seen[-1].token == token,
                   WAIT, f"tenure's observer to see token {token}")
        assert seen[-1] == tenure.LeaderInfo(name, f"{shown['lease']:x}", value, token)
        return shown

    with tenure.connect(url, ttl=TTL) as reader:
        watch = reader.election(name).on_change(seen.append)
        try:
            mine.campaign_in_background()
            mine.wait_elected()
            tokens.append(mine.token)
            for round_ in range(5):
                assert mine.lead is not None
                shown = both_observers_see(mine.token, b"tenure-a")
                assert shown["key"] == mine.lead.ticket.key == f"{name}/{shown['lease']:x}"
                native = NativeCandidate(etcd_cluster, name, f"native-{round_}", path,
                                         f"etcdctl-{round_}")
                native_processes.append(native)
                wait_queued(reader, name, 2)
                mine.resign()
                native.wait_elected()
                tokens.append(native.token)
                shown_native = both_observers_see(native.token, f"native-{round_}".encode())
                assert shown_native["key"] == f"{name}/{native.lease_hex}"
                if round_ == 0:  # the CLI reads the native leader
                    text = run_tenure_leader(url, name)
                    assert text.returncode == 0, text.stderr
                    assert text.stdout.strip() == (
                        f"leader {native.lease_hex} token {native.token} value native-0")
                    as_json = run_tenure_leader(url, name, "--json")
                    assert json.loads(as_json.stdout)["leader"] == {
                        "election": name, "candidate_id": native.lease_hex,
                        "value": "native-0", "token": native.token}
                mine.campaign_in_background()
                wait_queued(reader, name, 2)
                queue = [c.candidate_id for c in contenders(reader, name)]
                assert queue == [native.lease_hex, f"{shown['lease']:x}"], queue
                native.resign()
                mine.wait_elected()
                tokens.append(mine.token)
            both_observers_see(mine.token, b"tenure-a")
            mine.resign()
        finally:
            watch.stop()
            mine.client.close()
    observed = [info.token for info in seen if info is not None]
    assert observed == sorted(observed) and set(tokens) <= set(observed), (tokens, observed)
    native_seen = [kv["token"] for kv in observer.seen]
    assert native_seen == sorted(native_seen) and set(tokens) <= set(native_seen)
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    report = history.check(history.load(path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 11


def etcd_watchers(cluster: Cluster) -> int:
    """The member's ``etcd_debugging_mvcc_watcher_total`` gauge: its open watches."""
    url = f"{cluster.nodes[0].http}/metrics"
    with urllib.request.urlopen(url, timeout=WAIT) as answer:
        text = answer.read().decode()
    prefix = "etcd_debugging_mvcc_watcher_total "
    return int(float(next(line for line in text.splitlines()
                          if line.startswith(prefix)).split()[1]))


def wait_watches(cluster: Cluster, test: Callable[[int], bool], what: str) -> None:
    """Waits until the member's watch count passes ``test``: etcdctl prints nothing once
    its waitDeletes watch is open, but etcd counts it."""
    wait_until(lambda: test(etcd_watchers(cluster)), WAIT, f"etcd to count {what}")


def test_handover_medians_between_tenure_and_etcdctl_elect(
    lab: LabFactory, native_processes: list[LineProcess], tmp_path: Path,
) -> None:
    """Resign -> the other side elected, both directions, measured from the resign
    (tenure: before ``resign()``; etcdctl: before SIGINT) to the moment the new leader
    knows (tenure: campaign returned; etcdctl: its leader key printed). Each handover
    starts only once the waiter's watch is open, so a waiter still starting up is not
    measured: tenure's store counts the watches it made, etcd counts etcdctl's (on a
    cluster of its own, where nothing else creates watches)."""
    cluster = lab.start("etcd")
    name = unique("medians")
    url = native_url(cluster)
    path = tmp_path / "history.jsonl"
    to_native: list[float] = []
    to_tenure: list[float] = []
    mine = TenureCandidate(url, name, path, "tenure-a")
    store = mine.client.store
    assert isinstance(store, EtcdStore)
    try:
        mine.campaign_in_background()
        mine.wait_elected()
        for round_ in range(HANDOVER_ROUNDS):
            wait_watches(cluster, lambda n: n == 1, "only the tenure leader's own-key watch")
            native = NativeCandidate(cluster, name, f"native-{round_}", path,
                                     f"etcdctl-{round_}")
            native_processes.append(native)
            wait_watches(cluster, lambda n: n >= 2, "etcdctl's waitDeletes watch too")
            resigned = mine.resign()
            to_native.append(native.wait_elected() - resigned)
            made = store.watches_created
            mine.campaign_in_background()
            wait_until(lambda made=made: store.watches_created > made, WAIT,
                       "tenure's watch on its predecessor")
            interrupted = native.resign()
            to_tenure.append(mine.wait_elected() - interrupted)
        mine.resign()
    finally:
        mine.client.close()
    report = history.check(history.load(path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 2 * HANDOVER_ROUNDS + 1
    to_native_median, to_tenure_median = statistics.median(to_native), statistics.median(to_tenure)
    artifacts = Path("artifacts")
    artifacts.mkdir(exist_ok=True)
    (artifacts / "etcd-native-handover.json").write_text(json.dumps({
        "tenure_to_native_s": to_native_median, "native_to_tenure_s": to_tenure_median,
        "rounds": HANDOVER_ROUNDS, "samples_to_native_s": to_native,
        "samples_to_tenure_s": to_tenure}, indent=2))
    print(f"\netcd layout=native handover medians over {HANDOVER_ROUNDS} rounds: "
          f"tenure->native {to_native_median * 1000:.1f} ms, "
          f"native->tenure {to_tenure_median * 1000:.1f} ms")
    # A resign deletes a key and the waiter's watch fires: far below a second even on a
    # busy machine; a waiter that re-polled or waited for a lease expiry would not be.
    assert to_native_median < 1.0 and to_tenure_median < 1.0, (to_native, to_tenure)


@pytest.mark.slow
def test_sigkill_and_sigstop_of_leaders_of_both_kinds_keep_one_leader_at_a_time(
    etcd_cluster: Cluster, native_processes: list[LineProcess], tmp_path: Path,
) -> None:
    """tenure (processes, TTL 3 s) and etcdctl leaders are SIGKILLed and SIGSTOPped in
    turn; the history of both sides has one leader at a time and increasing tokens.
    The paused native leader, resumed after its successor was elected, believes it
    leads until its client notices the expired lease: that overlap is the documented
    limit (no deadline on the native side), shown here rather than assumed away."""
    name = unique("faults")
    url = native_url(etcd_cluster)
    with CandidateGroup(url, name, tmp_path) as group, \
            tenure.connect(url, ttl=TTL) as reader:
        path = group.history_path

        def native(label: str) -> NativeCandidate:
            candidate = NativeCandidate(etcd_cluster, name, label, path, label)
            native_processes.append(candidate)
            return candidate

        t1 = group.spawn(ttl=TTL, name="t1")
        t1_token = t1.wait_for("elected")["token"]
        n1 = native("n1")
        wait_queued(reader, name, 2)
        t1.kill()  # SIGKILL of a tenure leader: its lease expires within TTL
        n1.wait_elected(timeout=TTL + WAIT)

        t2 = group.spawn(ttl=TTL, name="t2")
        wait_queued(reader, name, 2)
        n1.kill()  # SIGKILL of a native leader: its 60 s lease expires
        t2_token = t2.wait_for("elected", timeout=NATIVE_TTL + WAIT)["token"]

        n2 = native("n2")
        wait_queued(reader, name, 2)
        t2.pause()  # SIGSTOP of a tenure leader: its deadline passes before its lease
        n2.wait_elected(timeout=TTL + WAIT)
        t2.resume()
        t2.wait_for("lost")  # any write it sends on resuming is refused (S3, checked below)

        t3 = group.spawn(ttl=TTL, name="t3")
        wait_queued(reader, name, 2)
        n2.pause()  # SIGSTOP of a native leader: cut here, see the module docstring
        t3_token = t3.wait_for("elected", timeout=NATIVE_TTL + WAIT)["token"]
        resumed = time.monotonic()
        n2.signal(signal.SIGCONT)
        assert n2.wait_exit(timeout=WAIT) != 0
        gave_up = time.monotonic()
        assert "session expired" in n2.stderr(), n2.stderr()
        t3.wait_for("valid", after=len(t3.events))  # t3 still leads after n2 gave up
        t3.kill()

    tokens = [t1_token, n1.token, t2_token, n2.token, t3_token]
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    events = history.load(path)
    report = history.check(events)
    assert report.ok, report.summary()
    assert [i.cid.split("-")[0] for i in report.intervals] == ["t1", "n1", "t2", "n2", "t3"]
    # Without the cut: the resumed native leader believed it led until it gave up.
    uncut = [dict(e, t=gave_up) if e["cid"] == "n2" and e["kind"] == "lost" else e
             for e in events]
    overlaps = history.check(uncut).violations
    assert len(overlaps) == 1 and "t3" in overlaps[0] and "n2" in overlaps[0], overlaps
    print(f"\nresumed native leader believed it led for {gave_up - resumed:.3f} s after "
          "SIGCONT, while tenure's t3 led")


# -- the runbook: from the native layout to tenure's own ------------------------------


def test_rolling_migration_from_the_native_layout_to_tenures_own(
    etcd_cluster: Cluster, native_processes: list[LineProcess], tmp_path: Path,
) -> None:
    """docs/interop.md's runbook: a tenure candidate on ``migrate+source`` (source: the
    native layout, target: tenure's layout on the same etcd) joins behind an etcdctl
    leader, which ``tenure migrate status`` lists as a plain source candidate (so
    ``advance dual-target`` refuses while it runs); once it resigned, the stages
    dual-source, dual-target, target take over one by one, each checked safe first.
    One leader at a time, tokens rise (a fence accepts each), and in the end the native
    election is empty while tenure's layout holds the leader."""
    name = unique("migrate")
    source, target = native_url(etcd_cluster), etcd_cluster.url
    path = tmp_path / "history.jsonl"
    guard = tenure.FencingGuard(str(tmp_path / "fence.db"))
    tokens: list[int] = []

    def candidate(stage: str) -> TenureCandidate:
        member = TenureCandidate(migration_url(stage, source, target), name, path, f"c-{stage}")
        member.campaign_in_background()
        return member

    with tenure.connect(source, ttl=TTL) as on_source, \
            tenure.connect(target, ttl=TTL) as on_target:

        def status() -> MigrationStatus:
            return migration_status(on_source.store, on_target.store, name)

        native = NativeCandidate(etcd_cluster, name, "native-leader", path, "etcdctl")
        native_processes.append(native)
        native.wait_elected()
        tokens.append(native.token)  # what the native program hands its resources: Rev()
        assert guard.accept(name, native.token)
        older = candidate("source")
        wait_until(lambda: "source" in status().candidates.values(), WAIT,
                   "the source candidate's stage")
        seen = status()
        assert seen.candidates[native.lease_hex] == "source (plain URL)", seen.candidates
        assert any(native.lease_hex in problem for problem in seen.problems("dual-target"))
        native.resign()
        older.wait_elected()
        members = [older]
        try:
            tokens.append(older.token)
            assert guard.accept(name, older.token)
            for stage in ("dual-source", "dual-target", "target"):
                assert status().problems(stage) == [], status().problems(stage)
                newer = candidate(stage)
                members.append(newer)
                wait_until(lambda stage=stage: stage in status().candidates.values(), WAIT,
                           f"the {stage} candidate's stage")
                older.resign()
                newer.wait_elected()
                tokens.append(newer.token)
                assert guard.accept(name, newer.token)
                older.client.close()
                older = newer
            assert on_source.election(name).leader() is None  # the native election is empty
            in_target = on_target.election(name).leader()
            assert in_target is not None and in_target.candidate_id == "c-target"
            older.resign()
        finally:
            for member in members:
                member.client.close()
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    report = history.check(history.load(path))
    assert report.ok, report.summary()
    assert [i.cid for i in report.intervals] == [
        "etcdctl", "c-source", "c-dual-source", "c-dual-target", "c-target"]
