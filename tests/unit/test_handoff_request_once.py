"""A handoff request is answered once: a later leadership of the same election (the old
leader winning again after a failed handoff with ``keep``, or the successor) still sees
the request pending -- the requester holds it until it has read the answer -- and must
not answer it again, or its answer can overwrite the first before the requester reads
it (CI: ``tenure handoff`` reported "not a live contender" for a handoff that had been
made and had failed). SQLite, about 1 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tenure
from tenure.conformance.lab.cluster import wait_until
from tenure.handoff import Marker, marker_key
from tenure.handoff_requests import HandoffListener, request_election

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def test_a_request_already_answered_is_not_served_by_the_next_leadership(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url, ttl=2, candidate_id="leader") as client, \
            tenure.connect(url, ttl=2, candidate_id="requester") as requester:
        election = client.election("e")
        first = election.campaign(timeout=10)
        value = json.dumps({"id": "r1", "to": "absent", "timeout": 5,
                            "on_failure": "keep"}).encode()
        pending = requester.election(request_election("e")).campaign(value, timeout=10)
        try:
            listener = HandoffListener(first)
            wait_until(lambda: listener.results, 10, "the first leadership answered")
            listener.stop()
            answer = Marker.decode(client.store.read(marker_key("e")))
            assert answer is not None and answer.request == "r1" and answer.refused
            first.resign()
            second = election.campaign(timeout=10)  # a later leadership, same process
            assert second.token > first.token
            again = HandoffListener(second)
            wait_until(lambda: again._seen > 0, 10, "the pending request observed")
            again.stop()  # joins its thread: a serve under way has ended
            assert again.results == []
            assert Marker.decode(client.store.read(marker_key("e"))) == answer
            second.resign()
        finally:
            pending.resign()
