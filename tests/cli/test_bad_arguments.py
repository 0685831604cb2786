"""Every bad CLI argument exits 2 with a message naming the input and the fix, and
writes nothing to the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cli, pytest.mark.unit]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["leader", "--election", "a b"], "invalid character ' '"),
        (["leader", "--election", "a//b"], "empty path segment"),
        (["leader", "--election", "x/../y"], "'..'"),
        (["leader", "--election", "e" * 201], "limit is 200"),
        (["leader", "--backend", "mongo://h:1", "--election", "e"], "unknown backend scheme"),
        (["leader", "--backend", "etcd://h:0", "--election", "e"], "invalid port '0'"),
        (["leader", "--backend", "nourl", "--election", "e"], "has no scheme"),
        (["leader", "--backend", "sqlite:///tmp/x.db?bogus=1", "--election", "e"],
         "unknown option(s) bogus"),
        (["observe", "--election", "e", "--timeout", "-1"], "must be a finite number"),
        (["run", "--election", "e", "--ttl", "abc", "--", "true"], "is not a number"),
        (["run", "--election", "e", "--ttl", "0", "--", "true"], "positive number"),
        (["run", "--election", "e", "--ttl", "0.1", "--", "true"], "TTL 0.1 s is outside"),
        (["run", "--election", "e", "--grace", "x", "--", "true"], "finite number of seconds"),
        (["run", "--election", "e", "--timeout", "nan", "--", "true"], "finite number"),
        (["run", "--election", "e", "--value", "v" * 5000, "--", "true"], "limit is 4096"),
        (["run", "--election", "e"], "no command given"),
        (["run", "--election", "e", "--config", "/nonexistent.toml", "--", "true"],
         "does not exist"),
        (["leader"], "--election"),
        (["frobnicate"], "invalid choice"),
        (["lab", "up", "mongo"], "invalid choice"),
        (["demo", "--ttl", "-2"], "positive number"),
    ],
)
def test_bad_arguments_exit_2_naming_the_input(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store.db"
    monkeypatch.setenv("TENURE_BACKEND", f"sqlite://{store}")
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    if store.exists():
        import sqlite3

        with sqlite3.connect(store) as db:
            assert db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 0
