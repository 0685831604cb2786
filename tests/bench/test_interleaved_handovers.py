"""Resign-handover samples are taken side by side: every system measures one block in
turn, who goes first rotates, and each system still gets exactly the samples asked for
(``runner.interleaved``, on SQLite with tenure and ``tenure serve``). Nothing
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
        taken = runner.interleaved("handover", 7, systems, store, gateways, lines.append)
    serve = "tenure-serve"
    assert order == [("tenure", 2), (serve, 2), (serve, 2), ("tenure", 2),
                     ("tenure", 1), (serve, 1), (serve, 1), ("tenure", 1),
                     ("tenure", 1), (serve, 1)], order
    for label in labels:
        samples = taken[label]
        assert isinstance(samples, list) and len(samples) == 7, (label, samples)
        assert all(isinstance(s, float) and abs(s) < 60 for s in samples), samples
    assert "handover: 7 samples per system in 5 interleaved blocks" in lines[-1]


def test_campaign_samples_are_interleaved_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway's overhead is tenure-via-serve's campaign row minus tenure's: both are
    taken in the same blocks, turn by turn."""
    url = f"sqlite://{tmp_path}/bench.db"
    store = runner.StoreUnderTest("sqlite", url)
    systems = systems_for("sqlite", url)
    order: list[tuple[str, int]] = []
    uncontended = handover.uncontended

    def recorded(tool: str, url_: str, *args: object) -> list[float]:
        samples = uncontended(tool, url_, *args)  # type: ignore[arg-type]
        order.append((tool, len(samples)))
        return samples

    monkeypatch.setattr(handover, "uncontended", recorded)
    with contextlib.ExitStack() as stack:
        gateways = {s.label: runner._gateway(s, store, stack) for s in systems}
        taken = runner.interleaved("campaign", 3, systems, store, gateways, lambda _: None)
    serve = "tenure-serve"
    assert order == [("tenure", 1), (serve, 1), (serve, 1), ("tenure", 1),
                     ("tenure", 1), (serve, 1)], order
    assert all(isinstance(v, list) and len(v) == 3 and min(v) > 0 for v in taken.values())
