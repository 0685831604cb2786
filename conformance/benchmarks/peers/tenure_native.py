"""tenure itself, through its Python API (``tenure.connect`` + ``campaign``)."""

from __future__ import annotations

from typing import Any

import tenure
from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


class TenureContender(Contender):
    """``client.election(name).campaign()``; ``on_lost`` is tenure's loss callback."""

    reports_loss = True

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        self.client = tenure.connect(url, ttl=ttl, candidate_id=member_id)
        self._election = self.client.election(election)
        self._lead: tenure.Leadership | None = None

    def campaign(self) -> dict[str, Any]:
        def lost(lead: tenure.Leadership, reason: str) -> None:
            self.on_lost(reason, lead.deadline)

        self._lead = self._election.campaign(value=self.member_id, on_lost=lost)
        return {"token": self._lead.token, "deadline": self._lead.deadline}

    def resign(self) -> None:
        if self._lead is not None:
            self._lead.resign()
            self._lead = None

    def close(self) -> None:
        self.client.close()

    def counters(self) -> dict[str, float]:
        found: dict[str, float] = {"renewals": self.client.keeper.renewals}
        for name in ("keepalives", "watch_notifications", "notifications",
                     "renewal_requests"):
            value = getattr(self.client.store, name, None)
            if isinstance(value, int | float):
                found[name] = value
        return found
