"""The gateway's keepalive reaper (tenure.http.handles.Holders) runs when a keepalive
deadline may be due, not on every campaign and keepalive (each of those woke it: a turn
of the loop, a task and a timer per HTTP call), and still ends every holder whose
keepalives stopped within its TTL. Counted, not timed (~1.5 s, SQLite in-process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tenure.http.handles import Holders

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

TTL = 1.0
KEEPALIVES = 20


def test_keepalives_and_later_campaigns_do_not_wake_the_reaper_and_lapsed_holders_end(
    tmp_path: Path,
) -> None:
    async def scenario() -> dict[str, object]:
        holders = Holders(f"sqlite://{tmp_path}/r.db", default_ttl=TTL, warm=0)
        holders.start()
        try:
            first = await holders.campaign("reap/a", owner=None, mode="handle",
                                           candidate_id="a", value=b"", timeout=10, ttl=None)
            for _ in range(5):
                await asyncio.sleep(0)  # the reaper's round for the first holder
            rounds = holders.reaper_rounds
            for _ in range(KEEPALIVES):
                holders.keepalive(first)
                await asyncio.sleep(0)
            second = await holders.campaign("reap/b", owner=None, mode="handle",
                                            candidate_id="b", value=b"", timeout=10,
                                            ttl=None)
            for _ in range(5):
                await asyncio.sleep(0)
            woken = holders.reaper_rounds - rounds
            # no keepalive from here on: both lapse within TTL of their last one
            await asyncio.wait_for(asyncio.gather(first.ended.wait(), second.ended.wait()),
                                   timeout=TTL * 3 + 5)
            return {"reaper rounds for 20 keepalives and a later campaign": woken,
                    "ended": [(h.end_kind, h.end_reason) for h in (first, second)]}
        finally:
            await holders.close()

    seen = asyncio.run(scenario())
    lapsed = ("lost", f"no keepalive within {TTL:g} s")
    # the old reaper, woken by every keepalive and campaign, ran 8 rounds here
    assert seen == {"reaper rounds for 20 keepalives and a later campaign": 0,
                    "ended": [lapsed, lapsed]}, seen
