"""Redis URLs: every option validated, secrets from URL, file or environment and never
shown, TLS options only with rediss://, an odd number of instances; and AUTH/ACL
against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

import tenure
from tenure.adapters.redis import RedisStore
from tenure.adapters.redis_quorum import PASSWORD_ENV
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis]

SECRET = "s3cr3t-Pa55"
PEM = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"


def store(url: str) -> RedisStore:
    client = tenure.connect(url, ttl=1)
    assert isinstance(client.store, RedisStore)
    return client.store


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:1?colour=red", r"unknown option\(s\) colour .*known: .*prefix"),
        ("redis://h:1?password=x", "takes no 'password' option .*password_file=PATH"),
        ("redis://h:1,h:2", "use an odd number"),
        ("redis://h:1,h:1,h:2", "names an instance twice"),
        ("redis://h:1?timeout=soon", "option timeout='soon' is not a duration"),
        ("redis://h:1?timeout=0", "timeout='0' is out of range"),
        ("redis://h:1?prefix=", "option prefix"),
        ("redis://h:1/zero", "must be a database number"),
        ("redis://h:1?ca=/etc/hostname", "need TLS; use rediss://"),
        ("rediss://h:1?ca=/nonexistent/ca.pem", "ca='/nonexistent/ca.pem' cannot be read"),
        ("rediss://h:1?ca=/etc/hostname", "ca='/etc/hostname' is not a PEM file"),
        ("redis://h:1?password_file=/nonexistent/pw",
         "password_file='/nonexistent/pw' cannot be read"),
    ],
)
def test_bad_urls_are_config_errors_naming_the_input(url: str, message: str) -> None:
    with pytest.raises(tenure.ConfigError, match=message):
        tenure.connect(url, ttl=1)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("in_url", "in_file", "places"),
    [
        (True, True, r"the URL and password_file="),
        (True, False, rf"the URL and \${PASSWORD_ENV}"),
        (False, True, rf"password_file=\S+ and \${PASSWORD_ENV}"),
    ],
)
def test_a_password_given_in_two_places_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_url: bool, in_file: bool, places: str,
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET)
    if not (in_url and in_file):
        monkeypatch.setenv(PASSWORD_ENV, SECRET)
    auth = f"u:{SECRET}@" if in_url else ""
    query = f"?password_file={secret_file}" if in_file else ""
    with pytest.raises(tenure.ConfigError, match=f"given in two places \\({places}") as raised:
        tenure.connect(f"redis://{auth}h:1{query}", ttl=1)
    assert "one place only" in str(raised.value)
    assert SECRET not in str(raised.value)


@pytest.mark.unit
def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text(PEM)
    with pytest.raises(tenure.ConfigError, match=r"cert= needs key= too.* go together"):
        tenure.connect(f"rediss://h:1?cert={tmp_path}/c.pem", ttl=1)


@pytest.mark.unit
def test_limits_single_instance_is_not_partition_safe_three_are() -> None:
    one, three = store("redis://h:1"), store("redis://h:1,h:2,h:3")
    assert not one.limits.partition_safe and "not partition-safe" in one.limits.warning
    assert three.limits.partition_safe and three.limits.warning == ""
    assert (three.n, three.majority) == (3, 2)
    assert one.limits.arrival_order and three.limits.arrival_order  # the queue


@pytest.mark.unit
def test_tls_options_reach_the_client(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text(PEM)
    s = store(f"rediss://h:1?ca={tmp_path}/ca.pem&cert={tmp_path}/c.pem&key={tmp_path}/k.pem")
    kwargs = s._quorum.instances[0].client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == f"{tmp_path}/ca.pem"
    assert kwargs["ssl_certfile"] == f"{tmp_path}/c.pem"
    assert kwargs["ssl_cert_reqs"] == "required"


def _protect(address: str) -> None:
    """Requires a password for the default user and adds an ACL user ``app``."""
    host, port = address.rsplit(":", 1)
    admin = redis.Redis(host=host, port=int(port))
    admin.acl_setuser("app", enabled=True, passwords=[f"+{SECRET}"], keys=["*"],
                      channels=["*"], commands=["+@all"])
    admin.config_set("requirepass", SECRET)


def test_auth_from_url_file_or_environment_and_never_shown(
    lab: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = lab.start("redis").nodes[0].client_address
    _protect(address)
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(SECRET + "\n")
    urls = [  # the password from exactly one place each
        (f"redis://app:{SECRET}@{address}", False),  # ACL user and password in the URL
        (f"redis://:{SECRET}@{address}", False),  # default user (requirepass)
        (f"redis://app@{address}?password_file={secret_file}", False),
        (f"redis://{address}", True),  # TENURE_REDIS_PASSWORD
    ]
    for number, (url, from_env) in enumerate(urls):
        if from_env:
            monkeypatch.setenv(PASSWORD_ENV, SECRET)
        with tenure.connect(url, ttl=1) as client:
            assert SECRET not in client.backend
            lead = client.election(f"auth/{number}").campaign(timeout=10)
            assert client.election(f"auth/{number}").leader() is not None
            lead.resign()
    monkeypatch.delenv(PASSWORD_ENV)
    for url in (f"redis://app:wrong-{SECRET}@{address}", f"redis://{address}"):
        # Refused credentials are an input error: the campaign fails at once, naming the fix.
        with tenure.connect(url, ttl=1) as client, pytest.raises(tenure.ConfigError) as err:
            client.election("auth/refused").campaign(timeout=30)
        assert "credentials" in str(err.value) and "password_file" in str(err.value)
        assert SECRET not in str(err.value) and SECRET not in client.backend
    assert SECRET not in caplog.text
