"""``tenure leader`` and ``tenure observe`` against a real SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tenure

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_leader_prints_the_leader_as_text_and_json(tmp_path: Path) -> None:
    backend = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(backend, candidate_id="node-1") as client:
        assert cli("leader", "--backend", backend, "--election", "a/b").returncode == 3
        lead = client.election("a/b").campaign(value="10.0.0.7:80")
        text = cli("leader", "--backend", backend, "--election", "a/b")
        assert text.returncode == 0
        assert text.stdout.strip() == f"leader node-1 token {lead.token} value 10.0.0.7:80"
        as_json = json.loads(cli("leader", "--backend", backend, "--election", "a/b",
                                 "--json").stdout)
        assert as_json["leader"] == {"election": "a/b", "candidate_id": "node-1",
                                     "value": "10.0.0.7:80", "token": lead.token}
        assert as_json["partition_safe"] is True


def test_observe_prints_each_change_in_token_order(tmp_path: Path) -> None:
    backend = f"sqlite://{tmp_path}/s.db"
    tenure.connect(backend).close()  # creates the store: observe only reads
    observer = subprocess.Popen(
        [sys.executable, "-m", "tenure.cli.main", "observe", "--backend", backend,
         "--election", "obs", "--json", "--timeout", "20"],
        stdout=subprocess.PIPE, text=True,
    )
    assert observer.stdout is not None
    try:
        assert json.loads(observer.stdout.readline())["leader"] is None
        tokens = []
        with tenure.connect(backend) as a, tenure.connect(backend) as b:
            for client in (a, b, a):
                lead = client.election("obs").campaign()
                tokens.append(lead.token)
                seen = json.loads(observer.stdout.readline())["leader"]
                while seen is None:
                    seen = json.loads(observer.stdout.readline())["leader"]
                assert seen["token"] == lead.token
                lead.proclaim("moved")
                assert json.loads(observer.stdout.readline())["leader"]["value"] == "moved"
                lead.resign()
        assert tokens == sorted(tokens)
    finally:
        observer.terminate()
        observer.wait()
