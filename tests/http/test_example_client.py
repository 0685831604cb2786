"""docs/examples/leader-job.sh (POSIX sh + curl) runs its job only while leader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from httpkit import Gateway, call

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "leader-job.sh"


def test_the_shell_client_runs_the_job_as_leader_with_its_token_then_resigns(
    tmp_path: Path,
) -> None:
    with Gateway.start(["--backend", f"sqlite://{tmp_path}/s.db", "--ttl", "1"]) as gw:
        done = subprocess.run(
            [str(SCRIPT), "jobs/example", "--", "sh", "-c",
             'echo "token=$TENURE_FENCING_TOKEN"; sleep 1'],
            capture_output=True, text=True, timeout=60, env={"TENURE_URL": gw.url,
                                                               "PATH": "/usr/bin:/bin"},
        )
        status, answer = call("GET", f"{gw.url}/v1/elections/jobs/example/leader?fresh=true")
    assert done.returncode == 0, done.stderr
    assert "token=1" in done.stdout
    assert status == 200 and answer["leader"] is None
