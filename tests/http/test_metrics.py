"""tenure.metrics turns core events into Prometheus series and JSON log lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import tenure
from tenure.metrics import JsonLog, Metrics

pytestmark = [pytest.mark.http, pytest.mark.sqlite]


def test_a_won_then_resigned_leadership_shows_in_metrics_and_json_logs(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry).start()
    stream = io.StringIO()
    log = JsonLog(stream).start()
    try:
        with tenure.connect(f"sqlite://{tmp_path}/m.db", ttl=5) as client:
            lead = client.election("m/e").campaign()
            held = registry.get_sample_value("tenure_is_leader", {"election": "m/e"})
            lead.resign()
    finally:
        metrics.close()
        log.close()
    text = generate_latest(registry).decode()
    assert held == 1.0
    assert registry.get_sample_value("tenure_is_leader", {"election": "m/e"}) == 0.0
    assert 'tenure_leadership_transitions_total{election="m/e",kind="won"} 1.0' in text
    assert 'kind="released"' in text and "tenure_campaign_wait_seconds_count" in text
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["campaign_won", "leadership_released"]
    assert all(line["election"] == "m/e" and line["token"] == lead.token for line in lines)
