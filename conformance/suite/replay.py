"""Replays a saved history through the checker.

    python -m tenure.conformance.suite.replay artifacts/failing-histories/FILE.jsonl

Prints the checker's report for each file and exits 1 if it finds a violation, 2 when
a file cannot be read as a history (named, without a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from tenure.conformance.suite import history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tenure.conformance.suite.replay",
        description="Checks saved conformance histories (JSON lines) for S1, S2 and S3.")
    parser.add_argument("paths", nargs="+", metavar="HISTORY.jsonl")
    args = parser.parse_args(argv)
    worst = 0
    for path in args.paths:
        try:
            events = history.load(path)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            print(f"{path}: cannot read a history: {exc}", file=sys.stderr)
            worst = 2
            continue
        if not events:
            print(f"{path}: no history events in it (is it a .jsonl history?)", file=sys.stderr)
            worst = 2
            continue
        report = history.check(events)
        print(f"{path}: {report.summary()}")
        worst = max(worst, 0 if report.ok else 1)
    return worst


if __name__ == "__main__":
    sys.exit(main())
