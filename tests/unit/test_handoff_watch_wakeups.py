"""A handoff's watch of the election (gateway/handoff.py ``_watch``) sleeps on the
store's signal until it fires: it does not wake every WAIT_SLICE to check a cancel
nobody can set. Counted on the real SQLite store (no timing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import tenure
from tenure import handoff

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def test_the_handoff_watch_sleeps_until_its_signal_fires(tmp_path: Path) -> None:
    # ~1.2 s. TTL 30 s: the leader's expiry is far away, so every wait that ends in
    # the 1 s window was a poll (the old plain Event: one per 0.2 s).
    with tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=30, candidate_id="leader") as client:
        lead = client.election("e").campaign()
        store: Any = client.store
        real_observe = store.observe_step
        waits: list[float | None] = []

        def observe(election: str) -> Any:
            leader, step = real_observe(election)
            real_wait = step.signal.wait

            def wait(timeout: float | None = None) -> bool:
                waits.append(timeout)
                return bool(real_wait(timeout))

            step.signal.wait = wait
            return leader, step

        store.observe_step = observe
        started = time.monotonic()
        # The leader still leads with its own token: nobody takes over, the watch
        # waits until its end.
        got = handoff._watch(store, lead, "nobody", "marker", started + 1.0, None, 30.0)
        assert got is None
        assert time.monotonic() - started >= 0.9
        assert len(waits) <= 2, f"the idle handoff watch woke {len(waits)} times in 1 s"
        lead.resign()
