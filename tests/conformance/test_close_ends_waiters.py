"""Closing a client from another thread ends what it is waiting on, on every backend.

``Client.close`` promises to resign everything and end the session; a campaign still
waiting for its turn and an observer blocked for the next change must then end too
(with a TenureError saying why), not wait forever on a store the client let go of --
and a run loop (``Election.run``) must return cleanly. The holder in another client
is not touched.
"""

from __future__ import annotations

import threading
import time

from thread_outcome import Outcome

import tenure
from tenure.conformance.suite.backends import Target
from tenure.errors import TenureError

BOUND = 30.0  # seconds a closed client's waiters may take to end on loaded cores


def test_closing_a_client_ends_its_waiting_campaign_observer_and_run_loop(
    target: Target,
) -> None:
    ttl = target.profile.ttl
    name, watched = target.election("close-waiters"), target.election("close-observed")
    with tenure.connect(target.url, ttl=ttl) as holder:
        lead = holder.election(name).campaign(timeout=BOUND)
        waiter = tenure.connect(target.url, ttl=ttl)
        looper = tenure.connect(target.url, ttl=ttl)
        try:
            first_state = threading.Event()

            def observe() -> None:
                for _ in waiter.election(watched).observe():
                    first_state.set()

            observer = Outcome(observe)
            campaign = Outcome(lambda: waiter.election(name).campaign())
            worked = threading.Event()
            loop = Outcome(lambda: looper.election(name).run(lambda _: worked.set()))
            deadline = time.monotonic() + BOUND
            while len(holder.election(name).contenders()) < 3:
                assert time.monotonic() < deadline, "the waiters never queued"
                time.sleep(0.05)
            assert first_state.wait(BOUND), "the observer never yielded the first state"
        finally:
            waiter.close()
            looper.close()
        assert campaign.ended(BOUND), f"the campaign still waits {BOUND:g} s after close"
        assert isinstance(campaign.error, TenureError), campaign.error
        assert observer.ended(BOUND), f"the observer still waits {BOUND:g} s after close"
        assert observer.returned or isinstance(observer.error, TenureError), observer.error
        assert loop.ended(BOUND), f"the run loop still runs {BOUND:g} s after close"
        assert loop.error is None and loop.returned and not worked.is_set(), loop.error
        lead.ensure()
