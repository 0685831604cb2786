"""`tenure lab up/status/down`: a real cluster in one command, foreground and detached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tenure.conformance.lab.cluster import wait_until

pytestmark = [pytest.mark.lab, pytest.mark.cli, pytest.mark.redis]

# Runs only the `lab` subcommand, so these tests do not depend on the other subcommands.
RUNNER = """
import argparse, sys
from tenure.cli import lab
parser = argparse.ArgumentParser(prog="tenure")
lab.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
"""


def tenure(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))


def ping(url: str) -> bool:
    for address in url.removeprefix("redis://").split(","):
        host, port = address.rsplit(":", 1)
        if not redis.Redis(host=host, port=int(port), socket_timeout=2).ping():
            return False
    return True


def test_up_prints_a_working_url_and_ctrl_c_stops_the_cluster(env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "lab", "up", "redis", "--nodes",
                             "3", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            lines.append(line)
        info = json.loads("".join(lines))
        assert info["url"].startswith("redis://127.0.0.1:")
        assert len(info["nodes"]) == 3
        assert ping(info["url"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for node in info["nodes"]:
            wait_until(lambda n=node: not Path(f"/proc/{n['pid']}").exists(), 10,
                       f"{node['name']} to stop after Ctrl-C")
    finally:
        proc.kill()
        proc.wait()


def test_detached_lab_is_listed_by_status_and_stopped_by_down(env: dict[str, str]) -> None:
    up = tenure("lab", "up", "redis", "--detach", "--json", env=env)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert ping(info["url"])

        status = tenure("lab", "status", "--json", env=env)
        labs = json.loads(status.stdout)
        assert [lab["url"] for lab in labs] == [info["url"]]
        assert all(node["running"] for node in labs[0]["nodes"])

        again = tenure("lab", "up", "redis", "--detach", env=env)
        assert again.returncode == 1 and "already up" in again.stderr
    finally:
        down = tenure("lab", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "redis stopped" in down.stdout
    pids = [node["pid"] for node in info["nodes"]] + [info["supervisor_pid"]]
    wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), 10,
               "the detached lab's processes to stop")
    assert "no detached lab" in tenure("lab", "status", env=env).stdout


def test_down_names_an_unknown_lab(env: dict[str, str]) -> None:
    result = tenure("lab", "down", "nope", env=env)
    assert result.returncode == 1
    assert "no detached lab named 'nope'" in result.stderr
