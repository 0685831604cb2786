"""A new listener on a bell does not wake the listeners already waiting on it.

Every SQLite waiter listens on its election's bell file before each read. Listening
used to touch the file, an IN_ATTRIB event that woke every other waiter, which then
listened (and touched) again: with 10 idle followers each burned about a quarter of
a core (measured by ``tenure bench --only idle``). Only a ring may wake a listener.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.adapters.filebell import BellBoard, ring

pytestmark = [pytest.mark.sqlite]

QUIET = 0.5  # seconds a listener must stay asleep while others start listening


def test_listening_again_wakes_nobody_and_a_ring_wakes_everyone(tmp_path: Path) -> None:
    bell = tmp_path / "bell"
    boards = [BellBoard() for _ in range(3)]  # one per process, as SQLite clients have
    try:
        waiting = boards[0].listen(bell)
        for board in boards[1:]:
            board.listen(bell)
            board.listen(bell)
        assert waiting.wait(QUIET) is False, "a new listener woke a waiting one"
        others = [board.listen(bell) for board in boards[1:]]
        ring(bell)
        assert waiting.wait(5.0) is True, "a ring did not wake the waiting listener"
        assert all(listener.wait(5.0) for listener in others)
    finally:
        for board in boards:
            board.close()
