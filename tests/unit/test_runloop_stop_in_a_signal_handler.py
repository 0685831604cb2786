"""RunLoop.stop() is documented as callable from a signal handler (gateway/runloop.py:85,
115: the loop's lock is an RLock for it), but it resigns inline, and the resign takes the
client's lock (Client.in_use) and the leadership's lock (Leadership._end), both plain
Locks the main thread holds for a few bytecodes on every resign/state change: a signal
landing there deadlocks the handler. FAILS on 58234a1..ba71f55. ~2 s (SQLite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]

WORKER = Path(__file__).with_name("runloop_stop_in_signal_handler_worker.py")


@pytest.mark.parametrize("held", ["client", "leadership"])
def test_stop_from_a_signal_handler_returns(held: str) -> None:
    done = subprocess.run([sys.executable, str(WORKER), held], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
