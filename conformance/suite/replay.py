"""Replays a saved history through the checker.

    python -m tenure.conformance.suite.replay artifacts/failing-histories/FILE.jsonl

Prints the checker's report and exits 1 if it finds a violation.
"""

from __future__ import annotations

import sys

from tenure.conformance.suite import history


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m tenure.conformance.suite.replay HISTORY.jsonl ...", file=sys.stderr)
        return 2
    worst = 0
    for path in paths:
        report = history.check(history.load(path))
        print(f"{path}: {report.summary()}")
        worst = max(worst, 0 if report.ok else 1)
    return worst


if __name__ == "__main__":
    sys.exit(main())
