"""Client.close() from several threads at once closes once (the others wait for it):
a store is never closed twice in parallel (the SQLite store once crashed on that)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import tenure

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def test_concurrent_closes_close_once_and_all_return(tmp_path: Path) -> None:
    for _ in range(20):
        client = tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=1)
        lead = client.election("e").campaign(timeout=10)
        closers = [threading.Thread(target=client.close) for _ in range(4)]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(timeout=30)
        assert not any(closer.is_alive() for closer in closers)
        assert client.closed and lead.state is tenure.leadership.State.RESIGNED
