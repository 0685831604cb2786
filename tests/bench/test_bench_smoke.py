"""``tenure bench --quick`` runs end to end on SQLite and prints its table (a smoke
test: nothing here asserts a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tenure.conformance.benchmarks.report import ratios, table
from tenure.conformance.benchmarks.runner import Row
from tenure.conformance.benchmarks.stats import Summary, percentile

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]


def test_quick_bench_on_sqlite_prints_the_table_and_writes_json_and_plot(
    tmp_path: Path,
) -> None:
    out, plot, page = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "perf.md"
    page.write_text("# Notes\n\nkept\n\n<!-- tenure bench: begin -->\nold\n"
                    "<!-- tenure bench: end -->\n\nalso kept\n")
    result = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "bench", "--quick", "--campaigns", "7",
         "--json", str(out), "--plot", str(plot), "--markdown", str(page)],
        capture_output=True, text=True, timeout=170, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "resign handover" in result.stdout
    assert "| sqlite | tenure |" in result.stdout
    assert "| sqlite | tenure via serve |" in result.stdout
    assert "## Targets (issue 9)" in result.stdout
    report = json.loads(out.read_text())
    handover = next(r for r in report["rows"]
                    if r["system"] == "tenure" and r["measurement"] == "handover")
    assert handover["status"] == "ok" and len(handover["samples"]) == 8
    campaigns = [r for r in report["rows"] if r["measurement"] == "campaign"]
    assert {r["system"]: len(r["samples"]) for r in campaigns} == {
        "tenure": 7, "tenure via serve": 7}  # --campaigns over --quick's 5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "kept" in text and "also kept" in text and "old" not in text
    assert "| sqlite | tenure |" in text and "![tenure bench](bench.png)" in text


def test_an_unsupported_measurement_is_reported_with_its_reason_not_dropped() -> None:
    rows = [
        Row("redis", "tenure", "handover", "ok", samples=[0.001, 0.002], baseline=True),
        Row("redis", "tooz redis", "handover", "ok", samples=[0.05, 0.06]),
        Row("redis", "tooz redis", "detect-cut", "unsupported",
            reason="tooz has no leadership-lost event"),
    ]
    text = table(rows)
    assert "n/a [1]" in text and "tooz has no leadership-lost event" in text
    assert "| redis | tooz redis | handover | 1.50 | 55.00 | 0.0273 |" in ratios(rows)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.9) == 90.0
    summary = Summary.of(values)
    assert (summary.n, summary.median, summary.p99) == (100, 50.5, 99.0)
