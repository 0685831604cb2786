"""``tenure run``: run a command only while this candidate leads.

Campaigns; once leader, starts COMMAND with TENURE_ELECTION, TENURE_CANDIDATE_ID and
TENURE_FENCING_TOKEN in its environment. If leadership is lost -- including when the
local validity deadline passes while the store does not answer -- the command's process
group gets SIGTERM at once and SIGKILL after --grace seconds. A separate deadline keeper
process does this at the deadline even while tenure run itself is frozen (stopped,
swapped out, in a debugger). When the command exits, tenure run resigns and exits with
its exit status. With --forever, tenure run instead stays up: after a loss, or when the
command exits (it then resigns), it waits (0.1 s, doubling up to 10 s while leaderships
keep ending within 10 s), campaigns again and starts the command again with the new
fencing token. SIGTERM/SIGINT stop the command the same way, resign, and exit
128+signal. --priority N declares a priority (shown in tenure contenders; a leader that
prefers priority hands off to the highest waiting one). With --prefer-priority this
leader is one: when its command exits by itself while a candidate of higher priority
waits, it hands the leadership to that candidate (the first in line among equals)
instead of resigning -- the command is never stopped for it, its exit is the safe point
-- and exits with the command's status (--forever: campaigns again at once). With
--accept-handoff the leader answers tenure handoff --election E --to ID: when ID is a
live contender, the command is stopped (SIGTERM, SIGKILL after --grace) BEFORE the
leadership is released, then ID takes over; tenure run prints who took over and exits 0
(--forever: campaigns again at once). A request naming an absent candidate is refused by
name and the command keeps running (with the request's --on-failure resign: the command
is stopped and tenure run resigns). If ID does not take over within the request's
timeout: with --on-failure keep (the default) this candidate queues again at once, is
let lead again with a new token and restarts the command; with resign, or when it does
not lead again, tenure run exits 75 (--forever: campaigns again). If tenure run itself
is killed, the kernel kills the command (parent-death signal), so a SIGKILLed leader
never leaves an orphan running. Grandchildren that leave the process group are not
covered: make COMMAND exec its final program. A store that cannot be reached at the
start is an error (exit 1); later outages are retried while the validity deadline
allows.

Exit status: the command's; 3 if --timeout passed without winning; 75 if leadership was
lost while the command ran, or after a handoff that did not land without this
candidate leading again; 0 after a handoff that landed; 2 for bad arguments; 1 if the
store cannot be reached or the deadline keeper cannot start; 127 if the command cannot
be started; 130 (143) after Ctrl-C (SIGTERM). With --forever only 1, 2, 127, 130 and
143: a loss, a handoff or the command's exit is followed by a new campaign.

How it is built. The main thread campaigns, starts the keeper (tenure.deadline_keeper,
a process of its own, ``ready`` before the command starts) and the command (which
announces its pid to the keeper before it executes), then waits on one queue for the
first of: the command exited, the leadership was lost, a signal. Each renewal's new
deadline is sent to the keeper by the renewing thread itself, with the time it was
known -- a renewal is the only thing that moves a held leadership's deadline, so no
thread wakes to look for one in between; stopping the command
is the keeper's job (SIGTERM, SIGKILL after --grace), with tenure run doing it itself
only if the keeper is gone. The command is reaped only after the keeper was told it
exited, so the keeper never signals a reused pid. Signals are handled by a relay
thread, not in the handler, which only puts the signal number on a queue. With
--accept-handoff a tenure.handoff_requests.HandoffListener serves requests from its
own thread; its before_release hook (:class:`_StopRequest`) asks the main thread to
stop the command and returns only once the command was reaped, so the release (and
the successor's start) always comes after the command's exit.

Why --forever does not use tenure.runloop.RunLoop: RunLoop.stop() resigns the
leadership at once, while the command may still run for --grace seconds; tenure run
must stop the command first and resign after, so that no successor's command
overlaps this one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import tenure
from tenure import events
from tenure.childproc import KEEPER_EXIT_SLACK, DeadlineKeeper, KeeperError, signal_group
from tenure.cli.common import (
    EXIT_NO_LEADER,
    EXIT_UNAVAILABLE,
    add_backend_arguments,
    connect,
    fail,
    interrupted,
    non_negative_seconds,
    probe,
)
from tenure.errors import CampaignCancelled, CampaignTimeout, ConfigError, NotLeader, TenureError
from tenure.handoff_requests import HandoffListener
from tenure.leadership import Leadership, State
from tenure.priority import MAX_PRIORITY, check_priority
from tenure.runloop import BACKOFF_FIRST, BACKOFF_MAX
from tenure.store import Contender

EXIT_LOST = 75
EXIT_CANNOT_START = 127



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
    parser.add_argument(
        "--priority", type=priority_int, metavar="N",
        help=f"declare this priority, a whole number from -{MAX_PRIORITY} to "
        f"{MAX_PRIORITY} (higher is preferred; default none, counted as 0); shown in "
        "tenure contenders, and a leader that prefers priority hands off to the highest",
    )
    parser.add_argument(
        "--prefer-priority", action="store_true",
        help="when the command exits by itself while a candidate of higher priority "
        "than this one's waits, hand the leadership to it instead of resigning (it "
        "leads next, ahead of earlier arrivals); the command is never stopped for it. "
        "If it does not take over within 10 s this candidate resigns. Default: first "
        "come, first served",
    )
    parser.add_argument(
        "--accept-handoff", action="store_true",
        help="while leading, answer tenure handoff --to ID requests: stop the command "
        "(SIGTERM, SIGKILL after --grace), then hand the leadership to ID and exit 0 "
        "(--forever: campaign again). An absent ID is refused and the command keeps "
        "running. If ID does not take over: with the request's --on-failure keep this "
        "candidate leads again (new token) and restarts the command; with resign, or "
        "if it does not lead again, exit 75 (--forever: campaign again)",
    )
    parser.add_argument(
        "--forever", action="store_true",
        help="stay up: after a loss, or when the command exits, campaign again (with "
        "back-off) and restart the command with the new fencing token; only SIGTERM, "
        "Ctrl-C or a command that cannot be started end tenure run",
    )
    # dest "argv", not "command": tenure.cli.main keeps the subcommand's name in
    # args.subcommand, and this must not overwrite it.
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]",
                        help="the command to run while leader")
    parser.set_defaults(handler=run)


def priority_int(text: str) -> int:
    """argparse type for ``--priority``: a whole number in [-MAX_PRIORITY, MAX_PRIORITY]."""
    try:
        value = int(text)
    except ValueError:
        value = None
    try:
        checked = check_priority(value)
    except ConfigError:
        checked = None
    if checked is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}, "
            "e.g. --priority 10 (higher is preferred)")
    return checked


def run(args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return fail(
            "run", "no command given; write it after '--', e.g. tenure run ... -- ./job.sh", 2
        )
    if args.forever and args.timeout is not None:
        return fail("run", "--timeout cannot be combined with --forever (which campaigns "
                    "until stopped); drop one of them", 2)
    wrapper = Wrapper(command, args.grace, args.value, priority=args.priority,
                      accept_handoff=args.accept_handoff,
                      prefer_priority=args.prefer_priority)
    # Until the store has answered once, Ctrl-C raises KeyboardInterrupt, which
    # tenure.cli.main turns into one line and exit 130; from then on it cancels the
    # campaign or stops the command.
    with connect(args) as client:
        election = client.election(args.election)
        probe(election)
        wrapper.catch_signals()
        if args.forever:
            return wrapper.forever(election)
        return wrapper.once(election, args.timeout)


@dataclass(frozen=True)
class Ended:
    """How one leadership (or the campaign for it) ended.

    ``kind``: ``exit`` (the command exited by itself; ``status``), ``lost`` (the
    leadership was lost; ``reason``; the command was stopped), ``signal`` (``status`` is
    the signal; ``reason`` says whether a command was stopped), ``timeout`` (not won in
    time; ``reason``), ``failed`` (``status`` is the exit status, already reported),
    ``handoff`` (the command was stopped and the named successor took over; ``reason``),
    ``yielded`` (the command exited by itself, ``status``, and a preferred candidate
    was handed the leadership or was offered it and did not take it; ``reason``),
    ``handoff-failed`` (the command was stopped, the leadership released, and this
    candidate does not lead; ``reason``), ``kept`` (as ``handoff-failed``, but this
    candidate leads again: ``again``, internal to :meth:`Wrapper.lead`)."""

    kind: str
    status: int = 0
    reason: str = ""
    lasted: float = 0.0
    """Seconds the leadership was held (0 if there was none)."""
    again: Leadership | None = None


class Wrapper:
    """One ``tenure run``: the command, the signals caught, the current leadership's
    event queue. Its methods run in the main thread (the spawning thread must outlive
    the command and the keeper: their parent-death signal is bound to it)."""

    def __init__(self, command: list[str], grace: float, value: str, *,
                 priority: int | None = None, accept_handoff: bool = False,
                 prefer_priority: bool = False) -> None:
        self.command = command
        self.grace = grace
        self.value = value
        self.priority = priority
        self.accept_handoff = accept_handoff
        self.prefer_priority = prefer_priority
        self.cancel = threading.Event()
        self.signum = 0
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.inbox: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()

    # -- signals --------------------------------------------------------------------

    def catch_signals(self) -> None:
        """SIGTERM/SIGINT from now on cancel the campaign or stop the command. The
        handler only puts the number on a SimpleQueue (safe in a handler); a relay
        thread does the rest, so no lock is ever taken inside the handler."""
        threading.Thread(target=self._relay_signals, name="tenure-run-signals",
                         daemon=True).start()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.put(signum)

    def _relay_signals(self) -> None:
        while True:
            signum = self._signals.get()
            if not self.signum:
                self.signum = signum
            # cancel first, then the inbox: a leadership that swaps in a new inbox
            # checks cancel after the swap, so the signal is never lost between them.
            self.cancel.set()
            self.inbox.put(("signal", signum))

    # -- the two modes ----------------------------------------------------------------

    def once(self, election: tenure.Election, timeout: float | None) -> int:
        """Leads once; returns the exit status (see the module)."""
        ended = self.lead(election, timeout)
        if ended.kind == "yielded":
            _say(f"the command exited with status {ended.status}; {ended.reason}; exiting")
        if ended.kind in ("exit", "yielded"):
            return ended.status if ended.status >= 0 else 128 - ended.status
        if ended.kind in ("lost", "handoff-failed"):
            return EXIT_LOST
        if ended.kind == "handoff":
            _say(f"{ended.reason}; exiting")
            return 0
        if ended.kind == "timeout":
            return fail("run", ended.reason, EXIT_NO_LEADER)
        if ended.kind == "signal":
            return interrupted("run", ended.status, ended.reason)
        return ended.status

    def forever(self, election: tenure.Election) -> int:
        """Leads until a signal; returns its exit status, or that of a failure to
        start the keeper or the command."""
        backoff = BACKOFF_FIRST
        settle = max(BACKOFF_MAX, election.client.ttl)
        while True:
            ended = self.lead(election, None)
            if ended.kind == "signal":
                return interrupted("run", ended.status, ended.reason)
            if ended.kind == "failed":
                return ended.status
            if ended.kind in ("handoff", "handoff-failed", "yielded"):
                # Queue again at once, as the run loop does after a handoff.
                what = (f"the command exited with status {ended.status}; "
                        if ended.kind == "yielded" else "")
                _say(f"{what}{ended.reason}; campaigning again")
                if self.cancel.is_set():
                    return interrupted("run", self.signum)
                continue
            if ended.lasted > settle:
                backoff = BACKOFF_FIRST
            what = (f"the command exited with status {ended.status}; resigned; "
                    if ended.kind == "exit" else "")
            _say(f"{what}campaigning again in {backoff:.2f} s")
            if self.cancel.wait(backoff):
                return interrupted("run", self.signum)
            backoff = min(BACKOFF_MAX, backoff * 2)

    # -- one leadership -----------------------------------------------------------------

    def lead(self, election: tenure.Election, timeout: float | None) -> Ended:
        """Campaigns, runs the command while leading, and resigns. A handoff that did
        not land, after which this candidate led again (``keep``), runs the command
        again under the new leadership."""
        inbox: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.inbox = inbox
        try:
            lead = election.campaign(self.value, timeout=timeout, cancel=self.cancel,
                                     priority=self.priority)
        except CampaignTimeout as exc:
            return Ended("timeout", reason=str(exc))
        except CampaignCancelled:
            return Ended("signal", self.signum)
        while True:
            lead.on_lost(_post_lost(inbox))
            if self.prefer_priority:
                lead.on_preferred(_tell_preferred)
            with lead:
                ended = self._supervise(lead, inbox, election.client.store.description)
                if ended.kind == "exit" and self.prefer_priority:
                    ended = _yield_to_preferred(lead, ended)
            if ended.kind != "kept" or ended.again is None:
                return Ended(ended.kind, ended.status, ended.reason,
                             (lead.ended_at or lead.elected_at) - lead.elected_at)
            lead = ended.again
            inbox = queue.SimpleQueue()
            self.inbox = inbox
            if self.cancel.is_set():  # after the swap: see _relay_signals
                lead.resign()
                return Ended("signal", self.signum, "; stopped the command")

    def _supervise(self, lead: Leadership, inbox: queue.SimpleQueue[tuple[str, object]],
                   backend: str) -> Ended:
        renewals = _Renewals(lead, backend)  # from before the keeper starts: see there
        try:
            return self._guarded(lead, inbox, renewals)
        finally:
            renewals.close()

    def _guarded(self, lead: Leadership, inbox: queue.SimpleQueue[tuple[str, object]],
                 renewals: _Renewals) -> Ended:
        started_with = lead.deadline
        try:
            keeper = DeadlineKeeper.start(started_with, self.grace)
        except KeeperError as exc:
            return Ended("failed", fail("run", str(exc), EXIT_UNAVAILABLE))
        if self.cancel.is_set() or lead.state is not State.HELD:
            keeper.close()
            return self._not_started(lead)
        env = dict(os.environ)
        env.update(
            TENURE_ELECTION=lead.election,
            TENURE_CANDIDATE_ID=lead.candidate_id,
            TENURE_FENCING_TOKEN=str(lead.token),
        )
        # Deadlines are forwarded from now on, not once the command runs: starting it
        # takes a while on a loaded machine, and the keeper must not stop it at a
        # deadline that renewals have meanwhile moved (seen with a TTL of 1 s).
        exited = threading.Event()
        renewals.attach(keeper, started_with)
        try:
            child = keeper.spawn(self.command, env=env)
        except (OSError, subprocess.SubprocessError) as exc:
            exited.set()
            keeper.close()
            return Ended("failed", fail("run", f"cannot start {self.command[0]!r}: {exc}",
                                        EXIT_CANNOT_START))
        threading.Thread(target=_await_exit, args=(child.pid, exited, inbox),
                         name="tenure-run-child", daemon=True).start()
        stop_request = _StopRequest(inbox)
        listener = (HandoffListener(lead, before_release=stop_request)
                    if self.accept_handoff else None)
        kind, detail = inbox.get()
        served = 0 if listener is None else len(listener.results)
        if kind == "lost":
            _say(f"leadership lost ({detail}); stopping the command")
        if kind == "handoff":
            _say("a handoff was requested; stopping the command before releasing")
        if kind != "exit":
            self._stop(child, keeper, exited)
        keeper.close()  # before reaping: see the module
        status = child.wait()
        stop_request.answer(kind == "handoff")
        if listener is not None and kind == "handoff":
            return self._handed_over(listener, served)
        if listener is not None:
            listener.stop()
        if kind == "signal":
            assert isinstance(detail, int)
            return Ended("signal", detail, "; stopped the command")
        if kind == "lost":
            return Ended("lost", reason=str(detail))
        if keeper.fired() == "deadline":
            reason = lead.lost_reason or "the validity deadline passed"
            _say(f"leadership lost ({reason}); the deadline keeper stopped the command")
            return Ended("lost", reason=reason)
        return Ended("exit", status)

    def _handed_over(self, listener: HandoffListener, served: int) -> Ended:
        """After the command was stopped for a handoff: waits for it to finish (the
        listener's thread runs it, bounded by the request's timeout) and says how it
        ended."""
        listener.stop()
        outcome = listener.results[served] if len(listener.results) > served else None
        if self.cancel.is_set():
            if outcome is not None and outcome.leadership is not None:
                outcome.leadership.resign()
            return Ended("signal", self.signum, "; stopped the command")
        if outcome is None:  # the store refused or failed the release (logged)
            reason = "the handoff failed after the command was stopped (see the log above)"
            _say(reason)
            return Ended("lost", reason=reason)
        if outcome.ok:
            return Ended("handoff", reason=outcome.message)
        if outcome.leadership is not None:
            _say(f"{outcome.message}; starting the command again")
            return Ended("kept", reason=outcome.message, again=outcome.leadership)
        return Ended("handoff-failed", reason=outcome.message)

    def _not_started(self, lead: Leadership) -> Ended:
        if self.cancel.is_set():
            return Ended("signal", self.signum)
        _say(f"leadership lost ({lead.lost_reason}) before the command started")
        return Ended("lost", reason=lead.lost_reason)

    def _stop(self, child: subprocess.Popen[bytes], keeper: DeadlineKeeper,
              exited: threading.Event) -> None:
        """Has the keeper stop the command (SIGTERM, SIGKILL after the grace period);
        does it here only if the keeper is gone or did not manage."""
        if exited.is_set():
            return
        if keeper.stop() and exited.wait(self.grace + KEEPER_EXIT_SLACK):
            return
        signal_group(child.pid, signal.SIGTERM)
        signal_group(child.pid, signal.SIGCONT)
        if not exited.wait(self.grace):
            signal_group(child.pid, signal.SIGKILL)
            exited.wait()


def _tell_preferred(lead: Leadership, contender: Contender) -> None:
    _say(f"candidate {contender.candidate_id!r} (priority {contender.priority}) waits "
         f"with a higher priority than this one's ({lead.priority}); it takes over when "
         "the command exits")


def _yield_to_preferred(lead: Leadership, ended: Ended) -> Ended:
    """After the command exited by itself (``ended``): hands the leadership to the
    preferred waiter if there is one (``yielded``), else leaves ``ended`` as it is."""
    if lead.state is not State.HELD:
        return ended
    try:
        result = lead.yield_to_preferred(on_failure="resign", recampaign=False)
    except TenureError as exc:  # a store error or the leadership ended meanwhile
        _say(f"could not hand off to a preferred candidate ({exc}); resigning")
        return ended
    if result is None:
        return ended
    return Ended("yielded", ended.status, result.message, ended.lasted)


def _post_lost(inbox: queue.SimpleQueue[tuple[str, object]]) -> Callable[[Leadership, str],
                                                                          None]:
    """An ``on_lost`` callback that posts the loss to ``inbox``."""
    return lambda _lead, reason: inbox.put(("lost", reason))


class _StopRequest:
    """The ``before_release`` hook of tenure run's handoff listener: called from the
    listener's thread once a handoff is decided, it asks the main thread (which owns
    the command) to stop the command, and returns only once the command was reaped.
    If the leadership ended another way first (the command exited, a loss, a signal),
    it raises NotLeader and the handoff releases nothing."""

    def __init__(self, inbox: queue.SimpleQueue[tuple[str, object]]) -> None:
        self._inbox = inbox
        self._answered = threading.Event()
        self._stopped = False

    def __call__(self) -> None:
        self._inbox.put(("handoff", None))
        self._answered.wait()
        if not self._stopped:
            raise NotLeader("tenure run's leadership ended before the handoff; nothing "
                            "was handed off")

    def answer(self, stopped: bool) -> None:
        """``stopped``: the command is gone and the handoff may release."""
        self._stopped = stopped
        self._answered.set()


def _await_exit(pid: int, exited: threading.Event,
                inbox: queue.SimpleQueue[tuple[str, object]]) -> None:
    """Waits for the command to exit WITHOUT reaping it (WNOWAIT): until the keeper
    has been told, its pid must stay taken."""
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    exited.set()
    inbox.put(("exit", pid))


class _Renewals:
    """Forwards to the keeper each deadline a successful renewal put in force, with the
    time it did (the ``renewal`` event, published by the renewing thread once the
    deadline is in force), FROM THAT THREAD: an extension reaches the keeper as soon as
    the core knows it, whether or not another thread of this (possibly starved) process
    is scheduled, and the keeper can tell one known in time from a late one even when
    it reads it late. Subscribed before the keeper starts, so renewals made while it
    starts are sent once it is attached. Nothing else wakes to forward: only a renewal
    moves a held leadership's deadline later (a session opened anew comes with a new
    leadership). What is sent is never later than the leadership's own deadline read
    at that moment (an event of another client with the same store description cannot
    extend it), and nothing is sent once the leadership ended. An extension the keeper
    misses (its pipe full: it is frozen) only makes its deadline earlier than ours; the
    next renewal's replaces it. ``backend``: the client's store description (tenure
    run has one client)."""

    def __init__(self, lead: Leadership, backend: str) -> None:
        self._lead = lead
        self._backend = backend
        self._lock = threading.Lock()
        self._latest: tuple[float, float] | None = None
        self._keeper: DeadlineKeeper | None = None
        self._sent = 0.0
        self._unsubscribe = events.subscribe(self._on_event)

    def attach(self, keeper: DeadlineKeeper, sent: float) -> None:
        """From now on send to ``keeper``, which holds the deadline ``sent``."""
        with self._lock:
            self._keeper, self._sent = keeper, sent
        self._push()

    def _on_event(self, event: events.Event) -> None:
        fields = event.fields
        if (event.kind == "renewal" and fields.get("ok") and "valid_until" in fields
                and fields.get("backend") == self._backend):
            with self._lock:
                self._latest = (float(fields["valid_until"]), event.at)
            self._push()

    def _push(self) -> bool:
        """Sends the latest renewal's deadline if later than what was sent; False once
        the keeper is gone."""
        with self._lock:
            keeper, latest = self._keeper, self._latest
            if keeper is None or latest is None or self._lead.ended.is_set():
                return True
            deadline = min(latest[0], self._lead.deadline)
            if deadline <= self._sent:
                return True
            if not keeper.extend(deadline, latest[1]):
                return False
            self._sent = deadline
            return True

    def close(self) -> None:
        self._unsubscribe()
        with self._lock:
            self._keeper = None


def _say(text: str) -> None:
    print(f"tenure run: {text}", file=sys.stderr, flush=True)
