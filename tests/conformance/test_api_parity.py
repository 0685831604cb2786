"""The same calls give the same results and the same errors on every backend
(in-process clients; the process-level properties are in test_properties.py)."""

from __future__ import annotations

import threading
import time

import pytest

import tenure
from tenure.conformance.suite.backends import Target

pytestmark = pytest.mark.conformance


def connect(target: Target, **kwargs: object) -> tenure.Client:
    return tenure.connect(target.url, ttl=target.profile.ttl, **kwargs)  # type: ignore[arg-type]


def test_campaign_leader_proclaim_resign(target: Target) -> None:
    name = target.election("basics")
    with connect(target, candidate_id="first") as a, connect(target, candidate_id="second") as b:
        ea, eb = a.election(name), b.election(name)
        assert eb.leader() is None
        lead = ea.campaign(value=b"addr-1", timeout=30)
        assert eb.leader() == tenure.LeaderInfo(name, "first", b"addr-1", lead.token)
        lead.proclaim("addr-2")
        assert eb.leader() == tenure.LeaderInfo(name, "first", b"addr-2", lead.token)
        with pytest.raises(tenure.CampaignTimeout, match=r"did not win within 0\.3 s"):
            eb.campaign(timeout=0.3)
        lead.resign()
        second = eb.campaign(timeout=30)
        assert second.token > lead.token
        assert ea.leader() == tenure.LeaderInfo(name, "second", b"", second.token)
        second.resign()
        assert ea.leader() is None


def test_misuse_gets_the_same_errors_everywhere(target: Target) -> None:
    name = target.election("misuse")
    with connect(target) as client:
        election = client.election(name)
        with pytest.raises(tenure.InvalidNameError, match="invalid character"):
            client.election("bad name")
        with pytest.raises(tenure.InvalidValueError, match="limit is 4096"):
            election.campaign(value=b"x" * 4097)
        lead = election.campaign(timeout=30)
        with pytest.raises(tenure.UsageError, match="already campaigns"):
            election.campaign(timeout=0)
        with pytest.raises(tenure.InvalidNameError):
            lead.guarded_write("bad key", b"v")
        lead.resign()
        lead.resign()
        election.resign()
        with pytest.raises(tenure.NotLeader, match="resigned"):
            lead.ensure()
        with pytest.raises(tenure.NotLeader):
            lead.proclaim("v")
        with pytest.raises(tenure.NotLeader):
            lead.guarded_write("k", "v")
        assert election.leader() is None


def test_ttl_outside_the_backends_range_is_a_config_error(target: Target) -> None:
    with pytest.raises(tenure.ConfigError, match="TTL"):
        tenure.connect(target.url, ttl=0.01)
    with pytest.raises(tenure.ConfigError, match="TTL"):
        tenure.connect(target.url, ttl=10**7)


def test_guarded_writes_commit_only_for_the_leader(target: Target) -> None:
    name = target.election("guarded")
    key = f"{name}/data"
    with connect(target) as a, connect(target) as b:
        lead = a.election(name).campaign(timeout=30)
        lead.guarded_write(key, b"from-a")
        assert b.read(key) == b"from-a"
        waiting = b.election(name)
        lead.resign()
        successor = waiting.campaign(timeout=30)
        # The old leader's entry is gone: the store itself refuses its write.
        with pytest.raises(tenure.NotLeader):
            a.store.guarded_write(lead.ticket, key, b"stale")
        successor.guarded_write(key, b"from-b")
        assert a.read(key) == b"from-b"
        successor.resign()


def test_on_lost_is_not_called_on_resign_and_a_cancelled_campaign_leaves_no_entry(
    target: Target,
) -> None:
    name = target.election("callbacks")
    calls: list[str] = []
    with connect(target) as a, connect(target) as b, connect(target) as c:
        lead = a.election(name).campaign(on_lost=lambda _l, reason: calls.append(reason))
        cancel = threading.Event()
        outcome: list[BaseException] = []

        def campaign() -> None:
            try:
                b.election(name).campaign(cancel=cancel)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=campaign)
        thread.start()
        time.sleep(0.3)  # b is queued (or polling) behind a
        cancel.set()
        thread.join(timeout=10)
        assert not thread.is_alive() and isinstance(outcome[0], tenure.CampaignCancelled)
        lead.resign()
        third = c.election(name).campaign(timeout=10)  # nobody (not b) is ahead of c
        assert third.candidate_id == c.candidate_id
        third.resign()
    assert calls == []


def test_contenders_lists_the_leader_and_every_waiting_candidate(target: Target) -> None:
    name = target.election("contenders")
    with connect(target, candidate_id="c-lead") as a, \
            connect(target, candidate_id="c-wait1") as b, \
            connect(target, candidate_id="c-wait2") as c:
        assert a.election(name).contenders() == []
        lead = a.election(name).campaign(value=b"v-lead", timeout=30)
        cancel = threading.Event()
        waiters = [
            threading.Thread(target=_campaign_until_cancelled, args=(client, name, cancel),
                             daemon=True)
            for client in (b, c)
        ]
        for thread in waiters:
            thread.start()
        expected = {("c-lead", b"v-lead"), ("c-wait1", b"v-c-wait1"), ("c-wait2", b"v-c-wait2")}
        deadline = time.monotonic() + 30
        seen: set[tuple[str, bytes]] = set()
        while time.monotonic() < deadline:  # the waiters enqueue from their threads
            seen = {(x.candidate_id, x.value) for x in c.election(name).contenders()}
            if seen == expected:
                break
            time.sleep(0.05)
        assert seen == expected
        listed = a.election(name).contenders()
        if listed[0].order:  # a store with a queue lists it in arrival order, leader first
            assert listed[0].candidate_id == "c-lead"
            assert [x.order for x in listed] == sorted(x.order for x in listed)
        cancel.set()
        for thread in waiters:
            thread.join(timeout=30)
        lead.resign()
        assert a.election(name).contenders() == []


def _campaign_until_cancelled(client: tenure.Client, name: str, cancel: threading.Event) -> None:
    with pytest.raises(tenure.CampaignCancelled):
        client.election(name).campaign(value=f"v-{client.candidate_id}", cancel=cancel)
