"""Resign-handover samples are taken side by side: every system measures one block in
turn, who goes first rotates, and each system still gets exactly the samples asked for
(``runner.interleaved_handovers``, on SQLite with tenure and ``tenure serve``). Nothing
here asserts a timing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tenure.conformance.benchmarks import handover, runner
from tenure.conformance.benchmarks.systems import systems_for

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]


def test_systems_take_turns_block_by_block_and_get_every_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite://{tmp_path}/bench.db"
    store = runner.StoreUnderTest("sqlite", url)
    systems = systems_for("sqlite", url)
    labels = [s.label for s in systems]
    assert labels == ["tenure", "tenure via serve"], labels
    order: list[tuple[str, int]] = []
    measure = handover.measure

    def recorded(tool: str, url_: str, *args: object, **kwargs: object) -> list[float]:
        samples = measure(tool, url_, *args, **kwargs)  # type: ignore[arg-type]
        order.append((tool, len(samples)))
        return samples

    monkeypatch.setattr(handover, "measure", recorded)
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        gateways = {s.label: runner._gateway(s, store, stack) for s in systems}
        taken = runner.interleaved_handovers(systems, store, runner.Sizes(handovers=7),
                                             gateways, lines.append)
    serve = "tenure-serve"
    assert order == [("tenure", 2), (serve, 2), (serve, 2), ("tenure", 2),
                     ("tenure", 1), (serve, 1), (serve, 1), ("tenure", 1),
                     ("tenure", 1), (serve, 1)], order
    for label in labels:
        samples = taken[label]
        assert isinstance(samples, list) and len(samples) == 7, (label, samples)
        assert all(isinstance(s, float) and abs(s) < 60 for s in samples), samples
    assert "7 samples per system in 5 interleaved blocks" in lines[-1]
