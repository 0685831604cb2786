"""The pictures: the two timelines are drawn by docs/pictures/draw.py, committed, and
shown on the pages that explain them; the benchmark plot labels its axes with units."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tree_copy import ROOT

pytestmark = [pytest.mark.packaging]

PICTURES = ROOT / "docs" / "pictures"
TIMELINES = ("validity-deadline.png", "fencing.png")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.slow
def test_draw_script_redraws_both_timelines_at_the_committed_size(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PICTURES / "draw.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in TIMELINES:
        drawn, committed = tmp_path / name, PICTURES / name
        assert committed.is_file(), f"docs/pictures/{name} is not committed"
        assert png_size(drawn) == png_size(committed) == (1100, 460)
        assert drawn.stat().st_size > 20_000, f"{name} is nearly empty"


def test_draw_script_refuses_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PICTURES / "draw.py"), "--out", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert "not a folder; create it first" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("page", "pictures"), [
    ("docs/contract.md", TIMELINES),
    ("docs/design.md", ("validity-deadline.png",)),
    ("docs/index.md", ("fencing.png",)),
])
def test_pages_show_the_timelines_with_alt_text(page: str, pictures: tuple[str, ...]) -> None:
    text = (ROOT / page).read_text()
    for name in pictures:
        match = re.search(rf"!\[([^\]]*)\]\(pictures/{re.escape(name)}\)", text)
        assert match, f"{page} does not show pictures/{name}"
        assert len(match.group(1)) > 20, f"{page}: pictures/{name} needs a describing alt text"


@pytest.mark.slow
def test_performance_plot_labels_every_axis_with_its_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    from tenure.conformance.benchmarks import report
    from tenure.conformance.benchmarks.runner import Row
    from tenure.conformance.benchmarks.scale import ScaleRow

    figures: list[Any] = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda figure=None: figures.append(figure))
    rows = [
        Row("sqlite", "tenure", "handover", "ok", samples=[0.0003, 0.0004], baseline=True),
        Row("sqlite", "tenure", "failover", "ok", samples=[0.8, 0.9], baseline=True,
            extra={"bound": 1.25}),
    ]
    scale = [ScaleRow("sqlite", "elections", n, requests_per_s=3.0 * n) for n in (1, 100)] + [
        ScaleRow("sqlite", "waiters", n, notifications_per_change=1.0) for n in (10, 100)]
    path = tmp_path / "plot.png"
    report.plot(path, rows, scale)
    assert path.is_file()
    assert len(figures) == 1
    try:
        axes = figures[0].get_axes()
        assert len(axes) == 4
        for ax in axes:
            title = ax.get_title()
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert label, f"plot '{title}': an axis has no label"
            assert re.search(r"\((ms|s|count|1/s)\b", ax.get_xlabel()), \
                f"plot '{title}': x label {ax.get_xlabel()!r} names no unit"
            if ax.get_yscale() == "log":
                assert re.search(r"\((ms|s|count|1/s)\b", ax.get_ylabel()), \
                    f"plot '{title}': y label {ax.get_ylabel()!r} names no unit"
    finally:
        close(figures[0])
