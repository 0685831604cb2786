"""Leadership and session events, for metrics, structured logs and tests.

    from tenure import events
    events.subscribe(lambda event: print(event.kind, event.fields))

The core publishes an :class:`Event` for every leadership change and session renewal;
listeners run synchronously in the publishing thread (keep them fast, never block,
never raise: an exception is logged and ignored). Kinds and their fields:

* ``campaign_won``: election, candidate_id, token, waited (seconds in campaign)
* ``leadership_lost``: election, candidate_id, token, reason, late (seconds between the
  validity deadline or the store's report and the callback; 0 when detected early)
* ``leadership_released``: election, candidate_id, token, reason
* ``renewal``: backend, ok (bool), latency (seconds), error (str, "" when ok)
* ``session_expired``: backend, detail
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

log = logging.getLogger("tenure.events")


@dataclass(frozen=True)
class Event:
    """One event: its kind, when (monotonic), and its fields."""

    kind: str
    fields: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


Listener = Callable[[Event], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Adds ``listener``; returns a function that removes it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(kind: str, **fields: Any) -> None:
    """Sends an event to every listener (a no-op without listeners)."""
    if not _listeners:
        return
    event = Event(kind, fields)
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("tenure event listener failed on %s", kind)


class Subscriber:
    """Base of objects that follow events: :meth:`start` subscribes :meth:`handle`,
    :meth:`close` unsubscribes; both are idempotent."""

    _unsubscribe: Callable[[], None] | None = None

    def handle(self, event: Event) -> None:
        """Called for every event (keep it fast; never raise)."""
        raise NotImplementedError

    def start(self) -> Self:
        """Subscribes to tenure events (idempotent); returns self."""
        if self._unsubscribe is None:
            self._unsubscribe = subscribe(self.handle)
        return self

    def close(self) -> None:
        """Unsubscribes."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
