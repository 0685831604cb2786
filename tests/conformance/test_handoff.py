"""Planned handoff to a named successor (``Leadership.handoff``) on every backend: the
named waiter -- not the first in line -- leads next with a larger token and no other
waiter is reported won in between (also when, with no arrival order, the old leader's
own re-campaign takes the election first and steps aside); an absent successor is
refused by name (the leader keeps leading or resigns as asked); a successor SIGKILLed
after the release is passed over (the old leader leads again with ``keep``, a waiter
leads with ``resign``)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest

import tenure
from tenure import events as tenure_events
from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.harness import CandidateProcess
from tenure.handoff import Marker, marker_key
from tenure.leadership import State

pytestmark = pytest.mark.conformance

CANDIDATE = Path(__file__).with_name("handoff_candidate.py")


def ttl_of(target: Target) -> float:
    """Twice the profile's TTL (at least 2 s, within the store's range): these tests
    are about handoff, not expiry, and must not lose a leadership to a loaded host."""
    return min(max(target.profile.ttl * 2, 2.0), target.profile.max_ttl)


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Re-reads the store until ``check`` holds (there is no event for "enqueued")."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)


class Waiter:
    """A candidate campaigning in a thread of this process, recording when it won."""

    def __init__(self, target: Target, name: str, candidate_id: str, **options: object):
        self.client = tenure.connect(target.url, ttl=ttl_of(target),
                                     candidate_id=candidate_id)
        self.candidate_id = candidate_id
        self.won: list[tuple[int, float]] = []
        self.done = threading.Event()
        self.lead: tenure.Leadership | None = None
        self.cancel = threading.Event()

        def campaign() -> None:
            try:
                self.lead = self.client.election(name).campaign(  # type: ignore[arg-type]
                    cancel=self.cancel, **options)
                self.won.append((self.lead.token, time.monotonic()))
            except tenure.TenureError:
                pass
            finally:
                self.done.set()

        self.thread = threading.Thread(target=campaign, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.cancel.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"{self.candidate_id}: campaign not cancelled"
        self.client.close()


def ids(target: Target, name: str, client: tenure.Client) -> list[str]:
    return [c.candidate_id for c in client.election(name).contenders()]


@contextmanager
def queue(target: Target, name: str, leader: tenure.Client,
          waiter_ids: list[str]) -> Iterator[list[Waiter]]:
    """Waiters enqueued one after the other (each listed before the next starts)."""
    with ExitStack() as stack:
        waiters: list[Waiter] = []
        for candidate_id in waiter_ids:
            waiter = Waiter(target, name, candidate_id)
            stack.callback(waiter.close)
            waiters.append(waiter)
            eventually(lambda cid=candidate_id: cid in ids(target, name, leader), 30,
                       f"{candidate_id} enqueued")
        yield waiters


def connect(target: Target, candidate_id: str) -> tenure.Client:
    return tenure.connect(target.url, ttl=ttl_of(target), candidate_id=candidate_id)


def test_handoff_lands_on_the_named_waiter_with_a_larger_token(target: Target) -> None:
    name = target.election("handoff")
    with connect(target, "leader") as client:
        lead = client.election(name).campaign(timeout=30)
        with queue(target, name, client, ["first", "second", "named"]) as waiters:
            first, second, named = waiters
            result = lead.handoff(to="named", timeout=target.profile.failover_bound + 10)
            assert result.ok, result.message
            assert named.done.wait(30), "the named waiter's campaign did not return"
            assert named.won and named.won[0][0] == result.leader.token > lead.token  # type: ignore[union-attr]
            assert lead.state is State.RESIGNED
            assert not first.done.is_set() and not second.done.is_set(), (
                "another waiter was reported won during the handoff")
            assert client.election(name).leader().candidate_id == "named"  # type: ignore[union-attr]
            taken = Marker.decode(client.store.read(marker_key(name)))
            assert taken is not None and taken.done, taken
            assert (taken.taken_by, taken.taken_token) == ("named", named.won[0][0]), taken
            # The marker is consumed: the next ordinary handover is not held up.
            assert named.lead is not None
            named.lead.resign()
            eventually(lambda: first.done.is_set() or second.done.is_set(),
                       target.profile.failover_bound + 10, "a waiter leads after the successor")
            winners = [w for w in (first, second) if w.won]
            assert len(winners) == 1 and winners[0].won[0][0] > named.won[0][0]


def test_handoff_lands_on_the_successor_after_the_old_leader_steps_aside(
    unordered_target: Target,
) -> None:
    """Where the store keeps no arrival order (Kubernetes), the old leader's own
    re-campaign (``keep``) can take the election before the successor and step aside
    for it: the handoff still waits for the successor and lands on it. (It used to take
    the old leader's id with a larger token for "leads again" and wait for that
    re-campaign, which only stepped aside, until the timeout: "did not take over ...;
    the leader is 'named'".) Deterministic: the successor, a separate process, is
    frozen until the handoff's own look at the election has shown the old leader
    leading with a larger token; nobody else waits."""
    target = unordered_target
    ttl = ttl_of(target)
    name = target.election("handoff-own-step-aside")
    command = [sys.executable, str(CANDIDATE), target.url, name, str(ttl), "named"]
    with connect(target, "leader") as client:
        assert not client.store.limits.arrival_order, "the profile says no arrival order"
        lead = client.election(name).campaign(timeout=30)
        named = CandidateProcess(command, "named")
        asides: list[str] = []
        unsubscribe = tenure_events.subscribe(
            lambda e: asides.append(e.fields["candidate_id"])
            if e.kind == "handoff_step_aside" and e.fields.get("election") == name else None)
        try:
            eventually(lambda: "named" in ids(target, name, client), 30, "named enqueued")
            named.pause()  # only the old leader's re-campaign can take the election
            store = client.store
            observe_step = store.observe_step
            seen = threading.Event()

            def observe(election: str) -> tuple[tenure.LeaderInfo | None, object]:
                leader, step = observe_step(election)
                if (leader is not None and leader.candidate_id == "leader"
                        and leader.token > lead.token and not seen.is_set()):
                    seen.set()
                    named.resume()
                return leader, step

            store.observe_step = observe  # type: ignore[assignment,method-assign]
            result = lead.handoff(to="named", timeout=target.profile.failover_bound + 10)
            assert seen.is_set(), "the handoff never saw the old leader's re-campaign lead"
            assert "leader" in asides, asides
            assert result.ok, result.message
            elected = named.wait_for("elected", timeout=30)
            assert result.leader is not None
            assert elected["token"] == result.leader.token > lead.token
            assert result.leadership is None and lead.state is State.RESIGNED
            assert client.election(name).leader().candidate_id == "named"  # type: ignore[union-attr]
        finally:
            unsubscribe()
            named.resume()
            named.kill()


def test_keep_leads_again_when_a_listed_successor_never_steps(unordered_target: Target) -> None:
    """Where the store keeps no arrival order (Kubernetes), a successor that stays a
    live contender (its session renews) but whose campaign never steps is passed over
    with ``keep``: the old leader's re-campaign, which takes the election and steps
    aside until its own clock counted the timeout -- from its first win, after the
    release, so after the handoff's end -- leads again. (22b6f05 cancelled it at the
    end: "this candidate does not lead; the leader is nobody".) The successor is an
    in-process client whose try_lead blocks until the test ends."""
    target = unordered_target
    name = target.election("handoff-wedged")
    with connect(target, "leader") as client, connect(target, "wedged") as wedged:
        assert not client.store.limits.arrival_order, "the profile says no arrival order"
        lead = client.election(name).campaign(timeout=30)
        release = threading.Event()
        try_lead = wedged.store.try_lead

        def never_steps(ticket: object) -> object:
            release.wait()
            return try_lead(ticket)  # type: ignore[arg-type]

        wedged.store.try_lead = never_steps  # type: ignore[assignment,method-assign]
        cancel = threading.Event()
        waiting = threading.Thread(target=_campaign_quietly, args=(wedged, name, cancel),
                                   daemon=True)
        waiting.start()
        try:
            eventually(lambda: "wedged" in ids(target, name, client), 30, "wedged enqueued")
            result = lead.handoff(to="wedged", timeout=3, on_failure="keep")
            assert not result.ok and result.released, result.message
            assert "wedged" in ids(target, name, client), "the successor was not listed"
            kept = result.leadership
            assert kept is not None, result.message
            assert kept.token > lead.token and kept.state is State.HELD
            kept.resign()
        finally:
            cancel.set()
            release.set()
            waiting.join(30)


def _campaign_quietly(client: tenure.Client, name: str, cancel: threading.Event) -> None:
    """A campaign in ``name`` until ``cancel`` (its end, however it ends, is ignored)."""
    with suppress(tenure.TenureError):
        client.election(name).campaign(cancel=cancel).resign()


@pytest.mark.parametrize("on_failure", ["keep", "resign"])
def test_handoff_to_an_absent_candidate_is_refused_by_name(
    target: Target, on_failure: str
) -> None:
    name = target.election("handoff-absent")
    with connect(target, "leader") as client:
        lead = client.election(name).campaign(timeout=30)
        with queue(target, name, client, ["waiter"]) as (waiter,):
            result = lead.handoff(to="ghost", timeout=5, on_failure=on_failure)
            assert not result.ok
            assert "'ghost' is not a live contender" in result.message
            assert "waiter" in result.message
            if on_failure == "keep":
                assert result.leadership is lead and not result.released
                assert lead.state is State.HELD
                assert client.election(name).leader().token == lead.token  # type: ignore[union-attr]
                assert not waiter.done.is_set()
            else:
                assert lead.state is State.RESIGNED and result.released
                assert waiter.done.wait(target.profile.failover_bound + 10)
                assert waiter.won[0][0] > lead.token


@pytest.mark.parametrize("on_failure", ["keep", "resign"])
def test_handoff_to_a_successor_killed_after_the_release(
    target: Target, on_failure: str
) -> None:
    ttl = ttl_of(target)
    name = target.election("handoff-killed")
    command = [sys.executable, str(CANDIDATE), target.url, name, str(ttl), "doomed"]
    with connect(target, "leader") as client:
        lead = client.election(name).campaign(timeout=30)
        with queue(target, name, client, ["first", "second"]) as (first, second):
            doomed = CandidateProcess(command, "doomed")
            try:
                eventually(lambda: "doomed" in ids(target, name, client), 30, "doomed enqueued")
                doomed.pause()  # it cannot take over before it is killed
                timeout = (ttl + target.profile.slack) * 2 + 10
                outcome: list[object] = []
                handing = threading.Thread(
                    target=lambda: outcome.append(
                        lead.handoff(to="doomed", timeout=timeout, on_failure=on_failure)),
                    daemon=True)
                handing.start()
                assert lead.ended.wait(30), "the leader did not release"
                doomed.kill()
                handing.join(timeout + 30)
                result = outcome[0]
                assert not result.ok and result.released  # type: ignore[attr-defined]
                assert "'doomed' did not take over" in result.message  # type: ignore[attr-defined]
                if on_failure == "keep":
                    kept = result.leadership  # type: ignore[attr-defined]
                    assert kept is not None and kept.token > lead.token
                    assert kept.state is State.HELD
                    assert not first.done.is_set() and not second.done.is_set()
                else:
                    assert result.leadership is None  # type: ignore[attr-defined]
                    eventually(lambda: first.done.is_set() or second.done.is_set(), 30,
                               "a waiter leads")
                    now = client.election(name).leader()
                    assert now is not None and now.candidate_id in ("first", "second")
                    assert now.token > lead.token
            finally:
                doomed.resume()
                doomed.kill()


def test_the_normal_path_pays_one_marker_read_per_won_campaign(target: Target) -> None:
    """The cost of handoff off the handoff path: one read per WON campaign (none per
    step, wait or renewal). Prints the handover median with and without it (pytest -s)."""
    name = target.election("handoff-cost")
    rounds = 10
    handovers: dict[bool, list[float]] = {True: [], False: []}
    with connect(target, "a") as a, connect(target, "b") as b:
        for gated in (True, False) * (rounds // 2):
            if not gated:
                b.handoff_gate.admits = lambda store, ticket, token: True  # type: ignore[method-assign]
            else:
                b.handoff_gate = type(b.handoff_gate)()
            lead = a.election(name).campaign(timeout=30)
            reads_before = b.handoff_gate.reads
            got: list[float] = []
            done = threading.Event()

            def campaign(got: list[float] = got, done: threading.Event = done) -> None:
                won = b.election(name).campaign(timeout=30)
                got.append(time.monotonic())
                won.resign()
                done.set()

            thread = threading.Thread(target=campaign, daemon=True)
            thread.start()
            eventually(lambda: "b" in ids(target, name, a), 30, "b enqueued")
            released = time.monotonic()
            lead.resign()
            assert done.wait(30)
            thread.join(30)
            handovers[gated].append(got[0] - released)
            assert b.handoff_gate.reads - reads_before == (1 if gated else 0)
    median = {k: sorted(v)[len(v) // 2] * 1000 for k, v in handovers.items()}
    print(f"\n{target.profile.name}: handover median {median[True]:.2f} ms with the marker "
          f"read, {median[False]:.2f} ms without ({rounds // 2} each)")


def test_twenty_handoffs_to_the_last_in_line_keep_s1_and_s2(target: Target) -> None:
    """The issue's repeat: 20 handoffs, each to the waiter LAST in line among three,
    each landing on it with a larger token; the shared history passes S1 (never two
    leaders) and S2 (tokens rise)."""
    from queue import Queue

    from tenure.conformance.suite import history

    name = target.election("handoff-repeat")
    path = target.workdir / "handoff-history.jsonl"
    stop = threading.Event()
    orders: dict[str, Queue[str]] = {cid: Queue() for cid in ("c1", "c2", "c3", "c4")}
    elected: Queue[tuple[str, int]] = Queue()
    outcomes: Queue[tuple[str, bool, str]] = Queue()

    def candidate(client: tenure.Client) -> None:
        cid = client.candidate_id
        while not stop.is_set():
            try:
                lead = client.election(name).campaign(cancel=stop)
            except tenure.CampaignCancelled:
                return
            history.record(path, kind="elected", cid=cid, election=name, token=lead.token,
                           t=time.monotonic(), deadline=lead.deadline)
            history.record(path, kind="valid", cid=cid, election=name, token=lead.token,
                           t=time.monotonic(), deadline=lead.deadline)
            elected.put((cid, lead.token))
            to = orders[cid].get()
            if not to:
                return
            history.record(path, kind="resign", cid=cid, election=name, token=lead.token,
                           t=time.monotonic())
            result = lead.handoff(to=to, timeout=ttl_of(target) * 3 + 10, on_failure="resign")
            outcomes.put((to, result.ok, result.message))

    latencies: list[float] = []
    clients = [connect(target, cid) for cid in orders]
    threads = [threading.Thread(target=candidate, args=(c,), daemon=True) for c in clients]
    try:
        threads[0].start()
        leader, token = elected.get(timeout=30)
        for thread, client in zip(threads[1:], clients[1:], strict=True):
            thread.start()
            eventually(lambda cid=client.candidate_id: cid in ids(target, name, clients[0]),
                       30, "enqueued")
        for _ in range(20):
            waiting = [c for c in ids(target, name, clients[0]) if c != leader]
            assert len(waiting) == 3, waiting
            asked = time.monotonic()
            orders[leader].put(waiting[-1])
            new_leader, new_token = elected.get(timeout=ttl_of(target) * 3 + 30)
            latencies.append(time.monotonic() - asked)
            to, ok, message = outcomes.get(timeout=30)
            assert ok, message
            assert new_leader == to == waiting[-1] and new_token > token
            leader, token = new_leader, new_token
            # the old leader queues again; wait until all three wait once more
            eventually(lambda: len(ids(target, name, clients[0])) == 4, 30, "re-queued")
    finally:
        stop.set()
        for queue in orders.values():
            queue.put("")
        for thread in threads:
            thread.join(30)
        for client in clients:
            client.close()
    events = history.load(path)
    assert sum(1 for e in events if e["kind"] == "elected") >= 21
    report = history.check(events)
    assert report.ok, report.violations
    print(f"\n{target.profile.name}: handoff latency (asked -> successor won, 2 waiters "
          f"stepping aside) median {sorted(latencies)[10] * 1000:.1f} ms, max "
          f"{max(latencies) * 1000:.1f} ms over 20")
