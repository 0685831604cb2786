"""Soak runs: seeded chaos rounds back to back for a number of minutes, counted.

    totals = soak(target, minutes=30, seed=7, faults=..., round_seconds=20,
                  on_round=print_progress)
    totals.as_dict()   # faults_by_class, leaderships, violations, worst_failover, ...

Round ``i`` runs :func:`tenure.conformance.suite.chaos.run_chaos` with seed ``seed + i``
(so any round replays on its own), in a fresh election, drawing the fault kinds in a
seeded rotation so every class lands in every round (a round lasts at least until each
was injected once); a round that fails saves its
history and schedule under ``artifacts/failing-histories`` (``run_chaos`` does). The
totals promise: ``faults_by_class`` counts every fault injected, by class (the partition
classes have "partition" in their names); ``violations`` lists every S1/S2/S3 violation
found, each prefixed with its round's seed (empty when none); ``worst_failover`` is, per
class, the longest time without a valid leader that overlapped one of its faults;
``round_reports`` holds, for every round, its seed, verdict, violations and its
*timeline*: each fault injected and each repair made, in time order, with ``t`` (seconds
from the round's start) and ``at`` (``CLOCK_MONOTONIC``, the clock of the round's
history events), so a violation can be traced to the faults around it. A round that
violated prints its timeline too.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.chaos import ChaosConfig, ChaosReport, run_chaos


@dataclass
class SoakTotals:
    """Running totals of a soak."""

    backend: str
    seed: int
    rounds: int = 0
    started: float = field(default_factory=time.monotonic)
    faults_by_class: Counter[str] = field(default_factory=Counter)
    survived: Counter[str] = field(default_factory=Counter)
    leaderships: int = 0
    violations: list[str] = field(default_factory=list)
    leaderless_rounds: list[int] = field(default_factory=list)
    unobserved: list[str] = field(default_factory=list)
    worst_failover: dict[str, float] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    round_reports: list[dict[str, Any]] = field(default_factory=list)

    def add(self, report: ChaosReport) -> None:
        """Adds one round's report."""
        self.rounds += 1
        check = report.check
        self.faults_by_class.update(report.faults)
        found = check.violations if check is not None else ["not checked"]
        if not found:
            self.survived.update(report.faults)
        self.violations += [f"seed {report.seed}: {v}" for v in found]
        self.leaderships += len(check.intervals) if check is not None else 0
        if check is not None and not check.intervals:
            self.leaderless_rounds.append(report.seed)
        self.unobserved += [f"seed {report.seed}: {u}" for u in report.unobserved]
        for kind, gap in report.worst_failover.items():
            self.worst_failover[kind] = max(self.worst_failover.get(kind, 0.0), gap)
        if report.saved:
            self.saved.append(report.saved)
        verdict = ("violation" if found else
                   "no leader" if check is not None and not check.intervals else "ok")
        self.verdicts[verdict] += 1
        self.round_reports.append({
            "seed": report.seed, "verdict": verdict, "violations": found,
            "leaderships": len(check.intervals) if check is not None else 0,
            "saved_history": report.saved or None, "timeline": timeline(report),
        })

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        """The running count, one line."""
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults_by_class.items()))
        verdicts = ", ".join(f"{k} {n}" for k, n in sorted(self.verdicts.items()))
        return (f"rounds {self.rounds} | leaderships {self.leaderships} | violations "
                f"{len(self.violations)} | verdicts: {verdicts or '-'} | faults: {faults or '-'}")

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` report."""
        return {
            "backend": self.backend, "seed": self.seed, "rounds": self.rounds,
            "seconds": round(self.elapsed, 1),
            "faults_by_class": dict(self.faults_by_class),
            "faults_survived": dict(self.survived),
            "leaderships": self.leaderships, "violations": self.violations,
            "leaderless_rounds": self.leaderless_rounds, "unobserved": self.unobserved,
            "worst_failover": {k: round(v, 3) for k, v in self.worst_failover.items()},
            "saved_histories": self.saved, "verdicts": dict(self.verdicts),
            "errors": self.errors, "round_reports": self.round_reports,
        }


def timeline(report: ChaosReport) -> list[dict[str, Any]]:
    """A round's faults and repairs in time order, JSON-ready: each fault entry as the
    schedule logged it (``fault`` and its details, ``repair_due`` in seconds from the
    start where one was planned), each repair as made (``repair``, ``subject``)."""
    entries: list[dict[str, Any]] = []
    for entry in report.schedule:
        item = {k: _plain(v) for k, v in entry.items() if k != "repair_at"}
        if "repair_at" in entry:  # due time, on the round's clock like "t"
            item["repair_due"] = round(entry["repair_at"] - entry["at"] + entry["t"], 3)
        entries.append(item)
    entries += [{k: _plain(v) for k, v in repair.items()} for repair in report.repairs]
    entries.sort(key=lambda e: float(e["t"]))
    for item in entries:
        item["t"] = round(float(item["t"]), 3)
    return entries


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a schedule detail (numbers, text, lists, or their str)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def timeline_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One line per timeline entry: ``  +12.345 s  partition-split (evidence=...)``."""
    lines = []
    for e in entries:
        what = e.get("fault") or f"repair {e.get('repair')}"
        rest = ", ".join(f"{k}={v}" for k, v in e.items()
                         if k not in ("t", "at", "fault", "repair"))
        lines.append(f"  +{e['t']:7.3f} s  {what}" + (f" ({rest})" if rest else ""))
    return lines


def soak(target: Target, *, minutes: float, seed: int, faults: tuple[str, ...],
         round_seconds: float = 20.0, candidates: int = 4,
         on_round: Callable[[SoakTotals, ChaosReport], None] | None = None) -> SoakTotals:
    """Runs rounds until ``minutes`` have passed (the last round is not cut short)."""
    totals = SoakTotals(target.profile.name, seed)
    end = totals.started + minutes * 60
    while time.monotonic() < end:
        round_seed = seed + totals.rounds
        # rotate: every class that applies lands in every round (seeded order).
        config = ChaosConfig(seed=round_seed, duration=round_seconds, candidates=candidates,
                             faults=faults, rotate=True)
        workdir = Path(target.workdir) / f"round-{totals.rounds:05d}"
        try:
            report = run_chaos(target, config, workdir)
        except Exception as exc:  # a store that did not come back: count it, go on if it serves
            totals.rounds += 1
            totals.errors.append(f"seed {round_seed}: {type(exc).__name__}: {exc}"[:2000])
            totals.verdicts["error"] += 1
            if target.cluster is not None:
                try:
                    target.cluster.wait_serving(120)
                except Exception:
                    break
            continue
        totals.add(report)
        shutil.rmtree(workdir, ignore_errors=True)  # failing rounds were copied to artifacts/
        if on_round is not None:
            on_round(totals, report)
    return totals


# -- the command line (``tenure conformance ... --soak MINUTES``) ---------------------


def faults_for(target: Target, destructive: bool) -> tuple[str, ...]:
    """The fault kinds a soak draws: everything that applies on a lab cluster; on a
    user's deployment the candidate faults and clock steps, plus the path faults with
    ``destructive``."""
    from tenure.conformance.suite.chaos import ALL_FAULTS, PROCESS_FAULTS

    if target.cluster is not None:
        return ALL_FAULTS
    path = ("cut", "latency") if destructive else ()
    return (*PROCESS_FAULTS, *path, "clock-step")


def run_cli(args: Any, seed: int, console: Any,
            profile_for: Callable[[str], Any]) -> int:
    """``tenure conformance --soak``: see gateway/cli/conformance.py's docstring."""
    import contextlib
    import json
    import tempfile

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tenure.config import parse_backend_url
    from tenure.errors import ConfigError

    round_seconds = args.duration if args.duration > 0 else 20.0
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tenure-soak-")))
        if args.backend:
            url, _ = parse_backend_url(args.backend)
            if args.destructive and not url.hosts:
                raise ConfigError(
                    f"--destructive cuts the network path to the store, so it needs a store "
                    f"reached over the network; {url.scheme} is embedded: drop --destructive")
            target = Target(profile_for(url.scheme), args.backend, None, workdir)
            label = url.redacted
        else:
            from tenure.conformance.faults.lab import NetLab

            profile = profile_for(args.lab)
            nodes = 3 if profile.needs_cluster else 1
            net = stack.enter_context(NetLab(args.lab, nodes))
            target = Target(profile, net.cluster.url, net.cluster, workdir)
            label = f"{args.lab} x{nodes}"
        faults = faults_for(target, args.destructive)
        console.print(f"soak {label}: {args.soak:g} min, rounds of {round_seconds:g} s, "
                      f"seed {seed} (round i: seed {seed}+i)")
        progress = stack.enter_context(Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=console, transient=False))
        task = progress.add_task("starting", total=args.soak * 60)

        def on_round(totals: SoakTotals, report: ChaosReport) -> None:
            progress.update(task, completed=min(totals.elapsed, args.soak * 60),
                            description=totals.line())
            if not progress.console.is_terminal:  # logs get the running count line by line
                progress.console.print(f"{totals.elapsed / 60:5.1f} min  {totals.line()}")
            if report.check is not None and report.check.violations:
                progress.console.print(f"[red]round seed {report.seed}:[/] "
                                       f"{report.summary()}")
                progress.console.print("faults and repairs of that round:", markup=False)
                for line in timeline_lines(totals.round_reports[-1]["timeline"]):
                    progress.console.print(line, markup=False, highlight=False)

        totals = soak(target, minutes=args.soak, seed=seed, faults=faults,
                      round_seconds=round_seconds, on_round=on_round)
        progress.update(task, completed=args.soak * 60, description=totals.line())
    print_totals(console, label, totals)
    if args.json:
        Path(args.json).write_text(json.dumps(totals.as_dict(), indent=1))
    return 0 if not totals.violations and not totals.errors else 1


def print_totals(console: Any, label: str, totals: SoakTotals) -> None:
    """The closing table: per class, faults injected/survived and the worst failover."""
    from rich.table import Table

    table = Table(title=f"tenure conformance soak: {label}, {totals.rounds} rounds, "
                        f"{totals.elapsed / 60:.1f} min")
    for column in ("fault class", "injected", "survived", "worst failover"):
        table.add_column(column)
    for kind, count in sorted(totals.faults_by_class.items()):
        worst = totals.worst_failover.get(kind)
        table.add_row(kind, str(count), str(totals.survived.get(kind, 0)),
                      "-" if worst is None else f"{worst:.2f} s")
    console.print(table)
    colour = "green" if not totals.violations else "red"
    console.print(f"leaderships {totals.leaderships}; [{colour}]violations "
                  f"{len(totals.violations)}[/]; rounds without a leader "
                  f"{len(totals.leaderless_rounds)}; faults not observed "
                  f"{len(totals.unobserved)}; rounds that failed to run {len(totals.errors)}")
    for error in totals.errors:
        console.print(f"[yellow]{error}[/]")
    for violation in totals.violations:
        console.print(f"[red]{violation}[/]")
    for path in totals.saved:
        console.print(f"saved for replay: {path}")
