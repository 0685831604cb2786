"""``layout=native`` on Consul: tenure candidates and the REAL ``consul lock`` command
(Consul's ``api.Lock``) hold ONE key, ``PREFIX/.lock`` with the lock flag, each with its
own session; and the leader-election guide's single key (``native_key=`` empty).

Both sides record their leaderships into one history in the conformance format: a tenure
one from ``elected`` to its resign and last validity deadline; a ``consul lock`` one from
the moment its child's first line is read (the child runs only while the lock is held)
to the moment the test tells the child to exit (recorded before). A native interval lies
inside the real one, so a real overlap -- the child running while tenure leads -- shows
as one, and the checker finds none.
"""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import interop_kit
import pytest
from interop_kit import NativeProcess, run_tenure_leader

import tenure
from tenure.adapters.consul import LOCK_FLAG_VALUE, parse_options
from tenure.childproc import signal_group, spawn_guarded
from tenure.config import load_settings, parse_backend_url
from tenure.conformance.lab.cluster import Cluster, find_binary, wait_until
from tenure.conformance.suite import history
from tenure.conformance.suite.harness import CandidateGroup

pytestmark = [pytest.mark.consul, pytest.mark.interop]

TTL = 2.0  # the lab's session_ttl_min is 500 ms; tenure sends TTL/2
WAIT = 30.0
ROUNDS = 3
REPO = Path(__file__).resolve().parents[2]


def api(cluster: Cluster) -> str:
    return f"http://{cluster.nodes[0].client_address}"


def kv(cluster: Cluster, key: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{api(cluster)}/v1/kv/{key}?consistent",
                                    timeout=WAIT) as answer:
            entry: dict[str, Any] = json.loads(answer.read())[0]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    entry["Value"] = base64.b64decode(entry.get("Value") or "")
    return entry


def put(cluster: Cluster, path: str, body: bytes = b"") -> Any:
    request = urllib.request.Request(f"{api(cluster)}{path}", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        return json.loads(answer.read() or b"null")


def sessions(cluster: Cluster) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{api(cluster)}/v1/session/list", timeout=WAIT) as answer:
        found: list[dict[str, Any]] = json.loads(answer.read())
    return found


def unique(stem: str) -> str:
    return f"interop/{stem}-{time.monotonic_ns()}"


class ConsulLock(NativeProcess):
    """``consul lock -name NAME PREFIX CHILD``: its child prints ``leading``, then waits
    for a line on a FIFO, prints ``released`` and exits (consul lock then releases)."""

    def __init__(self, cluster: Cluster, prefix: str, name: str, history_path: Path,
                 tmp: Path, *extra: str) -> None:
        self.cluster, self.prefix = cluster, prefix
        self.fifo = tmp / f"{name}.fifo"
        os.mkfifo(self.fifo)
        self.session = ""
        child = f"echo leading; read line < {self.fifo}; echo released"
        super().__init__(
            [find_binary("consul", "TENURE_CONSUL_BIN"), "lock", f"-http-addr={api(cluster)}",
             f"-name={name}", *extra, prefix, child], name, prefix, history_path,
            merge_stderr=True)

    def on_line(self, line: str, t: float) -> None:
        entry = kv(self.cluster, f"{self.prefix}/.lock") if line == "leading" else None
        if entry is not None and entry.get("Session") and not self.token:
            self.session = entry["Session"]
            self.mark_elected(int(entry["ModifyIndex"]), t)
        elif line == "leading":  # a semaphore holder: its .lock has no session
            self.token = -1

    def wait_session(self) -> None:
        """Waits until consul lock created its session (it then waits on the key)."""
        wait_until(lambda: any(s.get("Name") == self.name for s in sessions(self.cluster)),
                   WAIT, f"consul lock {self.name} to create its session")

    def wait_elected(self, timeout: float = WAIT) -> float:
        with self.cond:
            self.cond.wait_for(lambda: self.token > 0 or self.eof, timeout)
            ok = self.token > 0
        assert ok, f"consul lock {self.name} did not run its child: {self.lines}"
        return self.elected_at

    @property
    def running_child(self) -> bool:
        return self.leading

    def send_release(self) -> None:
        with open(self.fifo, "w") as fifo:
            fifo.write("go\n")

    def release(self) -> float:
        sent = super().release()
        assert self.process.wait(timeout=WAIT) == 0, self.lines
        return sent


class TenureCandidate(interop_kit.TenureCandidate):
    """A tenure candidate in this process, TTL 2 s."""

    def __init__(self, url: str, election: str, history_path: Path, name: str) -> None:
        super().__init__(url, election, history_path, name, ttl=TTL)


@pytest.fixture
def locks() -> Iterator[list[ConsulLock]]:
    started: list[ConsulLock] = []
    yield started
    for lock in started:
        lock.stop()


# -- the options -------------------------------------------------------------------------


def test_layout_and_native_key_options_are_checked(tmp_path: Path) -> None:
    def options(url: str) -> Any:
        return parse_options(parse_backend_url(url)[0])

    assert options("consul://127.0.0.1:8500").native is False
    native = options("consul://127.0.0.1:8500?layout=native")
    assert native.native is True and native.native_key == ".lock"
    assert options("consul://127.0.0.1:8500?layout=native&native_key=").native_key == ""
    with pytest.raises(tenure.ConfigError, match=r"layout='lock' must be one of tenure, native"):
        options("consul://127.0.0.1:8500?layout=lock")
    with pytest.raises(tenure.ConfigError, match=r"native_key= applies to layout=native only"):
        options("consul://127.0.0.1:8500?native_key=.lock")
    with pytest.raises(tenure.ConfigError, match=r"native_key='/x' must be a key path"):
        options("consul://127.0.0.1:8500?layout=native&native_key=/x")
    toml = tmp_path / "tenure.toml"
    toml.write_text('backend = "consul://127.0.0.1:8500"\n[options]\nlayout = "native"\n')
    assert parse_options(load_settings(config_file=str(toml)).url).native is True


# -- consul lock -------------------------------------------------------------------------


def test_tenure_and_consul_lock_exclude_each_other_and_hand_over_both_ways(
    consul_cluster: Cluster, locks: list[ConsulLock], tmp_path: Path,
) -> None:
    """Rounds of: tenure holds PREFIX/.lock (consul lock's key and flag); a consul lock
    waits (its child does not run) until tenure resigns, then runs its child; tenure
    waits while the child runs (``tenure leader`` shows the native holder) and leads when
    the child exits. One history; handover times both ways."""
    name = unique("lock")
    url = f"{consul_cluster.url}?layout=native"
    history_path = tmp_path / "history.jsonl"
    mine = TenureCandidate(url, name, history_path, "tenure-a")
    handovers: dict[str, list[float]] = {"tenure->native": [], "native->tenure": []}
    tokens: list[int] = []
    seen: list[tenure.LeaderInfo | None] = []
    reader = tenure.connect(url, ttl=TTL)
    watch = reader.election(name).on_change(seen.append)

    def observed(token: int, candidate_id: str) -> None:
        wait_until(lambda: any(i is not None and i.token == token
                               and i.candidate_id == candidate_id for i in seen),
                   WAIT, f"tenure's observer to see holder {candidate_id} (token {token})")

    try:
        mine.campaign_in_background()
        mine.wait_elected()
        for round_ in range(ROUNDS):
            assert mine.lead is not None
            entry = kv(consul_cluster, f"{name}/.lock")
            assert entry is not None, "tenure's leader key is missing"
            assert entry["Flags"] == LOCK_FLAG_VALUE and entry["Value"] == b"tenure-a"
            assert entry["Session"] == mine.lead.candidate_id
            tokens.append(mine.lead.token)
            observed(mine.lead.token, mine.lead.candidate_id)
            native = ConsulLock(consul_cluster, name, f"{name.replace('/', '-')}-{round_}",
                                history_path, tmp_path)
            locks.append(native)
            native.wait_session()
            assert not native.running_child, "consul lock ran its child while tenure leads"
            sent = mine.release()
            handovers["tenure->native"].append(native.wait_elected() - sent)
            tokens.append(native.token)
            mine.campaign_in_background()
            observed(native.token, native.session)  # observe sees the native holder
            if round_ == 0:
                text = run_tenure_leader(url, name)
                assert text.returncode == 0, text.stderr
                assert text.stdout.strip() == (  # consul lock writes no value
                    f"leader {native.session} token {native.token}")
            assert not mine.leading, "tenure leads while consul lock's child runs"
            sent = native.release()
            handovers["native->tenure"].append(mine.wait_elected() - sent)
        assert mine.lead is not None
        tokens.append(mine.lead.token)
        mine.release()
    finally:
        watch.stop()
        reader.close()
        mine.client.close()
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    shown = [i.token for i in seen if i is not None]
    assert shown == sorted(shown), f"observed tokens went back: {shown}"
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 2 * ROUNDS + 1
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "consul-native-handover.json").write_text(json.dumps(
        {k: {"samples_s": v, "median_s": statistics.median(v)} for k, v in handovers.items()},
        indent=2) + "\n")
    for direction, values in handovers.items():  # printed for the note (no timing asserted)
        print(f"\nhandover {direction.replace('native', 'consul-lock')} median "
              f"{statistics.median(values) * 1000:.1f} ms over {len(values)} "
              f"({', '.join(f'{v * 1000:.1f}' for v in values)} ms)")


def test_a_consul_lock_semaphore_on_the_prefix_is_refused_by_name(
    consul_cluster: Cluster, locks: list[ConsulLock], tmp_path: Path,
) -> None:
    name = unique("semaphore")
    semaphore = ConsulLock(consul_cluster, name, f"{name.replace('/', '-')}-sem",
                           tmp_path / "h.jsonl", tmp_path, "-n=2")
    locks.append(semaphore)
    wait_until(lambda: kv(consul_cluster, f"{name}/.lock") is not None, WAIT,
               "the semaphore's .lock key")
    with (tenure.connect(f"{consul_cluster.url}?layout=native", ttl=TTL) as client,
          pytest.raises(tenure.ConfigError, match=r"is a semaphore \(consul lock -n N")):
        client.election(name).campaign(timeout=WAIT)


def test_the_guides_single_key_is_acquired_with_tenures_session(
    consul_cluster: Cluster,
) -> None:
    """``native_key=`` empty: the election name is the key, as in Consul's leader-election
    guide; a native session's ``?acquire`` fails while tenure holds it, succeeds after."""
    name = unique("guide")
    url = f"{consul_cluster.url}?layout=native&native_key="
    with tenure.connect(url, ttl=TTL) as client:
        lead = client.election(name).campaign(value=b"node-a", timeout=WAIT)
        entry = kv(consul_cluster, name)
        assert entry is not None and entry["Session"] == lead.candidate_id
        assert entry["Value"] == b"node-a" and entry["Flags"] == 0
        native = put(consul_cluster, "/v1/session/create",
                     json.dumps({"Name": "guide", "TTL": "10s"}).encode())["ID"]
        try:
            assert put(consul_cluster, f"/v1/kv/{name}?acquire={native}", b"node-b") is False
            lead.resign()
            assert put(consul_cluster, f"/v1/kv/{name}?acquire={native}", b"node-b") is True
            holder = client.election(name).leader()
            assert holder is not None and holder.candidate_id == native
            assert holder.value == b"node-b"
        finally:
            put(consul_cluster, f"/v1/session/destroy/{native}")


@pytest.mark.slow
def test_sigkill_of_either_holder_fails_over_after_its_own_sessions_ttl_and_lock_delay(
    consul_cluster: Cluster, locks: list[ConsulLock], tmp_path: Path,
) -> None:
    """A SIGKILLed ``tenure run`` leader: consul lock runs its child about one tenure TTL
    later (tenure's session: TTL/2 sent, invalidated within 2 x that, no lock-delay). A
    SIGKILLed consul lock: tenure leads only after its 15 s session is invalidated (up to
    30 s after its last renewal) AND its 15 s default lock-delay has passed."""
    name = unique("kill")
    url = f"{consul_cluster.url}?layout=native"
    history_path = tmp_path / "history.jsonl"
    run = spawn_guarded(
        [sys.executable, "-m", "tenure", "run", "--backend", url, "--election", name,
         "--ttl", str(TTL), "--value", "tenure-run", "--",
         "sh", "-c", "echo leading $TENURE_FENCING_TOKEN; exec sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert run.stdout is not None
        first = run.stdout.readline().decode().split()
        assert first[:1] == ["leading"], first
        run_token = int(first[1])
        history.record(history_path, kind="elected", cid="tenure-run", election=name,
                       token=run_token, t=time.monotonic(), deadline=math.inf)
        native = ConsulLock(consul_cluster, name, f"{name.replace('/', '-')}-k", history_path,
                            tmp_path)
        locks.append(native)
        native.wait_session()
        killed = time.monotonic()
        history.record(history_path, kind="lost", cid="tenure-run", election=name,
                       token=run_token, t=killed, reason="SIGKILL")
        signal_group(run.pid, signal.SIGKILL)
        run.wait()
        tenure_to_native = native.wait_elected() - killed
        assert tenure_to_native <= 2 * TTL + 5, f"consul lock took {tenure_to_native:.1f} s"
    finally:
        if run.poll() is None:
            signal_group(run.pid, signal.SIGKILL)
            run.wait()
    mine = TenureCandidate(url, name, history_path, "tenure-b")
    try:
        mine.campaign_in_background()
        killed = native.kill()
        native_to_tenure = mine.wait_elected(timeout=60) - killed
        # consul lock's session: 15 s TTL (invalidated 15-30 s after its last renewal),
        # then Consul's 15 s default lock-delay before anyone may acquire the key.
        assert native_to_tenure >= 15, f"tenure led {native_to_tenure:.1f} s after the kill"
        assert mine.lead is not None and mine.lead.token > native.token > run_token
        mine.release()
    finally:
        mine.client.close()
    print(f"failover after SIGKILL: tenure -> consul lock {tenure_to_native:.2f} s, "
          f"consul lock -> tenure {native_to_tenure:.2f} s")
    report = history.check(history.load(history_path))
    assert report.ok, report.summary()
    assert len(report.intervals) == 3


@pytest.mark.slow
def test_sigstop_and_resign_of_holders_of_both_kinds_keep_one_holder_at_a_time(
    consul_cluster: Cluster, locks: list[ConsulLock], tmp_path: Path,
) -> None:
    """One key, one history: a tenure process (conformance candidate, TTL 2 s, writing
    guarded data while it leads) SIGSTOPped -> consul lock runs its child once tenure's
    session is invalidated (its deadline passed first; resumed, it reports the loss and
    its writes are refused); consul lock's child exits (a native release) -> a tenure
    candidate leads and resigns -> a second consul lock runs its child and is SIGSTOPped
    with it -> tenure leads only after consul lock's 15 s session is invalidated and its
    15 s lock-delay passed; resumed, consul lock's monitor sees the key lost and stops
    its child. One holder at a time, rising ModifyIndex tokens; the paused native interval
    is cut at the pause, and uncut it overlaps its successor -- the documented limit.
    consul lock's session TTL is fixed at 15 s: this is the one slow test for pauses."""
    name = unique("pause")
    stem = name.replace("/", "-")
    url = f"{consul_cluster.url}?layout=native"
    with CandidateGroup(url, name, tmp_path) as group:
        path = group.history_path

        def consul_lock(label: str) -> ConsulLock:
            lock = ConsulLock(consul_cluster, name, f"{stem}-{label}", path, tmp_path)
            locks.append(lock)
            lock.wait_session()
            return lock

        t1 = group.spawn(ttl=TTL, name="t1")
        elected = t1.wait_for("elected")
        n1 = consul_lock("n1")
        assert not n1.running_child, "consul lock ran its child while tenure leads"
        paused = time.monotonic()
        t1.pause()  # SIGSTOP of a tenure holder: its deadline passes before its session
        tenure_to_native = n1.wait_elected() - paused
        t1.resume()
        t1.wait_for("lost")
        m1 = TenureCandidate(url, name, path, "m1")
        m2 = TenureCandidate(url, name, path, "m2")
        try:
            m1.campaign_in_background()
            n1.release()  # a native holder releases (its child exits)
            m1.wait_elected()
            n2 = consul_lock("n2")
            m1.release()  # a tenure holder resigns
            n2.wait_elected()
            m2.campaign_in_background()
            paused = n2.pause()  # SIGSTOP of consul lock and its child: cut here
            native_to_tenure = m2.wait_elected(timeout=60) - paused
            resumed = n2.resume()
            status = n2.wait_exit()  # its monitor saw the key lost: child stopped, exits
            gave_up = time.monotonic()
            assert "released" not in n2.lines, n2.lines  # the child was stopped, not done
            assert m2.lead is not None
            m2.lead.ensure()  # m2 still holds the key after consul lock gave up
            m2.release()
        finally:
            m1.client.close()
            m2.client.close()

    tokens = [elected["token"], n1.token, m1.token, n2.token, m2.token]
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    # consul lock's session: 15 s TTL (invalidated 15-30 s after its last renewal), then
    # the 15 s lock-delay: tenure cannot lead before.
    assert native_to_tenure >= 15, f"tenure led {native_to_tenure:.1f} s after the pause"
    events = history.load(path)
    report = history.check(events)
    assert report.ok, report.summary()
    assert [i.cid for i in report.intervals] == [
        elected["cid"], n1.name, "m1", n2.name, "m2"]
    # Without the cut: the resumed consul lock believed it held the key until it gave up.
    uncut = [dict(e, t=gave_up) if e["cid"] == n2.name and e["kind"] == "lost" else e
             for e in events]
    overlaps = history.check(uncut).violations
    assert len(overlaps) == 1 and "m2" in overlaps[0] and n2.name in overlaps[0], overlaps
    print(f"\nSIGSTOP: tenure -> consul lock {tenure_to_native:.2f} s, consul lock -> tenure "
          f"{native_to_tenure:.2f} s; resumed consul lock gave up {gave_up - resumed:.3f} s "
          f"after SIGCONT (exit status {status}); printed {n2.lines[-3:]}")
