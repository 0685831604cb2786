"""Preferred candidates on every backend: a declared priority is visible to every other
candidate (contenders), the leader is told when a higher-priority one waits (and not for
a lower one), arrival order still decides by default, and a run loop with
``prefer_priority`` hands over to it at its safe point -- once, never twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_handoff import Waiter, connect, eventually, ids

import tenure
from tenure.conformance.suite.backends import Target
from tenure.leadership import State
from tenure.runloop import RunLoop
from tenure.store import Contender

pytestmark = pytest.mark.conformance


def test_priorities_are_visible_to_every_candidate(target: Target) -> None:
    name = target.election("priority-visible")
    with connect(target, "reader") as reader:
        waiters = []
        try:
            for cid, priority in (("a", 3), ("b", None), ("c", 7)):
                options = {} if priority is None else {"priority": priority}
                waiters.append(Waiter(target, name, cid, **options))
                eventually(lambda cid=cid: cid in ids(target, name, reader), 30, f"{cid} listed")
            listed = reader.election(name).contenders()
            assert [(c.candidate_id, c.priority) for c in listed] == [("a", 3), ("b", 0), ("c", 7)]
            assert listed[2].as_dict()["priority"] == 7
            with pytest.raises(tenure.ConfigError, match="priority 'high'"):
                reader.election(name).campaign(priority="high")  # type: ignore[arg-type]
        finally:
            for waiter in waiters:
                waiter.close()
        eventually(lambda: reader.election(name).contenders() == [], 30,
                   "entries and priorities withdrawn")
        assert reader.store.contenders(f".tenure-priority/{name}") == []


def test_the_leader_is_told_of_a_higher_priority_waiter_and_order_still_decides(
    target: Target,
) -> None:
    name = target.election("priority-told")
    told: list[Contender] = []
    heard = threading.Event()

    def on_preferred(_lead: tenure.Leadership, contender: Contender) -> None:
        told.append(contender)
        heard.set()

    with connect(target, "leader") as client:
        lead = client.election(name).campaign(timeout=30, priority=1, on_preferred=on_preferred)
        low = Waiter(target, name, "low", priority=0)
        high = None
        try:
            eventually(lambda: "low" in ids(target, name, client), 30, "low listed")
            assert not lead.preferred.is_set() and told == []
            high = Waiter(target, name, "high", priority=5)
            assert heard.wait(30), "the leader was not told of the higher-priority waiter"
            assert [(c.candidate_id, c.priority) for c in told] == [("high", 5)]
            assert lead.preferred.is_set() and lead.state is State.HELD
            fifo = client.store.limits.arrival_order
            lead.resign()  # no preference configured: the store's own order decides
            if fifo:  # first come, first served: the earlier, lower-priority waiter
                assert low.done.wait(target.profile.failover_bound + 10)
                assert low.won and not high.done.is_set()
            else:  # no queue (Kubernetes Leases): exactly one of them, priority ignored
                eventually(lambda: low.done.is_set() or high.done.is_set(),
                           target.profile.failover_bound + 10, "a waiter leads")
                assert [bool(w.won) for w in (low, high)].count(True) == 1
        finally:
            low.close()
            if high is not None:
                high.close()


def test_prefer_priority_hands_over_once_and_never_twice(target: Target) -> None:
    name = target.election("priority-prefer")
    with connect(target, "base") as base_client, connect(target, "top") as top_client:
        def work(lead: tenure.Leadership) -> None:
            while not lead.ended.wait(0.05) and not lead.preferred.is_set():
                pass  # a safe point every 50 ms

        base = RunLoop(base_client.election(name), work, priority=0, prefer_priority=True)
        top = RunLoop(top_client.election(name), work, priority=5, prefer_priority=True)
        runners = [threading.Thread(target=loop.run, daemon=True) for loop in (base, top)]
        runners[0].start()
        eventually(lambda: base.leaderships == 1, 30, "base leads")
        first = Waiter(target, name, "first", priority=0)
        try:
            eventually(lambda: "first" in ids(target, name, base_client), 30, "first listed")
            runners[1].start()
            eventually(lambda: top.leaderships == 1, target.profile.failover_bound + 20,
                       "the preferred candidate leads")
            leader = base_client.election(name).leader()
            assert leader is not None and leader.candidate_id == "top"
            eventually(lambda: base.yielded == 1, 30, "base's handoff returned")
            assert not first.done.is_set()
            # base queues again behind; top (the highest priority) never yields to it.
            eventually(lambda: ids(target, name, base_client).count("base") == 1, 30,
                       "base queued again")
            top_lead = top_client.election(name).leader()
            assert top_lead is not None and top_lead.token == leader.token
            assert top.yielded == 0 and base.yielded == 1 and not first.done.is_set()
        finally:
            base.stop()
            top.stop()
            for runner in runners:
                runner.join(30)
            first.close()


@pytest.mark.sqlite
def test_a_200_character_election_name_has_priorities_and_handoff(tmp_path: Path) -> None:
    name = "long/" + "x" * 195
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url, ttl=2, candidate_id="a") as a, \
            tenure.connect(url, ttl=2, candidate_id="b") as b:
        lead = a.election(name).campaign(timeout=10, priority=1)
        won: list[tenure.Leadership] = []
        waiting = threading.Thread(
            target=lambda: won.append(b.election(name).campaign(timeout=30, priority=2)),
            daemon=True)
        waiting.start()
        end = time.monotonic() + 30
        while len(a.election(name).contenders()) < 2:
            assert time.monotonic() < end
            time.sleep(0.02)
        assert [c.priority for c in a.election(name).contenders()] == [1, 2]
        result = lead.yield_to_preferred(timeout=10)
        assert result is not None and result.ok, result
        waiting.join(30)
        assert won and won[0].token > lead.token
