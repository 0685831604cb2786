"""Closing a SQLite store while other threads step it never crashes the process.

Closing a sqlite3 connection that another thread is using is undefined behaviour in
the C library: CI's pytest died with a segmentation fault when a campaign withdrew its
entry while ``Client.close`` closed the store. ``close`` now leaves a live thread's
connection to that thread, whose next step closes it and raises TenureError. The
hammering runs in a child process, so a crash fails this test instead of the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sqlite]

HAMMER = r"""
import sys, threading
from pathlib import Path
from tenure.adapters.sqlite import SQLiteStore
from tenure.errors import TenureError

for round_ in range(30):
    store = SQLiteStore(Path(sys.argv[1]) / f"store{round_}.db")
    store.open_session(30.0)
    started = threading.Barrier(5)
    outcomes = []

    def hammer(n):
        started.wait()
        try:
            while True:
                ticket = store.enqueue(f"e{n}", f"c{n}", b"")
                store.withdraw(ticket)
        except TenureError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    store.close()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a thread still steps a closed store"
    assert len(outcomes) == 4, outcomes
print("ok")
"""


def test_closing_while_four_threads_step_the_store_ends_them_with_an_error(
    tmp_path: Path,
) -> None:
    done = subprocess.run([sys.executable, "-c", HAMMER, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (
        f"exit {done.returncode}: {done.stdout[-500:]} {done.stderr[-2000:]}")
