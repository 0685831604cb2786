"""How the tenure command fails: one line, the right exit status, no traceback, no
secret, and nothing created by a command that only reads.

No store server is needed: unreachable stores are closed ports or a listener that
never answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cli, pytest.mark.unit]

SCHEMES = ("etcd", "zookeeper", "consul", "redis")
COMMANDS = ("leader", "run", "observe", "contenders")
SECRET = "hunter2"


def tenure_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tenure", *args]


def command_args(command: str, backend: str) -> list[str]:
    args = [command, "--backend", backend, "--election", "e"]
    return [*args, "--", "true"] if command == "run" else args


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), **extra)
    return env


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A listener that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(60)
        yield server


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_unreachable_store_is_one_line_and_exit_1_for_every_command(
    scheme: str, closed_port: int, tmp_path: Path
) -> None:
    backend = f"{scheme}://127.0.0.1:{closed_port}?timeout=1"
    processes = {
        command: subprocess.Popen(
            tenure_argv(*command_args(command, backend)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path), cwd=tmp_path,
        )
        for command in COMMANDS
    }
    for command, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1, (command, err)
        assert out == "", (command, out)
        lines = err.splitlines()
        assert len(lines) == 1, (command, err)
        assert lines[0].startswith(f"tenure {command}: error: "), (command, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("command", ("observe", "leader", "run"))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_ctrl_c_while_connecting_is_one_line_and_exit_130(
    scheme: str, command: str, silent_server: socket.socket, tmp_path: Path
) -> None:
    port = silent_server.getsockname()[1]
    process = subprocess.Popen(
        tenure_argv(*command_args(command, f"{scheme}://127.0.0.1:{port}?timeout=30")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path),
        cwd=tmp_path,
    )
    try:
        connection, _ = silent_server.accept()  # the command is now connecting
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert (process.returncode, err) == (130, f"tenure {command}: interrupted\n"), err
    assert out == ""


@pytest.mark.sqlite
def test_ctrl_c_while_observing_is_one_line_and_exit_130(tmp_path: Path) -> None:
    import tenure

    backend = f"sqlite://{tmp_path}/s.db"
    tenure.connect(backend).close()
    process = subprocess.Popen(
        tenure_argv("observe", "--backend", backend, "--election", "e"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path),
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        assert process.stdout.readline() == "no leader\n"  # observing now
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr.read() == "tenure observe: interrupted\n"
    finally:
        process.kill()
        process.wait()


def secret_cases(port: int, tmp_path: Path) -> list[tuple[list[str], dict[str, str]]]:
    url = f"etcd://user:{SECRET}@127.0.0.1"
    config = tmp_path / "tenure.toml"
    config.write_text(f'backend = "etcd://user:{SECRET}@h:0"\n')
    nested = (f"migrate+source://?source=etcd%3A%2F%2Fu%3A{SECRET}%40h%3A0"
              f"&target=sqlite%3A%2F%2F{tmp_path}%2Ft.db")
    return [
        (["leader", "--backend", f"{url}:0", "--election", "e"], {}),  # bad port
        (["leader", "--backend", f"{url}:99999", "--election", "e"], {}),
        (["leader", "--backend", f"{url}:2379?bogus=1", "--election", "e"], {}),  # bad query
        (["leader", "--backend", f"{url}:2379?novalue", "--election", "e"], {}),
        (["leader", "--backend", f"{url}:2379#frag", "--election", "e"], {}),
        (["run", "--backend", f"{url}:0", "--election", "e", "--", "true"], {}),
        (["leader", "--election", "e"], {"TENURE_BACKEND": f"{url}:0"}),  # bad env
        (["leader", "--election", "e"], {"TENURE_BACKEND": f"user:{SECRET}@h:2379"}),
        (["observe", "--election", "e"], {"TENURE_BACKEND": f"{url}:{port}?timeout=1"}),
        (["contenders", "--election", "e", "--config", str(config)], {}),
        (["leader", "--election", "e"], {"TENURE_BACKEND": nested}),
        (["leader", "--backend", f"redis://:{SECRET}@127.0.0.1:{port}", "--election", "e"],
         {"TENURE_LOG_LEVEL": "DEBUG"}),
        (["leader", "--backend", f"etcd://user:{SECRET}@127.0.0.1:{port}?timeout=1",
          "--election", "e"], {"TENURE_LOG_LEVEL": "DEBUG"}),
        (["migrate", "status", "--from", f"{url}:0", "--to", f"sqlite://{tmp_path}/t.db",
          "--election", "e"], {}),
        (["leader", f"{url}:2379", "--election", "e"], {}),  # an argparse error
        (["serve", "--backend", f"{url}:2379"], {}),
    ]


def test_secrets_never_appear_in_cli_output(closed_port: int, tmp_path: Path) -> None:
    for args, extra in secret_cases(closed_port, tmp_path):
        result = subprocess.run(
            tenure_argv(*args), capture_output=True, text=True, timeout=60, check=False,
            env=clean_env(tmp_path, **extra), cwd=tmp_path,
        )
        assert result.returncode in (1, 2), (args, result.stderr)
        assert "error" in result.stderr, (args, result.stderr)
        assert SECRET not in result.stdout + result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_run_reports_errors_under_its_own_name(tmp_path: Path) -> None:
    result = subprocess.run(
        tenure_argv("run", "--election", "e", "--config", str(tmp_path / "none.toml"),
                    "--", "true"),
        capture_output=True, text=True, timeout=60, check=False, env=clean_env(tmp_path),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("tenure run: error: config file "), result.stderr


READ_ONLY = [["leader", "--election", "e"], ["observe", "--election", "e", "--timeout", "0"],
             ["contenders", "--election", "e"]]
MIGRATE = [["migrate", "status", "--from", "@", "--to", "@", "--election", "e"],
           ["migrate", "advance", "--from", "@", "--to", "@", "--election", "e", "target"]]


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("args", "how"),
    [(args, how) for args in READ_ONLY for how in ("--backend", "TENURE_BACKEND", "default")]
    + [(args, "--from/--to") for args in MIGRATE],
)
def test_read_only_commands_refuse_a_missing_sqlite_store_and_create_nothing(
    args: list[str], how: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "s.db"
    url = f"sqlite://{missing}"
    env = clean_env(tmp_path)
    if how == "--from/--to":
        args = [url if a == "@" else a for a in args]
    elif how == "--backend":
        args = [args[0], "--backend", url, *args[1:]]
    elif how == "TENURE_BACKEND":
        env["TENURE_BACKEND"] = url
    else:
        missing = tmp_path / "state" / "tenure" / "default.db"
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run(tenure_argv(*args), capture_output=True, text=True, timeout=60,
                            check=False, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"no tenure store at {missing}" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no directory, database or bell file


@pytest.mark.sqlite
def test_read_only_commands_refuse_a_file_that_is_not_a_tenure_store(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    content = other.read_bytes()
    result = subprocess.run(
        tenure_argv("leader", "--backend", f"sqlite://{other}", "--election", "e"),
        capture_output=True, text=True, timeout=60, check=False, env=clean_env(tmp_path),
    )
    assert result.returncode == 1
    assert f"no tenure store at {other}" in result.stderr
    assert other.read_bytes() == content
