"""What a won campaign builds on its way out, counted (a load-independent guard of the
handover path): one Event per Leadership (its ``ended`` Flag); the ``preferred`` Event
is made only when asked for, and is then the same one for every caller."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import tenure

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def test_a_win_makes_one_event_and_preferred_only_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/w.db", ttl=5) as client:
        election = client.election("win-path")
        election.campaign(timeout=10).resign()  # session open, threads started
        made: list[str] = []
        real = threading.Event.__init__

        def counting(self: threading.Event, *args: Any, **kwargs: Any) -> None:
            made.append(type(self).__name__)
            real(self, *args, **kwargs)

        monkeypatch.setattr(threading.Event, "__init__", counting)
        lead = election.campaign(timeout=10)
        assert made == ["Flag"], made  # the ended flag; nothing else per win
        first = lead.preferred
        assert lead.preferred is first and not first.is_set()
        assert made == ["Flag", "Event"], made
        lead.resign()
