"""The deadline keeper of ``tenure run`` (tenure.deadline_keeper, driven through
tenure.childproc.DeadlineKeeper as tenure run drives it): it stops the command when
the deadline passes without an extension, not before; SIGKILL after the grace period;
it stops the command when its pipe closes or it gets SIGTERM (tenure run gone); it
exits when the command exits; it starts fast and imports almost nothing."""

from __future__ import annotations

import ast
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenure import deadline_keeper
from tenure.childproc import DeadlineKeeper, spawn_guarded

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]

LATE = 1.0
"""How late after its deadline the keeper may stop the command on a busy machine (the
bound tenure promises, tests/conformance/test_frozen_wrapper.py)."""

PATIENCE = 30.0
"""Seconds to wait for something that must happen, however busy the machine."""

TERM_TRAPPED = "trap 'echo term; exit 0' TERM; echo up; while true; do sleep 0.05; done"
TERM_IGNORED = "trap '' TERM; echo up; while true; do sleep 0.05; done"


def exit_time(pid: int, timeout: float) -> float | None:
    """When process ``pid`` exits (pidfd), or None if it still runs after ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.monotonic()
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return time.monotonic() if ready else None
    finally:
        os.close(pidfd)


Keepers = list[tuple[DeadlineKeeper, subprocess.Popen[bytes]]]


@pytest.fixture
def keepers() -> Iterator[Keepers]:
    started: Keepers = []
    yield started
    for keeper, child in started:
        kill_if_running(child)
        keeper.close()
        child.wait()


def kill_if_running(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)


def guarded(keepers: Keepers, deadline: float,
            script: str = TERM_TRAPPED,
            grace: float = 1.0) -> tuple[DeadlineKeeper, subprocess.Popen[bytes]]:
    keeper = DeadlineKeeper.start(deadline, grace)
    child = keeper.spawn(["sh", "-c", script], stdout=subprocess.PIPE)
    keepers.append((keeper, child))
    assert child.stdout is not None and child.stdout.readline() == b"up\n"
    return keeper, child


def test_the_command_is_stopped_when_the_deadline_passes_and_not_before(keepers: Keepers) -> None:
    deadline = time.monotonic() + 1.0
    keeper, child = guarded(keepers, deadline)
    gone = exit_time(child.pid, PATIENCE)
    assert gone is not None and deadline <= gone <= deadline + LATE
    assert child.stdout is not None and child.stdout.read() == b"term\n"  # SIGTERM first
    assert "stopping deadline" in keeper.close()
    assert keeper.process.returncode == 0


def test_extensions_keep_the_command_running_until_they_stop(keepers: Keepers) -> None:
    # Each extension is worth 3 s (30 of the 0.1 s steps): a test process starved for
    # over a second at load 50 had let a 1 s extension lapse, a real stop.
    keeper, child = guarded(keepers, time.monotonic() + 3.0)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:  # a renewal every 0.1 s, each worth 3 s
        assert keeper.extend(time.monotonic() + 3.0)
        assert exit_time(child.pid, 0.1) is None, "stopped despite its extensions"
    last = time.monotonic() + 1.0
    assert keeper.extend(last)
    gone = exit_time(child.pid, PATIENCE)
    assert gone is not None and last <= gone <= last + LATE


def test_a_deadline_once_passed_is_not_extended(keepers: Keepers) -> None:
    """As in the core: an extension arriving after the deadline passed (a renewal that
    succeeded late) does not revive it."""
    deadline = time.monotonic() + 1.0
    keeper, child = guarded(keepers, deadline)
    os.kill(keeper.process.pid, signal.SIGSTOP)  # the keeper is late itself...
    time.sleep(max(0.0, deadline + 0.2 - time.monotonic()))
    keeper.extend(time.monotonic() + PATIENCE)   # ...and an extension is waiting
    os.kill(keeper.process.pid, signal.SIGCONT)
    assert exit_time(child.pid, PATIENCE) is not None
    assert "stopping deadline" in keeper.close()


def test_an_extension_known_in_time_counts_even_when_read_late(keepers: Keepers) -> None:
    """The keeper was not scheduled (stopped here) while tenure run sent an extension it
    learnt of before the deadline: the leadership never lapsed, so the command runs on
    until the new deadline (it was once stopped at start-up on a loaded machine)."""
    deadline = time.monotonic() + 1.0
    keeper, child = guarded(keepers, deadline)
    os.kill(keeper.process.pid, signal.SIGSTOP)
    known_at = time.monotonic()
    assert known_at < deadline
    time.sleep(max(0.0, deadline + 0.2 - time.monotonic()))
    extended = time.monotonic() + 1.5
    assert keeper.extend(extended, known_at)
    os.kill(keeper.process.pid, signal.SIGCONT)
    assert exit_time(child.pid, extended - 0.2 - time.monotonic()) is None, (
        "stopped at the old deadline despite an extension known in time"
    )
    gone = exit_time(child.pid, PATIENCE)
    assert gone is not None and extended <= gone <= extended + LATE
    assert "stopping deadline" in keeper.close()


def test_sigkill_follows_after_the_grace_period(keepers: Keepers) -> None:
    deadline = time.monotonic() + 1.0
    _, child = guarded(keepers, deadline, TERM_IGNORED, grace=0.7)
    gone = exit_time(child.pid, PATIENCE)
    assert gone is not None and deadline + 0.7 <= gone <= deadline + 0.7 + LATE
    assert child.wait() == -signal.SIGKILL


def test_stop_stops_the_command_at_once(keepers: Keepers) -> None:
    keeper, child = guarded(keepers, time.monotonic() + 30)
    asked = time.monotonic()
    assert keeper.stop()
    gone = exit_time(child.pid, PATIENCE)
    assert gone is not None and gone - asked <= LATE
    assert "stopping requested" in keeper.close()
    assert keeper.fired() is None  # requested: not the keeper's own decision


def test_a_closed_pipe_means_tenure_run_is_gone(keepers: Keepers) -> None:
    keeper, child = guarded(keepers, time.monotonic() + 30)
    os.close(keeper._commands)  # type: ignore[arg-type]  # what the kernel does when tenure run dies
    keeper._commands = None
    gone = exit_time(child.pid, PATIENCE)
    assert gone is not None
    assert exit_time(keeper.process.pid, PATIENCE) is not None
    assert "stopping orphaned" in keeper.reports


def test_sigterm_to_the_keeper_its_parent_death_signal_stops_the_command(
    keepers: Keepers,
) -> None:
    keeper, child = guarded(keepers, time.monotonic() + 30)
    keeper.process.send_signal(signal.SIGTERM)
    assert exit_time(child.pid, PATIENCE) is not None
    assert keeper.process.wait(timeout=PATIENCE) == 0
    assert "stopping orphaned" in keeper.reports


def test_the_keeper_exits_when_the_command_exits(keepers: Keepers) -> None:
    keeper = DeadlineKeeper.start(time.monotonic() + 30, 1.0)
    child = keeper.spawn(["sh", "-c", "exit 4"])
    keepers.append((keeper, child))
    assert keeper.process.wait(timeout=PATIENCE) == 0
    assert keeper.reports[-1] == "exited"
    assert child.wait() == 4


def test_a_command_announced_after_the_deadline_is_stopped_at_once(keepers: Keepers) -> None:
    """tenure run froze between starting the keeper and the command."""
    deadline = time.monotonic() + 0.1
    keeper = DeadlineKeeper.start(deadline, 1.0)
    time.sleep(0.3)
    child = keeper.spawn(["sh", "-c", TERM_TRAPPED], stdout=subprocess.PIPE)
    keepers.append((keeper, child))
    assert exit_time(child.pid, PATIENCE) is not None
    assert "stopping deadline" in keeper.close()


def test_a_sigkilled_tenure_run_takes_its_keeper_and_command_along(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    wrapper = spawn_guarded(
        [sys.executable, "-m", "tenure.cli.main", "run", "--backend",
         f"sqlite://{tmp_path}/store.db", "--election", "jobs/killed", "--", "sh", "-c",
         'echo $$ > "$LOG"; while true; do sleep 0.05; done'],
        env={**os.environ, "LOG": str(log)}, stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 30
        while not (log.exists() and log.read_text().strip()):
            assert wrapper.poll() is None and time.monotonic() < end
            time.sleep(0.02)
        child = int(log.read_text())
        keeper = next(pid for pid in _children(wrapper.pid) if pid != child)
        wrapper.kill()
        wrapper.wait()
        assert exit_time(child, PATIENCE) is not None
        assert exit_time(keeper, PATIENCE) is not None
    finally:
        wrapper.kill()
        wrapper.wait()


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_the_keeper_imports_only_a_few_standard_modules() -> None:
    """It must start fast: no tenure module, nothing that pulls in enum or typing."""
    tree = ast.parse(Path(deadline_keeper.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "os", "select", "sys", "time", "_signal", "signal"}


def test_the_keeper_starts_in_under_a_second() -> None:
    times = []
    for _ in range(5):
        keeper = DeadlineKeeper.start(time.monotonic() + 30, 1.0)
        times.append(keeper.started_in)
        keeper.close()
    print(f"\ndeadline keeper start: median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms")
    assert statistics.median(times) < 1.0  # ~25 ms on an idle machine


def test_the_keeper_refuses_bad_arguments() -> None:
    result = subprocess.run([sys.executable, "-I", "-S", deadline_keeper.__file__, "soon"],
                            capture_output=True, timeout=30)
    assert result.returncode == 2
    assert b"usage: deadline_keeper.py DEADLINE GRACE" in result.stderr
    assert b"Traceback" not in result.stderr
