"""A call run in its own thread whose return or exception a test inspects afterwards."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Outcome:
    """Runs ``body`` in a daemon thread at once and keeps what it raised."""

    def __init__(self, body: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self.returned = False
        self._body = body
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._body()
            self.returned = True
        except BaseException as exc:  # the test inspects it
            self.error = exc

    def ended(self, bound: float) -> bool:
        """True once the thread ended, waiting at most ``bound`` seconds."""
        self.thread.join(bound)
        return not self.thread.is_alive()
