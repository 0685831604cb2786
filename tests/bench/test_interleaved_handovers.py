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


class _FakeGateway:
    """Stands in for ``tenure serve``: ``starts`` says, start by start, whether it comes
    up (False: it raises as a gateway that did not answer would)."""

    starts: list[bool] = []
    running: list[_FakeGateway] = []

    def __init__(self, backend_url: str, ttl: float) -> None:
        if not _FakeGateway.starts.pop(0):
            raise RuntimeError("fake: /healthz never answered")
        self.url = "tenure-serve://127.0.0.1:9"
        _FakeGateway.running.append(self)

    def close(self) -> None:
        _FakeGateway.running.remove(self)


def _fake_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              starts: list[bool]) -> tuple[dict[tuple[str, str], runner.Row], list[str]]:
    """run_store on SQLite (tenure, tenure via serve) for handover and campaign, with
    fake samples (20 ms a block) and a fake gateway: no process is started."""
    import time

    from tenure.conformance.benchmarks import gatewayproc

    def samples(tool: str, url: str, election: str, ttl: float, count: int,
                **kwargs: object) -> list[float]:
        time.sleep(0.02)
        return [0.001] * count

    _FakeGateway.starts, _FakeGateway.running = list(starts), []
    monkeypatch.setattr(handover, "measure", samples)
    monkeypatch.setattr(handover, "uncontended", samples)
    monkeypatch.setattr(runner, "Gateway", _FakeGateway)
    monkeypatch.setattr(runner, "_warm_up", lambda *args: None)
    monkeypatch.setattr(gatewayproc, "leader_queries", lambda *args: 5000.0)
    store = runner.StoreUnderTest("sqlite", f"sqlite://{tmp_path}/bench.db")
    lines: list[str] = []
    rows = runner.run_store(store, runner.Sizes(handovers=6, campaigns=5), lines.append,
                            only=("handover", "campaign"))
    assert _FakeGateway.running == [], "a gateway was left running"
    return {(r.system, r.measurement): r for r in rows}, lines


def test_a_gateway_that_did_not_start_for_the_side_by_side_phase_is_named_in_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The phase's gateway failed, the one started afterwards for the other measurements
    came up: the handover and campaign rows say why they have no samples, instead of
    being measured alone, out of the blocks the other systems were measured in."""
    rows, _ = _fake_run(tmp_path, monkeypatch, [False, True])
    for measurement in ("handover", "campaign"):
        row = rows[("tenure via serve", measurement)]
        assert row.status == "unsupported" and row.samples == [], (row.status, row.samples)
        assert "tenure serve did not start" in row.reason, row.reason
        assert rows[("tenure", measurement)].samples == [0.001] * len(
            rows[("tenure", measurement)].samples)


def test_samples_taken_side_by_side_survive_a_later_gateway_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The phase's gateway ran and its samples were taken; the gateway started afterwards
    (for the other measurements) failed: the handover and campaign rows keep them."""
    rows, _ = _fake_run(tmp_path, monkeypatch, [True, False])
    for measurement, count in (("handover", 6), ("campaign", 5)):
        row = rows[("tenure via serve", measurement)]
        assert row.status == "ok", (row.status, row.reason)
        assert len(row.samples) == count and row.extra["blocks"] == 5, row


def test_progress_lines_give_the_time_the_side_by_side_samples_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each row's line gives the seconds its system spent in its blocks (5 x 20 ms), not
    the time it took to copy samples already taken (0.0 s)."""
    rows, lines = _fake_run(tmp_path, monkeypatch, [True, True])
    assert ("tenure via serve", "leader-qps") in rows
    handover_lines = [line for line in lines if " handover " in line and "n=" in line]
    assert len(handover_lines) == 2, lines
    for line in handover_lines:
        seconds = float(line.rsplit("(", 1)[1].split(" s)")[0])
        assert seconds >= 0.1, line


def test_a_gateway_only_run_warms_the_store_up_with_the_library(tmp_path: Path) -> None:
    """``--tools tenure-serve`` alone: the store warm-up runs through tenure's library
    (the gateway system has no URL of its own before its gateway starts; the warm-up
    used to fail with it and say so)."""
    store = runner.StoreUnderTest("sqlite", f"sqlite://{tmp_path}/bench.db")
    lines: list[str] = []
    rows = runner.run_store(store, runner.Sizes(handovers=2), lines.append,
                            only=("handover",), tools=("tenure-serve",))
    assert any("warm-up: " in line and "(tenure)" in line for line in lines), lines
    assert not any("warm-up failed" in line for line in lines), lines
    assert [(r.system, r.status, len(r.samples)) for r in rows
            if r.measurement == "handover"] == [("tenure via serve", "ok", 2)], rows
