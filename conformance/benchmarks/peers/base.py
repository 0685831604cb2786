"""What every contender (tenure or a peer tool) offers the benchmark worker.

A contender is one candidate of one election, living in its own worker process:
``campaign()`` blocks until it leads, ``resign()`` gives leadership up and returns once
the tool says it is released, ``close()`` ends its session. A tool that tells its user
when leadership is lost calls ``on_lost(reason, deadline)`` (``deadline``: the
monotonic time until which it believed itself valid, or None if it has no such notion).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

LostCallback = Callable[[str, "float | None"], None]


class Unsupported(Exception):
    """The tool cannot do what the benchmark asks; the message says why."""


class Contender(abc.ABC):
    """One candidate of one election through one tool."""

    #: True if the tool reports a lost leadership to its user (``on_lost``).
    reports_loss: bool = False

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        self.url = url
        self.election = election
        self.ttl = ttl
        self.member_id = member_id
        self.on_lost = on_lost

    @abc.abstractmethod
    def campaign(self) -> dict[str, Any]:
        """Blocks until this candidate leads; returns extra event fields (token...)."""

    @abc.abstractmethod
    def resign(self) -> None:
        """Gives leadership up; returns when the tool reports it released."""

    @abc.abstractmethod
    def close(self) -> None:
        """Ends the candidate's session and connections."""

    def counters(self) -> dict[str, float]:
        """Client-side counters the tool keeps (renewals, notifications...)."""
        return {}
