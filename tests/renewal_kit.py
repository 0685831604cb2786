"""Send times of a client's successful session renewals, for tests that count how often
a store renews (the etcd and Consul renewal-cadence tests)."""

from __future__ import annotations

import threading
import time

import tenure


class Renewals:
    """Send times of the successful renewals of one client's session: taken before the
    store's ``renew_session`` runs, so never after the keeper's own send time of that
    renewal. ``enough`` set: :attr:`enough` is set once that many have succeeded."""

    def __init__(self, client: tenure.Client, enough: int = 0) -> None:
        store = client.store
        self.done: list[float] = []
        self.enough = threading.Event()
        renew = store.renew_session

        def counted(held: frozenset[object]) -> None:
            sent = time.monotonic()
            renew(held)  # type: ignore[arg-type]
            self.done.append(sent)
            if enough and len(self.done) >= enough:
                self.enough.set()

        store.renew_session = counted  # type: ignore[method-assign,assignment]

    def gaps(self) -> list[float]:
        """Seconds between consecutive renewals' send times."""
        return [b - a for a, b in zip(self.done, self.done[1:], strict=False)]
