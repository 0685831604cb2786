"""Histories of an election run and the checker for S1 (mutual exclusion) and S2/S3
(fencing).

Candidates append JSON lines to one history file (``O_APPEND``; one ``write`` per
line), all times from ``time.monotonic()`` of the one host, so they are comparable.
Event kinds:

* ``elected``   -- campaign returned: ``cid``, ``token``, ``t``, ``deadline``;
* ``valid``     -- the leader is about to act: ``token``, ``t``, ``deadline``;
* ``lost``      -- ``on_lost`` fired or ``ensure()`` raised: ``token``, ``t``;
* ``resign``    -- about to resign (acting stopped): ``token``, ``t``;
* ``fenced``    -- a write through the fencing check: ``token``, ``t`` (sent),
  ``t_done`` (answered), ``accepted``;
* ``guarded``   -- a store guarded write: ``token``, ``t`` (sent), ``ok``.

A leadership's validity interval runs from its ``elected`` time to the earliest of its
``lost``/``resign`` time and the latest deadline it recorded (a killed process cannot
have believed in more). The checker reports:

* S1: two leaderships of one election whose intervals overlap;
* S2: leaderships whose tokens do not strictly increase in order of election, and
  fenced writes accepted out of token order (a superseded leader's write accepted
  after its successor's);
* S3: a store guarded write that succeeded although it was sent after a leadership
  with a higher token had begun.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Event = dict[str, Any]


def record(path: str | Path, **event: Any) -> None:
    """Appends one event line to the history file at ``path`` atomically."""
    line = (json.dumps(event, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def load(path: str | Path) -> list[Event]:
    """Reads a history file (a torn last line from a killed writer is ignored)."""
    events = []
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


@dataclass
class Interval:
    """One leadership: who, which token, and when it may have believed it led."""

    election: str
    cid: str
    token: int
    start: float
    end: float


@dataclass
class Report:
    """The checker's verdict: intervals found and every violation, described."""

    intervals: list[Interval] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    fenced_accepted: int = 0
    fenced_rejected: int = 0
    guarded_ok: int = 0
    guarded_refused: int = 0

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return not self.violations

    def summary(self) -> str:
        """One paragraph for test output and saved reports."""
        head = (
            f"{len(self.intervals)} leaderships, fenced writes {self.fenced_accepted} accepted/"
            f"{self.fenced_rejected} rejected, guarded writes {self.guarded_ok} ok/"
            f"{self.guarded_refused} refused: "
        )
        if self.ok:
            return head + "no violations"
        return head + f"{len(self.violations)} violation(s):\n  " + "\n  ".join(self.violations)


def intervals(events: Iterable[Event]) -> list[Interval]:
    """Builds the validity interval of every leadership in the history."""
    found: dict[tuple[str, str, int], Interval] = {}
    closed: dict[tuple[str, str, int], float] = {}
    for event in events:
        key = (event.get("election", ""), event.get("cid", ""), event.get("token", -1))
        kind = event["kind"]
        if kind == "elected":
            found[key] = Interval(key[0], key[1], key[2], event["t"], event["deadline"])
        elif kind == "valid" and key in found:
            found[key].end = max(found[key].end, event["deadline"])
        elif kind in ("lost", "resign"):
            closed[key] = min(closed.get(key, event["t"]), event["t"])
    for key, end in closed.items():
        if key in found:
            found[key].end = min(found[key].end, end)
    return sorted(found.values(), key=lambda i: (i.election, i.start))


def check(events: list[Event]) -> Report:
    """Checks S1, S2 and S3 over a whole history."""
    report = Report(intervals=intervals(events))
    by_election: dict[str, list[Interval]] = {}
    for interval in report.intervals:
        # Empty: the candidate learnt it had won only after its deadline (paused right
        # after winning), so it never held a valid leadership; its acts, if any, are
        # judged by the fenced and guarded checks below.
        if interval.end > interval.start:
            by_election.setdefault(interval.election, []).append(interval)
    for election, group in by_election.items():
        _check_exclusion(election, group, report)
        _check_tokens(election, group, report)
    _check_fenced(events, report)
    _check_guarded(events, report)
    return report


def _check_exclusion(election: str, group: list[Interval], report: Report) -> None:
    latest: Interval | None = None
    for interval in group:
        if latest is not None and interval.start < latest.end:
            report.violations.append(
                f"S1 {election}: {interval.cid} (token {interval.token}) led from "
                f"{interval.start:.4f} while {latest.cid} (token {latest.token}) was valid "
                f"until {latest.end:.4f} (overlap {latest.end - interval.start:.4f} s)"
            )
        if latest is None or interval.end > latest.end:
            latest = interval


def _check_tokens(election: str, group: list[Interval], report: Report) -> None:
    for before, after in itertools.pairwise(group):
        if after.token <= before.token:
            report.violations.append(
                f"S2 {election}: token went from {before.token} ({before.cid}) to "
                f"{after.token} ({after.cid}); tokens must strictly increase"
            )


def _check_fenced(events: list[Event], report: Report) -> None:
    """A write accepted with a lower token than one accepted entirely before it was
    sent (``t_done`` < ``t``) is a violation; overlapping writes may go either way."""
    accepted: dict[str, list[Event]] = {}
    for event in events:
        if event["kind"] != "fenced":
            continue
        if not event["accepted"]:
            report.fenced_rejected += 1
            continue
        report.fenced_accepted += 1
        resource = str(event.get("resource", event.get("election", "")))
        accepted.setdefault(resource, []).append(event)
    for resource, writes in accepted.items():
        by_end = sorted(writes, key=_done_time)
        highest: Event | None = None
        position = 0
        for write in sorted(writes, key=lambda e: e["t"]):
            while position < len(by_end) and _done_time(by_end[position]) < write["t"]:
                done = by_end[position]
                if highest is None or done["token"] > highest["token"]:
                    highest = done
                position += 1
            if highest is not None and write["token"] < highest["token"]:
                report.violations.append(
                    f"S2 {resource}: write with token {write['token']} by {write['cid']} "
                    f"accepted after token {highest['token']} by {highest['cid']} was"
                )


def _done_time(event: Event) -> float:
    return float(event["t_done"] if "t_done" in event else event["t"])


def _check_guarded(events: list[Event], report: Report) -> None:
    starts: dict[tuple[str, int], float] = {}
    for i in report.intervals:
        starts[(i.election, i.token)] = min(i.start, starts.get((i.election, i.token), i.start))
    for event in events:
        if event["kind"] != "guarded":
            continue
        if not event["ok"]:
            report.guarded_refused += 1
            continue
        report.guarded_ok += 1
        newer = [
            (token, start) for (election, token), start in starts.items()
            if election == event["election"] and token > event["token"] and start < event["t"]
        ]
        if newer:
            token, start = min(newer)
            report.violations.append(
                f"S3 {event['election']}: guarded write by {event['cid']} with token "
                f"{event['token']} sent at {event['t']:.4f} succeeded although token {token} "
                f"led from {start:.4f}"
            )
