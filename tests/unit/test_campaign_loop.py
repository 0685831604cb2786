"""The one campaign loop (tenure.campaign) on its own: how it steps, waits, gives up,
is cancelled and retries, whatever the store.

The store here is a tiny in-memory FAKE that replays scripted try_lead outcomes. It
exists ONLY to unit-test the loop itself (how many steps, when, what is withdrawn);
every property of real stores is tested against real stores (tests/conformance,
tests/<backend>). Never use it as a backend.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tenure.campaign import Campaign
from tenure.config import BackendURL
from tenure.errors import CampaignCancelled, CampaignTimeout, NotLeader, StoreUnavailable
from tenure.session import SessionKeeper
from tenure.store import (
    Contender,
    LeaderInfo,
    NoSignal,
    Signal,
    Step,
    Store,
    StoreLimits,
    Ticket,
    Wait,
    Won,
)

pytestmark = pytest.mark.unit


class ScriptedSignal(Signal):
    """A signal the test fires by hand; counts the loop's waits on it."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self.waited = threading.Event()
        self.waits = 0
        self.closed = False

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        self.waited.set()
        return self.fired.wait(max(0.0, timeout))

    def close(self) -> None:
        self.closed = True


class CountingEvent(threading.Event):
    """The campaign's cancel event; counts waits on it (the loop's back-off pauses)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


Decide = Callable[[int], Step]
"""The fake's script: the outcome of the n-th call (1-based), or it raises."""


class FakeStore(Store[Ticket]):
    """In-memory fake for the loop's unit test only (see the module docstring)."""

    limits = StoreLimits(min_ttl=0.1, max_ttl=3600.0)

    def __init__(self, decide: Decide) -> None:
        super().__init__()
        self.decide = decide
        self.calls: list[float] = []
        self.enqueue_fails: Decide | None = None
        self.enqueue_calls: list[float] = []
        self.enqueued: list[Ticket] = []
        self.withdrawn: list[Ticket] = []

    @classmethod
    def from_url(cls, url: BackendURL) -> FakeStore:
        raise NotImplementedError("a unit-test fake, not a backend")

    @property
    def description(self) -> str:
        return "fake://campaign-loop"

    def open_session(self, ttl: float) -> float:
        return ttl

    def renew_session(self, held: frozenset[Ticket]) -> None:
        return None

    def close_session(self) -> None:
        return None

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        self.enqueue_calls.append(time.monotonic())
        if self.enqueue_fails is not None:
            self.enqueue_fails(len(self.enqueue_calls))
        ticket = Ticket(election, candidate_id, f"entry-{len(self.enqueued)}",
                        len(self.enqueued) + 1)
        self.enqueued.append(ticket)
        return ticket

    def try_lead(self, ticket: Ticket) -> Step:
        self.calls.append(time.monotonic())
        return self.decide(len(self.calls))

    def withdraw(self, ticket: Ticket) -> None:
        self.withdrawn.append(ticket)

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        raise NotLeader("fake")

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        raise NotLeader("fake")

    def read(self, key: str) -> bytes | None:
        return None

    def leader(self, election: str) -> LeaderInfo | None:
        return None

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        return None, Wait(NoSignal())

    def contenders(self, election: str) -> list[Contender]:
        return []

    def close(self) -> None:
        return None


@pytest.fixture
def keepers() -> Iterator[list[SessionKeeper]]:
    made: list[SessionKeeper] = []
    yield made
    for keeper in made:
        keeper.close()


def campaign(
    store: FakeStore, keepers: list[SessionKeeper], timeout: float | None,
    cancelled: threading.Event | None = None,
) -> Campaign:
    keeper = SessionKeeper(store, ttl=30.0, drift=0.0, on_loss=lambda _t, _r: None)
    keepers.append(keeper)
    return Campaign(store, keeper, "e", "c", b"", timeout, cancelled or threading.Event())


def test_timeout_zero_makes_exactly_one_step_and_gives_up_without_sleeping(
    keepers: list[SessionKeeper],
) -> None:
    signal = ScriptedSignal()
    store = FakeStore(lambda n: Wait(signal, retry_at=time.monotonic() + 60))
    cancelled = CountingEvent()
    started = time.monotonic()
    with pytest.raises(CampaignTimeout, match="did not win within 0 s"):
        campaign(store, keepers, timeout=0, cancelled=cancelled).run()
    assert len(store.calls) == 1
    assert signal.waits == 0 and cancelled.waits == 0, "timeout=0 waited"
    assert time.monotonic() - started < 0.1
    assert signal.closed
    assert store.withdrawn == store.enqueued and store.enqueued[0].withdrawn


def test_a_wait_whose_signal_fires_is_stepped_again_at_once(
    keepers: list[SessionKeeper],
) -> None:
    signal = ScriptedSignal()
    store = FakeStore(lambda n: Wait(signal, retry_at=time.monotonic() + 60) if n == 1
                      else Won(7))
    result: list[tuple[Ticket, int, int]] = []
    thread = threading.Thread(target=lambda: result.append(
        campaign(store, keepers, timeout=None).run()))
    thread.start()
    assert signal.waited.wait(5)
    time.sleep(0.3)  # longer than a WAIT_SLICE: nothing but the signal re-steps
    assert len(store.calls) == 1
    fired_at = time.monotonic()
    signal.fired.set()
    thread.join(timeout=5)
    assert result and result[0][1] == 7 and result[0][0].won
    assert len(store.calls) == 2 and store.calls[1] - fired_at < 0.1
    assert signal.closed and store.withdrawn == []


def test_retry_at_steps_again_without_a_signal(keepers: list[SessionKeeper]) -> None:
    signal = ScriptedSignal()  # never fired
    retry_in = 0.3
    store = FakeStore(lambda n: Wait(signal, retry_at=time.monotonic() + retry_in) if n == 1
                      else Won(8))
    ticket, token, _generation = campaign(store, keepers, timeout=None).run()
    assert token == 8 and ticket.won
    assert len(store.calls) == 2
    assert retry_in - 0.01 <= store.calls[1] - store.calls[0] < retry_in + 0.2
    assert signal.waits >= 1 and not signal.fired.is_set() and signal.closed


def test_cancel_raises_campaign_cancelled_and_withdraws_the_entry(
    keepers: list[SessionKeeper],
) -> None:
    signals: list[ScriptedSignal] = []

    def wait_forever(n: int) -> Step:
        signals.append(ScriptedSignal())
        return Wait(signals[-1])

    store = FakeStore(wait_forever)
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            campaign(store, keepers, timeout=None, cancelled=cancel).run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    while not signals or not signals[0].waited.is_set():
        time.sleep(0.01)  # the fake's first step is being waited on
    cancel.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], CampaignCancelled)
    assert store.withdrawn == store.enqueued and len(store.enqueued) == 1
    assert store.enqueued[0].withdrawn and not store.enqueued[0].won
    assert all(s.closed for s in signals)


def test_the_final_step_at_the_deadline_wins_if_it_wins(keepers: list[SessionKeeper]) -> None:
    signal = ScriptedSignal()  # never fired, no retry_at: only the deadline ends the wait
    store = FakeStore(lambda n: Wait(signal) if n == 1 else Won(9))
    timeout = 0.3
    started = time.monotonic()
    ticket, token, _generation = campaign(store, keepers, timeout=timeout).run()
    assert token == 9 and ticket.won
    assert len(store.calls) == 2
    assert store.calls[1] - started >= timeout
    assert store.withdrawn == []


def test_the_final_step_at_the_deadline_that_waits_gives_up(
    keepers: list[SessionKeeper],
) -> None:
    signals: list[ScriptedSignal] = []

    def wait(n: int) -> Step:
        signals.append(ScriptedSignal())
        return Wait(signals[-1])

    store = FakeStore(wait)
    with pytest.raises(CampaignTimeout):
        campaign(store, keepers, timeout=0.3).run()
    assert len(store.calls) == 2  # the first step, and the final one at the deadline
    assert all(s.closed for s in signals) and store.withdrawn == store.enqueued


@pytest.mark.parametrize("failing", ["try_lead", "enqueue"])
def test_an_unavailable_store_is_retried_with_back_off_until_the_timeout(
    failing: str, keepers: list[SessionKeeper],
) -> None:
    def down(n: int) -> Step:
        raise StoreUnavailable(f"injected: connection refused (try {n})")

    store = FakeStore(down)
    if failing == "enqueue":
        store.enqueue_fails = down
    timeout = 1.0
    started = time.monotonic()
    with pytest.raises(CampaignTimeout) as info:
        campaign(store, keepers, timeout=timeout).run()
    took = time.monotonic() - started
    assert timeout - 0.05 <= took < timeout + 0.5
    calls = store.calls if failing == "try_lead" else store.enqueue_calls
    tries = len(calls)
    # The message names the LAST store error, so an operator sees what failed.
    assert f"last store error: injected: connection refused (try {tries})" in str(info.value)
    # Retried, with growing pauses (exponential back-off), not a busy loop.
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert 3 <= tries <= 12, gaps
    # (The last pause may be cut short by the deadline: compare the ones before.)
    assert gaps[-2] > gaps[0], gaps
    # A failing step retries the SAME entry (it keeps its place in the queue); a
    # failing enqueue leaves nothing. Either way nothing is left in the store.
    assert len(store.enqueued) == (1 if failing == "try_lead" else 0)
    assert store.withdrawn == store.enqueued


class ReadCountingStore(FakeStore):
    """The fake with a marker key whose separate reads are counted."""

    def __init__(self, decide: Decide, marker: bytes | None) -> None:
        super().__init__(decide)
        self.marker = marker
        self.reads: list[str] = []

    def read(self, key: str) -> bytes | None:
        self.reads.append(key)
        return self.marker


@pytest.mark.parametrize("read_with_win", [True, False], ids=["in-step", "default"])
def test_the_handoff_gate_reads_the_marker_once_in_the_step_where_the_adapter_did(
    keepers: list[SessionKeeper], read_with_win: bool,
) -> None:
    from tenure.handoff import HandoffGate, marker_key

    store = ReadCountingStore(
        lambda n: Won(7, read=None, read_done=True) if read_with_win else Won(7), None)
    gate = HandoffGate()
    run = campaign(store, keepers, timeout=5)
    run.admits = gate.admits
    ticket, token, _ = run.run()
    assert token == 7 and ticket.read_on_win == marker_key("e")
    assert store.reads == ([] if read_with_win else [marker_key("e")])
    assert (gate.reads, gate.separate_reads) == (1, 0 if read_with_win else 1)


def test_a_retried_gate_call_reads_the_marker_afresh(keepers: list[SessionKeeper]) -> None:
    """A store error inside ``admits`` retries it with a Won that carries no read:
    the marker the winning step read may be older than the retry."""
    store = ReadCountingStore(lambda n: Won(7, read=None, read_done=True), None)
    seen: list[Won] = []

    def admits(_store: Store[Ticket], _ticket: Ticket, won: Won) -> bool:
        seen.append(won)
        if len(seen) == 1:
            raise StoreUnavailable("contenders failed")
        return True

    run = campaign(store, keepers, timeout=5)
    run.admits = admits
    run.run()
    assert [w.read_done for w in seen] == [True, False]
