"""What ends a wait: the caller's cancel event, or the client being closed.

The campaign and observe loops wait on one object that answers ``is_set()`` and
``wait(timeout)``, like :class:`threading.Event`. :class:`AnyOf` makes one of several
events, so that :meth:`tenure.Client.close` ends every campaign and observer of that
client without setting an event the caller owns.

Waking instead of polling. A :class:`Flag` is a :class:`threading.Event` that also calls
*wakers* when set: a loop waiting on a store :class:`~tenure.store.Signal` registers
one that interrupts the signal, so a cancel or close ends the wait at once and an idle
waiter does not wake to look (a wake-up costs ~0.1 ms of CPU on a loaded host). The
events tenure creates (``Client.closing``, a run loop's stop) are Flags. A plain
:class:`threading.Event` the caller passes has no callback, so an :class:`AnyOf` that
holds one is not :attr:`~AnyOf.wakeable`: the loops then check it every
``WAIT_SLICE`` (:mod:`tenure.store`), and :meth:`AnyOf.wait` in slices of ``SLICE``
seconds -- a cancel is noticed within a slice, never missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("tenure")

SLICE = 0.05
"""Seconds between checks of the events of an :class:`AnyOf` that is not wakeable."""

Waker = Callable[[], None]
Unregister = Callable[[], None]


class Cancel(Protocol):
    """Anything a loop can wait on to be told to stop (a threading.Event is one)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Flag(threading.Event):
    """A :class:`threading.Event` that calls its wakers (any thread) each time it is
    set. A waker must be quick and must not raise (it is logged and ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self._wakers_lock = threading.Lock()
        self._wakers: dict[object, Waker] = {}

    def set(self) -> None:
        super().set()
        with self._wakers_lock:
            wakers = list(self._wakers.values())
        for waker in wakers:
            _call(waker)

    def add_waker(self, waker: Waker) -> Unregister:
        """Calls ``waker`` when this flag is set -- at once if it already is -- until
        the returned function is called. Never misses a :meth:`set` that races it."""
        key = object()
        with self._wakers_lock:
            self._wakers[key] = waker
        if self.is_set():
            _call(waker)

        def unregister() -> None:
            with self._wakers_lock:
                self._wakers.pop(key, None)

        return unregister


def _call(waker: Waker) -> None:
    try:
        waker()
    except Exception:
        log.exception("a cancel waker failed")


class AnyOf:
    """Set as soon as any of ``events`` is set; never sets them itself."""

    def __init__(self, *events: threading.Event) -> None:
        if not events:
            raise ValueError("AnyOf needs at least one event")
        self.events = events

    @property
    def wakeable(self) -> bool:
        """True when every event is a :class:`Flag`: :meth:`add_waker` then sees every
        set, and nothing needs to be polled."""
        return all(isinstance(event, Flag) for event in self.events)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)

    def add_waker(self, waker: Waker) -> Unregister:
        """Registers ``waker`` with each :class:`Flag` among the events (see
        :meth:`Flag.add_waker`); plain events are not watched (check :attr:`wakeable`)."""
        removers = [event.add_waker(waker) for event in self.events
                    if isinstance(event, Flag)]

        def unregister() -> None:
            for remove in removers:
                remove()

        return unregister

    def wait(self, timeout: float | None = None) -> bool:
        """True once any event is set, False after ``timeout`` seconds."""
        if self.wakeable:
            woken = threading.Event()
            unregister = self.add_waker(woken.set)
            try:
                woken.wait(timeout)
            finally:
                unregister()
            return self.is_set()
        end = None if timeout is None else time.monotonic() + timeout
        first = self.events[0]
        while not self.is_set():
            remaining = SLICE if end is None else min(SLICE, end - time.monotonic())
            if remaining <= 0:
                return False
            first.wait(remaining)
        return True
