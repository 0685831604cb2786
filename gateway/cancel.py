"""What ends a wait: the caller's cancel event, or the client being closed.

The campaign and observe loops wait on one object that answers ``is_set()`` and
``wait(timeout)``, like :class:`threading.Event`. :class:`AnyOf` makes one of several
events, so that :meth:`tenure.Client.close` ends every campaign and observer of that
client without setting an event the caller owns. Python's events cannot be chained,
so :meth:`AnyOf.wait` checks each in slices of ``SLICE`` seconds: a close is noticed
within a slice, never missed.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

SLICE = 0.05
"""Seconds between checks of the events of an :class:`AnyOf` while waiting."""


class Cancel(Protocol):
    """Anything a loop can wait on to be told to stop (a threading.Event is one)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class AnyOf:
    """Set as soon as any of ``events`` is set; never sets them itself."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)

    def wait(self, timeout: float | None = None) -> bool:
        """True once any event is set, False after ``timeout`` seconds."""
        end = None if timeout is None else time.monotonic() + timeout
        first = self.events[0]
        while not self.is_set():
            remaining = SLICE if end is None else min(SLICE, end - time.monotonic())
            if remaining <= 0:
                return False
            first.wait(remaining)
        return True
