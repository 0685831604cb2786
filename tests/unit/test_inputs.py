"""Bad input at every API entry point gets a clear error naming the input, and leaves
nothing half-written in the store."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tenure
from tenure.config import load_settings, parse_backend_url
from tenure.names import check_candidate_id, check_election_name, check_value

pytestmark = pytest.mark.unit

VALID_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def is_valid_name(name: str) -> bool:
    if not 1 <= len(name) <= 200:
        return False
    segments = name.split("/")
    return all(VALID_SEGMENT.fullmatch(s) and s != ".." for s in segments)


@given(st.text(max_size=220))
@settings(max_examples=400)
def test_election_names_are_accepted_exactly_when_the_rules_allow(name: str) -> None:
    if is_valid_name(name):
        assert check_election_name(name) == name
    else:
        with pytest.raises(tenure.InvalidNameError) as info:
            check_election_name(name)
        assert isinstance(info.value, ValueError)
        assert "election name" in str(info.value)


@given(st.text(alphabet="abc/.-_", min_size=1, max_size=30))
def test_names_built_from_allowed_characters_fail_only_on_structure(name: str) -> None:
    if is_valid_name(name):
        check_election_name(name)
    else:
        with pytest.raises(tenure.InvalidNameError, match="segment"):
            check_election_name(name)


def test_the_bad_character_is_named() -> None:
    with pytest.raises(tenure.InvalidNameError, match=r"invalid character ' ' at position 3"):
        check_election_name("abc def")


@pytest.mark.parametrize("name", [None, 3, b"bytes"])
def test_non_string_names_are_rejected(name: object) -> None:
    with pytest.raises(tenure.InvalidNameError, match="must be a str"):
        check_election_name(name)


@given(st.binary(max_size=5000))
def test_values_up_to_the_limit_pass_and_larger_ones_name_the_limit(value: bytes) -> None:
    if len(value) <= 4096:
        assert check_value(value) == value
    else:
        with pytest.raises(tenure.InvalidValueError, match="limit is 4096 bytes"):
            check_value(value)


@pytest.mark.parametrize("candidate_id", ["", "has space", "x" * 201, "tab\t", 5])
def test_bad_candidate_ids_are_rejected(candidate_id: object) -> None:
    with pytest.raises(tenure.InvalidValueError, match="candidate id"):
        check_candidate_id(candidate_id)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("localhost:2379", "has no scheme"),
        ("mongo://x:1", "unknown backend scheme 'mongo'"),
        ("etcd://", "names no host"),
        ("etcd://h:99999", "invalid port '99999'"),
        ("etcd://h:abc", "invalid port 'abc'"),
        ("etcd://h:1?ttl=1&ttl=2", "given twice"),
        ("etcd://h:1?ttl=abc", "not a number"),
        ("etcd://h:1?ttl=-3", "positive"),
        ("etcd://h:1?drift=0.9", "drift"),
        ("sqlite://", "names no database file"),
        ("sqlite:///tmp/x.db?color=red", "unknown option(s) color"),
        ("sqlite:///tmp/x.db?ttl=0.1", "TTL 0.1 s is outside"),
        ("sqlite:///tmp/x.db?ttl=1e9", "outside"),
    ],
)
def test_bad_backend_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(tenure.ConfigError) as info:
        tenure.connect(url)
    assert message in str(info.value)


def test_secrets_are_redacted_from_urls() -> None:
    url, _ = parse_backend_url("redis://user:s3cret@h:1")
    assert "s3cret" not in url.redacted and "s3cret" not in repr(url)


def test_config_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tenure.toml"
    config.write_text(f'backend = "sqlite://{tmp_path}/c.db"\nttl = 3\n')
    monkeypatch.delenv("TENURE_BACKEND", raising=False)
    settings = load_settings(config_file=str(config))
    assert settings.url.path == f"{tmp_path}/c.db" and settings.ttl == 3
    monkeypatch.setenv("TENURE_BACKEND", f"sqlite://{tmp_path}/env.db?ttl=4")
    settings = load_settings(config_file=str(config))
    assert settings.url.path == f"{tmp_path}/env.db" and settings.ttl == 4
    config.write_text('backend = "sqlite:///x.db"\ncolour = "red"\n')
    with pytest.raises(tenure.ConfigError, match=r"unknown key.*colour"):
        load_settings(config_file=str(config))
    config.write_text("backend = [")
    with pytest.raises(tenure.ConfigError, match="cannot be read"):
        load_settings(config_file=str(config))
    with pytest.raises(tenure.ConfigError, match="does not exist"):
        load_settings(config_file=str(tmp_path / "missing.toml"))


def rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])


def test_failed_calls_leave_nothing_in_the_store(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with tenure.connect(f"sqlite://{db}") as client:
        election = client.election("e")
        with pytest.raises(tenure.InvalidValueError):
            election.campaign(value=b"x" * 5000)
        with pytest.raises(tenure.InvalidValueError):
            election.campaign(value=3)  # type: ignore[arg-type]
        assert rows(db) == 0
        lead = election.campaign()
        with pytest.raises(tenure.UsageError, match="already campaigns"):
            election.campaign(timeout=0)
        assert rows(db) == 1
        with pytest.raises(tenure.InvalidNameError):
            lead.guarded_write("bad key", b"v")
        with pytest.raises(tenure.InvalidValueError):
            lead.proclaim(b"x" * 5000)
        assert lead.value == b"" and election.leader() is not None
        assert election.leader().value == b""  # type: ignore[union-attr]
        with pytest.raises(tenure.ConfigError, match="campaign timeout"):
            client.election("other").campaign(timeout=-1)
        assert rows(db) == 1


def test_misuse_after_resign(tmp_path: Path) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/s.db") as client:
        election = client.election("e")
        lead = election.campaign()
        lead.resign()
        lead.resign()  # no-op
        election.resign()  # no-op when not leader
        with pytest.raises(tenure.NotLeader, match="resigned"):
            lead.ensure()  # a resign is not a loss
        with pytest.raises(tenure.NotLeader):
            lead.proclaim("v")
        with pytest.raises(tenure.NotLeader):
            lead.guarded_write("k", "v")
        assert election.leader() is None
