"""ZooKeeper URL options, TTL bounds and the server's negotiated session timeout:
every mistake is a ConfigError that names the input and the fix, and secrets never
appear in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

import tenure
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.adapters.zookeeper_connection import PASSWORD_ENV
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster

pytestmark = pytest.mark.zookeeper

SECRET = "s3cret-do-not-print"


def store(url: str) -> ZooKeeperStore:
    backend, _core = parse_backend_url(url)
    return ZooKeeperStore.from_url(backend)


def test_an_unknown_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(tenure.ConfigError, match=r"unknown option\(s\) session_timeout") as err:
        store("zookeeper://127.0.0.1:2181?session_timeout=3")
    assert "digest_password_file, digest_user, prefix, timeout" in str(err.value)
    assert "the session timeout IS the TTL: use ttl=" in str(err.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("zookeeper://h:1?timeout=0", "timeout='0' is out of range"),
        ("zookeeper://h:1?timeout=soon", "timeout='soon'"),
        ("zookeeper://h:1?prefix=tenure", "option prefix 'tenure' is not a usable"),
        ("zookeeper://h:1?prefix=/a//b", "no empty"),
        ("zookeeper://h:1/zookeeper", "not under /zookeeper"),
        ("zookeeper://h:1?prefix=/", "must not be '/'"),
        ("zookeeper://h:1?digest_user=alice", "digest user 'alice' has no password"),
        ("zookeeper://h:1?digest_user=a:b", "contain no ':'"),
        (f"zookeeper://:{SECRET}@h:1", "digest_user= is empty"),
        ("zookeeper://h:1?digest_password_file=/dev/null", "without a user"),
        (f"zookeeper://bob:{SECRET}@h:1?digest_user=alice", "user given twice"),
    ],
)
def test_bad_options_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(tenure.ConfigError, match=message) as err:
        store(url)
    assert SECRET not in str(err.value)


def test_the_password_comes_from_a_file_or_the_environment_never_into_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "zk.pw"
    secret_file.write_text(SECRET + "\n")
    from_file = store(f"zookeeper://h:1?digest_user=alice&digest_password_file={secret_file}")
    assert from_file.config.auth == ("alice", SECRET)
    assert SECRET not in from_file.description
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    from_env = store("zookeeper://alice@h:1")
    assert from_env.config.auth == ("alice", SECRET)
    monkeypatch.delenv(PASSWORD_ENV)
    from_url = store(f"zookeeper://alice:{SECRET}@h:1")
    assert from_url.config.auth == ("alice", SECRET)
    assert SECRET not in from_url.description
    with pytest.raises(tenure.ConfigError, match="cannot be read"):
        store(f"zookeeper://h:1?digest_user=alice&digest_password_file={tmp_path}/missing")


def test_a_password_given_in_two_places_is_a_config_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "zk.pw"
    secret_file.write_text(SECRET + "\n")
    file_option = f"digest_password_file={secret_file}"
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(tenure.ConfigError, match="given in two places") as err:
        store(f"zookeeper://alice:{SECRET}@h:1?{file_option}")
    assert "the URL" in str(err.value) and file_option in str(err.value)
    assert SECRET not in str(err.value)
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    for url, first, second in [
        (f"zookeeper://alice:{SECRET}@h:1", "the URL", f"${PASSWORD_ENV}"),
        (f"zookeeper://h:1?digest_user=alice&{file_option}", file_option, f"${PASSWORD_ENV}"),
    ]:
        with pytest.raises(tenure.ConfigError, match="given in two places") as err:
            store(url)
        assert first in str(err.value) and second in str(err.value)
        assert SECRET not in str(err.value)


def test_ttls_outside_the_static_bounds_are_refused_before_connecting() -> None:
    # Nothing listens on port 9: the check happens before any connection.
    with pytest.raises(tenure.ConfigError, match=r"0\.4 to 3600 s"):
        tenure.connect("zookeeper://127.0.0.1:9", ttl=0.3)
    with pytest.raises(tenure.ConfigError, match=r"0\.4 to 3600 s"):
        tenure.connect("zookeeper://127.0.0.1:9", ttl=7200)


def test_a_ttl_the_server_would_silently_change_is_a_clear_config_error(
    zookeeper_cluster: Cluster,
) -> None:
    # The lab runs tickTime=200: the server grants 0.4-4 s and caps 10 s at 4 s.
    with tenure.connect(zookeeper_cluster.url, ttl=10) as client:
        with pytest.raises(tenure.ConfigError) as err:
            client.election("zk/ttl-too-long").campaign(timeout=10)
        message = str(err.value)
        assert "TTL 10 s" in message and "session timeout of 4 s" in message
        assert "at most 4 s" in message and "tickTime" in message
        assert client.election("zk/ttl-too-long").leader() is None  # nothing was created
    with tenure.connect(zookeeper_cluster.url, ttl=4) as client:
        lead = client.election("zk/ttl-max").campaign(timeout=10)
        lead.resign()


def test_the_url_path_and_prefix_place_every_node(zookeeper_cluster: Cluster) -> None:
    url = zookeeper_cluster.url + "/apps/one?prefix=/tenure-x"
    with tenure.connect(url, ttl=2) as client:
        lead = client.election("a/b").campaign(timeout=10)
        lead.guarded_write("k/1", b"v")
        assert lead.ticket.key.startswith("/apps/one/tenure-x/elections/a%2Fb/c-")
        assert client.read("k/1") == b"v"
        lead.resign()
    with tenure.connect(zookeeper_cluster.url, ttl=2) as other:
        assert other.read("k/1") is None  # another prefix is another namespace
