"""The gateway's handoff endpoint, through plain HTTP against a real ``tenure serve``:
the named waiter (not the first in line) leads next with a larger token while the first
keeps waiting; an absent candidate is refused by name and the handle keeps leading;
bad input is a 400 naming the field. Runs on SQLite and on a real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from httpkit import Gateway, call

import tenure

pytestmark = pytest.mark.http


class Waiting:
    """An HTTP campaign that blocks in a thread until it wins."""

    def __init__(self, gw: Gateway, election: str, candidate_id: str) -> None:
        self.answer: tuple[int, Any] | None = None
        self.thread = threading.Thread(target=self._run, args=(gw, election, candidate_id),
                                       daemon=True)
        self.thread.start()

    def _run(self, gw: Gateway, election: str, candidate_id: str) -> None:
        self.answer = call("POST", f"{gw.url}/v1/elections/{election}/campaign",
                           {"candidate_id": candidate_id, "timeout": 60})


def until_listed(url: str, ttl: float, election: str, candidate_id: str) -> None:
    end = time.monotonic() + 90  # generous: 2 shared cores, often loaded
    with tenure.connect(url, ttl=ttl, candidate_id="reader") as reader:
        while candidate_id not in [c.candidate_id for c in
                                   reader.election(election).contenders()]:
            assert time.monotonic() < end, f"{candidate_id} was not enqueued"
            time.sleep(0.05)  # there is no event for "enqueued"


def test_handoff_over_http_lands_on_the_named_waiter(store: tuple[str, float]) -> None:
    url, ttl = store
    election = f"http-handoff/{uuid.uuid4().hex[:8]}"
    with Gateway.start(["--backend", url, "--ttl", str(ttl)]) as gw:
        status, grant = call("POST", f"{gw.url}/v1/elections/{election}/campaign",
                             {"candidate_id": "leader", "timeout": 30})
        assert status == 200
        first = Waiting(gw, election, "first")
        until_listed(url, ttl, election, "first")
        named = Waiting(gw, election, "named")
        until_listed(url, ttl, election, "named")
        handoff = f"{gw.url}/v1/leaderships/{grant['handle']}/handoff"

        status, refused = call("POST", handoff, {"to": "ghost", "timeout": 5})
        assert status == 200 and refused["ok"] is False and refused["still_leading"]
        assert "'ghost' is not a live contender" in refused["message"]
        assert call("GET", f"{gw.url}/v1/leaderships/{grant['handle']}")[0] == 200

        status, body = call("POST", handoff, {"to": "named", "on_failure": "wavering"})
        assert status == 400 and body["field"] == "on_failure"
        status, body = call("POST", handoff, {"timeout": 5})
        assert status == 400 and body["field"] == "to"

        status, done = call("POST", handoff, {"to": "named", "timeout": ttl * 3 + 10})
        assert status == 200 and done["ok"] is True, done
        assert done["leader"]["candidate_id"] == "named"
        assert done["leader"]["token"] > grant["token"] and done["handle"] is None
        named.thread.join(30)
        assert named.answer is not None and named.answer[0] == 200
        assert named.answer[1]["token"] == done["leader"]["token"]
        assert first.answer is None, "the first waiter was reported won during the handoff"
        status, ended = call("GET", f"{gw.url}/v1/leaderships/{grant['handle']}")
        assert status == 410 and "handed off to 'named'" in ended["message"]
        assert call("DELETE", f"{gw.url}/v1/leaderships/{named.answer[1]['handle']}")[0] == 204
        first.thread.join(30)
        assert first.answer is not None and first.answer[0] == 200
        assert first.answer[1]["token"] > done["leader"]["token"]


def test_a_priority_given_over_http_is_shown_to_other_candidates(
    store: tuple[str, float],
) -> None:
    url, ttl = store
    election = f"http-priority/{uuid.uuid4().hex[:8]}"
    with Gateway.start(["--backend", url, "--ttl", str(ttl)]) as gw:
        status, grant = call("POST", f"{gw.url}/v1/elections/{election}/campaign",
                             {"candidate_id": "ranked", "timeout": 30, "priority": 4})
        assert status == 200
        with tenure.connect(url, ttl=ttl, candidate_id="reader") as reader:
            listed = reader.election(election).contenders()
        assert [(c.candidate_id, c.priority) for c in listed] == [("ranked", 4)]
        status, body = call("POST", f"{gw.url}/v1/elections/{election}-2/campaign",
                            {"timeout": 0, "priority": "high"})
        assert status == 400 and body["field"] == "priority"
        assert call("DELETE", f"{gw.url}/v1/leaderships/{grant['handle']}")[0] == 204
