"""``tenure run --forever`` end to end on the SQLite backend: it stays up, campaigns
again after a loss and after the command exits (with back-off), starts the command
again with the new fencing token, and still stops cleanly on SIGTERM/Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tenure import connect
from tenure.childproc import spawn_guarded

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]

WAIT = 30.0
SAFE_TTL = "3"
"""For tests that must not see a leadership lost to a starved renewal (2 loaded cores)."""

JOB = """
echo "start $TENURE_FENCING_TOKEN $$" >> "$LOG"
trap 'echo "term $TENURE_FENCING_TOKEN" >> "$LOG"; exit 0' TERM
while true; do sleep 0.05; done
"""


def tenure(*args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **({"LOG": str(log)} if log is not None else {})}
    return spawn_guarded([sys.executable, "-m", "tenure.cli.main", *args], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_lines(path: Path, count: int, proc: subprocess.Popen[bytes]) -> list[str]:
    """Polls ``path`` (written by another process) until it has ``count`` lines."""
    end = time.monotonic() + WAIT
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        assert proc.poll() is None, (proc.returncode, proc.stderr.read())  # type: ignore[union-attr]
        assert time.monotonic() < end, f"{path}: {lines!r}, wanted {count} lines"
        time.sleep(0.02)


def wait_until_lines(path: Path, done: Callable[[list[str]], bool],
                     proc: subprocess.Popen[bytes] | None) -> list[str]:
    """Polls ``path`` until its complete lines satisfy ``done`` (never called with no
    lines); fails early if ``proc`` (None: no process to watch) exits meanwhile."""
    end = time.monotonic() + WAIT
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text[:text.rfind("\n") + 1].splitlines()
        if lines and done(lines):
            return lines
        assert proc is None or proc.poll() is None, (
            proc.returncode, proc.stderr.read())  # type: ignore[union-attr]
        assert time.monotonic() < end, f"{path}: {lines!r}"
        time.sleep(0.02)


def wait_contenders(backend: str, election: str, count: int) -> None:
    """Polls the store until ``election`` has ``count`` live candidates."""
    end = time.monotonic() + WAIT
    with connect(backend) as client:
        while len(client.election(election).contenders()) < count:
            assert time.monotonic() < end, f"fewer than {count} candidates in {election}"
            time.sleep(0.05)


def starts(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("start ")]


@pytest.fixture
def backend(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/store.db"


def test_after_a_loss_it_restarts_the_command_with_a_larger_token(
    backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    runner = tenure("run", "--forever", "--backend", backend, "--election", "jobs/forever",
                    "--ttl", SAFE_TTL, "--grace", "1", "--", "sh", "-c", JOB, log=log)
    try:
        [first] = starts(wait_lines(log, 1, runner))
        # The store loses the entry (an operator, an expiry): the next renewal sees it.
        with sqlite3.connect(backend.removeprefix("sqlite://")) as db:
            db.execute("DELETE FROM candidates")
        lines = wait_until_lines(log, lambda ls: starts(ls)[-1] > first, runner)
        assert_stopped_before_restarted(lines)
        last = starts(lines)[-1]
        assert runner.poll() is None, "--forever exited after a loss"
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=WAIT) == 128 + signal.SIGTERM
        lines = wait_until_lines(log, lambda ls: ls[-1].startswith("term "), None)
        assert lines[-1] == f"term {last}"
        assert_stopped_before_restarted(lines)
        stderr = runner.stderr.read().decode()  # type: ignore[union-attr]
        assert "leadership lost" in stderr and "campaigning again in 0.10 s" in stderr
        assert "stopped by SIGTERM; stopped the command" in stderr
    finally:
        runner.kill()
        runner.wait()
    leader = tenure("leader", "--backend", backend, "--election", "jobs/forever")
    assert leader.wait(timeout=WAIT) == 3  # resigned on the way out


def assert_stopped_before_restarted(lines: list[str]) -> None:
    """Lines alternate ``start T`` / ``term T`` (the same T), tokens growing: each
    command was stopped before the next one started."""
    kinds = [line.split()[0] for line in lines]
    assert kinds == ["start", "term"] * (len(lines) // 2) + ["start"] * (len(lines) % 2), lines
    tokens = [int(line.split()[1]) for line in lines]
    assert tokens[1::2] == tokens[0::2][:len(tokens[1::2])], lines
    assert starts(lines) == sorted(set(starts(lines))), lines


def test_when_the_command_exits_it_resigns_and_campaigns_again_with_growing_backoff(
    backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    runner = tenure("run", "--forever", "--backend", backend, "--election", "jobs/exits",
                    "--", "sh", "-c", 'echo "start $TENURE_FENCING_TOKEN" >> "$LOG"; exit 3',
                    log=log)
    try:
        tokens = starts(wait_lines(log, 4, runner))
        assert tokens == sorted(set(tokens)), "each run needs a new, larger token"
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=WAIT) == 130
        stderr = runner.stderr.read().decode()  # type: ignore[union-attr]
        waits = re.findall(r"exited with status 3; resigned; campaigning again in ([\d.]+) s",
                           stderr)
        assert waits[:3] == ["0.10", "0.20", "0.40"], stderr
    finally:
        runner.kill()
        runner.wait()


def test_a_rival_takes_over_when_the_command_exits(backend: str, tmp_path: Path) -> None:
    """Resigning after the command exits lets a waiting candidate lead (rather than
    this one keeping the election while its command crash-loops)."""
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    go = tmp_path / "go"
    once = (f'echo "start $TENURE_FENCING_TOKEN" >> "$LOG"; [ -e {go} ] && exec sleep 30; '
            f"while [ ! -e {go} ]; do sleep 0.02; done")
    first = tenure("run", "--forever", "--backend", backend, "--election", "jobs/rival",
                   "--", "sh", "-c", once, log=first_log)
    second = None
    try:
        wait_lines(first_log, 1, first)
        second = tenure("run", "--forever", "--backend", backend, "--election", "jobs/rival",
                        "--", "sh", "-c", JOB, log=second_log)
        wait_contenders(backend, "jobs/rival", 2)
        go.touch()  # the first command exits now, with the second candidate queued
        [line] = wait_lines(second_log, 1, second)
        assert starts([line])[0] > starts(first_log.read_text().splitlines())[0]
        assert first.poll() is None, "--forever exited when its command did"
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_sigterm_while_campaigning_exits_at_once(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    holder = tenure("run", "--backend", backend, "--election", "jobs/held", "--", "sh", "-c",
                    JOB, log=log)
    try:
        wait_lines(log, 1, holder)
        waiting = tenure("run", "--forever", "--backend", backend, "--election", "jobs/held",
                         "--", "true")
        wait_contenders(backend, "jobs/held", 2)  # it campaigns
        asked = time.monotonic()
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(timeout=WAIT) == 128 + signal.SIGTERM
        assert time.monotonic() - asked < 5
        assert b"stopped by SIGTERM" in waiting.stderr.read()  # type: ignore[union-attr]
    finally:
        holder.kill()
        holder.wait()


def test_a_command_that_cannot_start_ends_forever_with_127(backend: str) -> None:
    runner = tenure("run", "--forever", "--backend", backend, "--election", "jobs/missing",
                    "--", "/nonexistent/job")
    assert runner.wait(timeout=WAIT) == 127
    stderr = runner.stderr.read().decode()  # type: ignore[union-attr]
    assert "tenure run: error: cannot start '/nonexistent/job'" in stderr
    assert "Traceback" not in stderr


def test_timeout_and_forever_are_refused_together(backend: str) -> None:
    runner = tenure("run", "--forever", "--timeout", "5", "--backend", backend,
                    "--election", "jobs/both", "--", "true")
    assert runner.wait(timeout=WAIT) == 2
    assert b"--timeout cannot be combined with --forever" in runner.stderr.read()  # type: ignore[union-attr]
