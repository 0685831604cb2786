"""Candidate processes inside a namespace and/or under libfaketime.

:class:`~tenure.conformance.suite.harness.CandidateGroup.spawn` has no hook for a command
prefix or an environment, and the harness belongs to the suite, so this module builds the
same command line and prepends ``ip netns exec NS`` and ``env LD_PRELOAD=libfaketime ...``
(the same event stream, history and fence as the group's other members).

The wall clock of a faked candidate is read from a file (``FAKETIME_TIMESTAMP_FILE``,
re-read on every call: ``FAKETIME_NO_CACHE=1``) holding an offset such as ``+3600``;
:func:`step_clock` rewrites it, stepping every faked candidate at once. CLOCK_MONOTONIC
is left real (``FAKETIME_DONT_FAKE_MONOTONIC=1``): the history's times stay comparable,
and what is shown is that tenure reads no wall clock. (A time namespace could not do
this: it offsets only CLOCK_MONOTONIC and CLOCK_BOOTTIME, never CLOCK_REALTIME.)
"""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path

from tenure.conformance.faults.netns import FaultUnavailable
from tenure.conformance.suite.harness import CandidateGroup, CandidateProcess


def libfaketime() -> str:
    """The path of libfaketime.so.1; :class:`FaultUnavailable` naming the fix if none."""
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise FaultUnavailable("libfaketime not found: run scripts/install-stores "
                           "(install-stores.d/30-fault-tools installs faketime)")


def step_clock(clock_file: Path, offset_seconds: float) -> None:
    """Sets the wall-clock offset every candidate using ``clock_file`` sees (atomic)."""
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(f"{offset_seconds:+.0f}\n")
    tmp.replace(clock_file)


def spawn(
    group: CandidateGroup, *, ttl: float | None = None, hold: float | None = None,
    rounds: int = 1, tick: float = 0.05, name: str | None = None, broken: str | None = None,
    backend: str | None = None, netns: list[str] | None = None, clock_file: Path | None = None,
) -> CandidateProcess:
    """Like ``group.spawn`` (same arguments), plus ``netns`` (a command prefix from
    :attr:`~.netns.Namespace.prefix`) and ``clock_file`` (run under libfaketime, with
    ``wall`` events on stdout: the wall clock the candidate sees)."""
    name = name or f"c{len(group.members) + 1}"
    module = "tenure.conformance.faults.wallclock" if clock_file else \
        "tenure.conformance.suite.candidate"
    command = [
        sys.executable, "-m", module,
        "--backend", backend or group.backend, "--election", group.election,
        "--history", str(group.history_path), "--fence", str(group.fence_path),
        "--rounds", str(rounds), "--tick", str(tick), "--id", f"{name}-{time.monotonic_ns()}",
    ]
    if ttl is not None:
        command += ["--ttl", str(ttl)]
    if hold is not None:
        command += ["--hold", str(hold)]
    if broken is not None:
        command += ["--broken", broken]
    if clock_file is not None:
        if not clock_file.exists():
            step_clock(clock_file, 0)
        command = ["env", f"LD_PRELOAD={libfaketime()}",
                   f"FAKETIME_TIMESTAMP_FILE={clock_file}", "FAKETIME_NO_CACHE=1",
                   "FAKETIME_DONT_FAKE_MONOTONIC=1", *command]
    member = CandidateProcess([*(netns or []), *command], name)
    group.members.append(member)
    return member
