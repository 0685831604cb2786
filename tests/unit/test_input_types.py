"""Wrong types and unusable paths are TenureErrors naming the input; secrets are
redacted at the source; the library logs nothing unless the application says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tenure
from tenure.cli.common import non_negative_seconds, ttl_seconds
from tenure.config import load_settings, parse_backend_url, redact, redact_url, url_secrets

pytestmark = pytest.mark.unit

SECRET = "hunter2"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("ttl = true", "'ttl' in config file"),
        ("ttl = false", "a boolean"),
        ("drift = true", "'drift' in config file"),
        ("ttl = [1]", "not list"),
        ("ttl = \"soon\"", "'soon' is not a number of seconds"),
    ],
)
def test_wrong_types_in_the_config_file_are_config_errors(
    toml: str, message: str, tmp_path: Path
) -> None:
    config = tmp_path / "tenure.toml"
    config.write_text(f'backend = "sqlite://{tmp_path}/s.db"\n{toml}\n')
    with pytest.raises(tenure.ConfigError, match=message):
        load_settings(config_file=config)


def test_duration_strings_in_the_config_file_and_url_are_seconds(tmp_path: Path) -> None:
    config = tmp_path / "tenure.toml"
    config.write_text(f'backend = "sqlite://{tmp_path}/s.db"\nttl = "1500ms"\n')
    assert load_settings(config_file=config).ttl == 1.5
    assert load_settings(f"sqlite://{tmp_path}/s.db?ttl=10s").ttl == 10.0
    assert ttl_seconds("10") == ttl_seconds("10s") == 10.0
    assert ttl_seconds("500ms") == 0.5
    assert non_negative_seconds("0") == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": True}, "ttl is True, a boolean"),
        ({"ttl": "5"}, "ttl must be a number .* not str '5'"),
        ({"ttl": [5]}, "not list"),
        ({"drift": False}, "drift must be a number, not bool"),
        ({"drift": "0.1"}, "drift must be a number, not str"),
        ({"ttl": float("nan")}, "finite"),
    ],
)
def test_wrong_types_passed_to_connect_are_config_errors(
    kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(tenure.ConfigError, match=message):
        tenure.connect(f"sqlite://{tmp_path}/s.db", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "s.db").exists()  # refused before anything was opened


def test_a_backend_url_that_is_not_a_string_is_a_config_error() -> None:
    with pytest.raises(tenure.ConfigError, match="must be a str"):
        tenure.connect(b"sqlite:///tmp/x.db")  # type: ignore[arg-type]


@pytest.mark.sqlite
@pytest.mark.parametrize("timeout", ["5", True, -1, float("nan")])
def test_a_campaign_timeout_of_the_wrong_type_is_a_config_error(
    timeout: object, tmp_path: Path
) -> None:
    with (tenure.connect(f"sqlite://{tmp_path}/s.db") as client,
          pytest.raises(tenure.ConfigError, match="campaign timeout")):
        client.election("e").campaign(timeout=timeout)  # type: ignore[arg-type]


def test_a_fencing_guard_on_an_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("not SQLite" * 100)
    for path in (tmp_path / "missing" / "fence.db", tmp_path, not_a_database):
        with pytest.raises(tenure.ConfigError, match=f"fencing file '{path}'.*writable"):
            tenure.FencingGuard(path)
    with pytest.raises(tenure.ConfigError, match="str or Path, not int"):
        tenure.FencingGuard(3)  # type: ignore[arg-type]


def test_a_fencing_file_that_fails_later_raises_store_unavailable(tmp_path: Path) -> None:
    guard = tenure.FencingGuard(tmp_path / "fence.db")
    guard.check("r", 2)
    assert guard._db is not None
    guard._db.execute("DROP TABLE fences")  # the file no longer holds what it should
    with pytest.raises(tenure.StoreUnavailable, match="fencing file"):
        guard.check("r", 3)
    with pytest.raises(tenure.StoreUnavailable, match="fencing file"):
        guard.highest("r")
    guard.close()


@pytest.mark.parametrize(
    "url",
    [
        f"etcd://user:{SECRET}@h:0",
        f"etcd://user:{SECRET}@h:2379#x",
        f"etcd://user:{SECRET}@h:2379?a",
        f"etcd://user:{SECRET}@:2379",
        f"user:{SECRET}@h:2379",
        f"etcd://user:{SECRET}@h:1,[::1:2",
        f"migrate+source://?source=etcd%3A%2F%2Fu%3A{SECRET}%40h%3A2379#f",
    ],
)
def test_config_errors_never_quote_a_password(url: str) -> None:
    with pytest.raises(tenure.ConfigError) as info:
        parse_backend_url(url)
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)


def test_redaction_of_urls_and_texts() -> None:
    nested = f"migrate+source://?source=etcd%3A%2F%2Fu%3A{SECRET}%40h%3A2379&target=sqlite%3A%2F%2Fx"
    assert redact_url(f"redis://:{SECRET}@h:1/0") == "redis://:***@h:1/0"
    assert SECRET not in redact_url(nested)
    assert SECRET not in redact(nested)
    assert SECRET not in parse_backend_url(nested)[0].redacted
    text = f"a etcd://u:{SECRET}@h:1,redis://:{SECRET}@h:2 and zk://h:2181 b"
    assert redact(text) == "a etcd://u:***@h:1,redis://:***@h:2 and zk://h:2181 b"
    assert redact(f"the password {SECRET} was refused", (SECRET,)) == (
        "the password *** was refused"
    )
    assert set(url_secrets(nested)) == {SECRET}
    assert url_secrets("sqlite:///tmp/a@b.db") == []
    backend = parse_backend_url(f"etcd://u:{SECRET}@h:1")[0]
    assert backend.secrets == (SECRET,) and SECRET not in repr(backend)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_library_logs_nothing_unless_the_application_configures_logging() -> None:
    result = run_python("import logging, tenure\n"
                        "logging.getLogger('tenure.session').warning('session expired')\n"
                        "logging.getLogger('tenure').error('leadership lost')\n")
    assert (result.returncode, result.stderr) == (0, "")
    configured = run_python("import logging, tenure\nlogging.basicConfig()\n"
                            "logging.getLogger('tenure').warning('leadership lost')\n")
    assert "leadership lost" in configured.stderr


def test_the_command_line_shows_tenure_warnings_redacted() -> None:
    result = run_python(
        "import logging\nfrom tenure.cli import common\ncommon.configure_logging()\n"
        f"logging.getLogger('tenure.x').warning('cannot reach %s', 'etcd://u:{SECRET}@h:1')\n"
        "logging.getLogger('kazoo.client').warning('Connection dropped')\n"
        "logging.getLogger('tenure').info('not shown')\n"
    )
    assert result.stderr == "tenure: warning: cannot reach etcd://u:***@h:1\n"
