"""What tenure.adapters.redis_quorum promises, without a server: a fan-out never raises
(a failing instance is a StoreUnavailable in its place), a call passes only on a
majority of answers, refused credentials on a majority are a ConfigError naming the fix,
and a bell signal fires only for what rang after it was armed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

import tenure
from tenure.adapters.redis_quorum import (
    PARTIAL_GRACE,
    PASSWORD_ENV,
    Bell,
    BellSignal,
    CredentialsRefused,
    Feed,
    Instance,
    Quorum,
    Settings,
)
from tenure.errors import StoreUnavailable

pytestmark = [pytest.mark.redis, pytest.mark.unit]

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def three() -> Iterator[Quorum[None]]:
    settings = Settings((("h", 1), ("h", 2), ("h", 3)), "redis://h:1,h:2,h:3", 1.0,
                        {"db": 0, "password": SECRET})
    q = Quorum(settings, prepare=lambda client: None,
               feeds={"changes": Feed("t:changed:*", pattern=True)})
    yield q
    q.close()


def test_a_failing_instance_is_an_answer_in_its_place_not_an_exception(
    three: Quorum[None],
) -> None:
    def call(inst: Instance[None]) -> str:
        if inst.address == "h:2":
            raise redis.ConnectionError("refused")
        if inst.address == "h:3":
            raise redis.AuthenticationError("WRONGPASS")
        return inst.address

    first, second, third = three.fanout(call)
    assert first == "h:1"
    assert isinstance(second, StoreUnavailable) and "h:2" in str(second)
    assert not isinstance(second, CredentialsRefused)
    assert isinstance(third, CredentialsRefused) and "h:3" in str(third)


def test_a_call_passes_only_on_a_majority_of_answers(three: Quorum[None]) -> None:
    down = StoreUnavailable("h:3: down")
    assert three.answers(["a", "b", down], "reading") == [(0, "a"), (1, "b")]
    with pytest.raises(StoreUnavailable, match=r"reading: only 1 of 3 .* 2 needed"):
        three.answers(["a", down, StoreUnavailable("h:2: down")], "reading")


def test_credentials_refused_on_a_majority_are_a_config_error_naming_the_fix(
    three: Quorum[None],
) -> None:
    refused = [CredentialsRefused("h:1: WRONGPASS"), CredentialsRefused("h:2: WRONGPASS")]
    with pytest.raises(tenure.ConfigError, match=f"credentials.*password_file.*{PASSWORD_ENV}"
                       ) as err:
        three.answers([*refused, "ok"], "reading")
    assert SECRET not in str(err.value)
    # One refusal among outages is not a credential problem (yet): unavailable.
    with pytest.raises(StoreUnavailable):
        three.answers([refused[0], StoreUnavailable("h:2: down"), "ok"], "reading")


def test_a_bell_signal_fires_only_for_its_topic_rung_after_arming() -> None:
    bell = Bell()
    bell.ring("wake", "a")
    armed = BellSignal(bell, "wake", "a")
    assert not armed.wait(0)  # rung before it was armed
    bell.ring("wake", "b")
    assert not armed.wait(0)  # another topic
    bell.ring("changes", "a")
    assert not armed.wait(0)  # the same topic of another feed
    bell.ring("wake", "a")
    assert armed.wait(0)
    everything = BellSignal(bell, "wake", "c")
    bell.ring("changes", Bell.ALL)  # another feed was (re)subscribed
    assert not everything.wait(0)
    bell.ring("wake", Bell.ALL)  # a (re)subscription of its feed: every waiter re-reads
    assert everything.wait(0)


def test_a_signal_needing_a_majority_waits_for_it_or_the_grace_after_the_first() -> None:
    bell = Bell()
    two = BellSignal(bell, "wake", "a", needed=2)
    bell.ring("wake", "a", source=0)
    bell.ring("wake", "a", source=0)  # the same instance again does not count twice
    started = time.monotonic()
    assert not two.wait(0)  # one of two, grace not over
    bell.ring("wake", "a", source=2)
    assert two.wait(0)  # a majority rang (at once, whatever the grace)
    lonely = BellSignal(bell, "wake", "a", needed=2)
    bell.ring("wake", "a", 7, source=1)  # the others had no one to wake
    assert lonely.wait(10)  # fires once the grace after the first message is over
    assert time.monotonic() - started >= PARTIAL_GRACE
    assert bell.notes["wake", "a"] == 7
    assert not BellSignal(bell, "wake", "a", needed=2).wait(2 * PARTIAL_GRACE)  # no new ring


def test_a_feed_takes_its_topic_from_the_pattern_match_or_from_the_message() -> None:
    assert Feed("t:changed:*", pattern=True).parse(b"t:changed:e/1", b"acquired") == ("e/1", None)
    assert Feed("t:wake:c1").parse(b"t:wake:c1", b"e/1") == ("e/1", None)
    assert Feed("t:wake:c1").parse(b"t:wake:c1", b"e/1 17") == ("e/1", 17)


def test_no_subscription_is_made_before_a_signal_of_its_feed_is_asked_for(
    three: Quorum[None],
) -> None:
    assert three._listeners == {}  # a client that never waits or observes subscribes nothing
