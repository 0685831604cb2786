"""``tenure run``: run a command only while this candidate leads.

Campaigns; once leader, starts COMMAND with TENURE_ELECTION, TENURE_CANDIDATE_ID and
TENURE_FENCING_TOKEN in its environment. If leadership is lost -- including when the
local validity deadline passes while the store does not answer -- the command's process
group gets SIGTERM at once and SIGKILL after --grace seconds. When the command exits,
tenure run resigns and exits with its exit status. SIGTERM/SIGINT stop the command the
same way, resign, and exit 128+signal. If tenure run itself is killed, the kernel kills
the command (parent-death signal), so a SIGKILLed leader never leaves an orphan running.
Grandchildren that leave the process group are not covered: make COMMAND exec its final
program. A store that cannot be reached at the start is an error (exit 1); later outages
are retried while the validity deadline allows.

Exit status: the command's; 3 if --timeout passed without winning; 75 if leadership was
lost while the command ran; 2 for bad arguments; 1 if the store cannot be reached; 130
(143) after Ctrl-C (SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
from types import FrameType

from tenure.childproc import signal_group, spawn_guarded
from tenure.cli.common import (
    EXIT_NO_LEADER,
    add_backend_arguments,
    connect,
    fail,
    interrupted,
    non_negative_seconds,
    probe,
)
from tenure.errors import CampaignCancelled, CampaignTimeout

EXIT_LOST = 75


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sections = (__doc__ or "").split("\n\n")
    parser = subparsers.add_parser(
        "run", help="run a command only while leader",
        description=sections[1].replace("\n", " ") if len(sections) > 2 else None,
        epilog=sections[2].replace("\n", " ") if len(sections) > 2 else None,
    )
    add_backend_arguments(parser, ttl=True)
    parser.add_argument("--value", default="", help="this candidate's value (e.g. its address)")
    parser.add_argument(
        "--grace", type=non_negative_seconds, default=5.0, metavar="SECONDS",
        help="time between SIGTERM and SIGKILL when stopping the command (default 5s)",
    )
    parser.add_argument(
        "--timeout", type=non_negative_seconds, metavar="SECONDS",
        help="give up (exit 3) if not leader after this long, e.g. 30s (default: wait "
        "forever)",
    )
    # dest "argv", not "command": tenure.cli.main keeps the subcommand's name in
    # args.subcommand, and this must not overwrite it.
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]",
                        help="the command to run while leader")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return fail(
            "run", "no command given; write it after '--', e.g. tenure run ... -- ./job.sh", 2
        )
    events: queue.Queue[tuple[str, object]] = queue.Queue()
    cancel = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        cancel.set()
        events.put(("signal", signum))

    # Until the store has answered once, Ctrl-C raises KeyboardInterrupt, which
    # tenure.cli.main turns into one line and exit 130; from then on it cancels the
    # campaign or stops the command.
    with connect(args) as client:
        election = client.election(args.election)
        probe(election)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            lead = election.campaign(
                args.value, timeout=args.timeout, cancel=cancel,
                on_lost=lambda _lead, reason: events.put(("lost", reason)),
            )
        except CampaignTimeout as exc:
            return fail("run", str(exc), EXIT_NO_LEADER)
        except CampaignCancelled:
            signum = events.get()[1]
            assert isinstance(signum, int)
            return interrupted("run", signum)
        with lead:
            env = dict(os.environ)
            env.update(
                TENURE_ELECTION=lead.election,
                TENURE_CANDIDATE_ID=lead.candidate_id,
                TENURE_FENCING_TOKEN=str(lead.token),
            )
            try:
                child = spawn_guarded(command, env=env)
            except OSError as exc:
                return fail("run", f"cannot start {command[0]!r}: {exc}", 127)
            threading.Thread(
                target=lambda: events.put(("exit", child.wait())), daemon=True
            ).start()
            return _supervise(child, events, args.grace)


def _supervise(
    child: subprocess.Popen[bytes], events: queue.Queue[tuple[str, object]], grace: float
) -> int:
    """Waits for the child to exit, leadership to be lost, or a signal."""
    kind, detail = events.get()
    if kind == "exit":
        assert isinstance(detail, int)
        return detail if detail >= 0 else 128 - detail
    if kind == "lost":
        print(f"tenure run: leadership lost ({detail}); stopping the command", file=sys.stderr)
    _stop(child, grace)
    if kind == "lost":
        return EXIT_LOST
    assert isinstance(detail, int)
    return interrupted("run", detail, "; stopped the command")


def _stop(child: subprocess.Popen[bytes], grace: float) -> None:
    signal_group(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(child.pid, signal.SIGKILL)
        child.wait()
