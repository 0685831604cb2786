"""PostgreSQL URLs: every option validated, the password from exactly one of URL, file or
$PGPASSWORD and never shown, libpq parameters as given; against a real server: each
password source, a refused login, and TLS verified with a CA file (verify-full)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tenure
from tenure.adapters.postgres import PostgresStore
from tenure.adapters.postgres_client import parse_url
from tenure.config import parse_backend_url
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.postgres import PostgresCluster

pytestmark = [pytest.mark.postgres]

SECRET = "s3cr3t-Pa55"
PEM = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://h/db?colour=red", r"unknown option\(s\) colour .*known: .*schema"),
        ("postgresql://h/db?password=x", "takes no 'password' option .*password_file=PATH"),
        ("postgresql://h/db?schema=Bad-Name", "schema='Bad-Name' must be a lower-case SQL name"),
        ("postgresql://h/db?sslmode=sometimes", "sslmode='sometimes' must be one of disable"),
        ("postgresql://h/db?sslrootcert=/nonexistent/ca.pem",
         "sslrootcert='/nonexistent/ca.pem' cannot be read"),
        ("postgresql://h/db?sslrootcert=/etc/hostname", "is not a PEM file"),
        ("postgresql://h/db?password_file=/nonexistent/pw",
         "password_file='/nonexistent/pw' cannot be read"),
        ("postgresql://h/db?timeout=soon", "option timeout='soon' is not a duration"),
        ("postgresql://h/db?listen=db@x:1", "listen='db@x:1' must be HOST:PORT"),
        ("postgresql://h/a/b", "path '/a/b' must be /DBNAME"),
        ("postgresql://u@h/db?user=v", "user given twice"),
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
        (True, False, r"the URL and \$PGPASSWORD"),
        (False, True, r"password_file=\S+ and \$PGPASSWORD"),
    ],
)
def test_a_password_given_in_two_places_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_url: bool, in_file: bool, places: str,
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET)
    if not (in_url and in_file):
        monkeypatch.setenv("PGPASSWORD", SECRET)
    auth = f"u:{SECRET}@" if in_url else "u@"
    query = f"?password_file={secret_file}" if in_file else ""
    with pytest.raises(tenure.ConfigError, match=f"given in two places \\({places}") as raised:
        tenure.connect(f"postgresql://{auth}h/db{query}", ttl=1)
    assert SECRET not in str(raised.value)


@pytest.mark.unit
def test_url_parts_become_libpq_parameters_and_the_description_has_no_secret(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    url = (f"postgres://app:{SECRET}@db1,db2:6543/prod?schema=jobs&sslmode=verify-full"
           f"&sslrootcert={ca}&listen=db1:5432")
    config = parse_url(parse_backend_url(url)[0])
    assert config.params == {
        "host": "db1,db2", "port": "5432,6543", "target_session_attrs": "read-write",
        "application_name": "tenure", "dbname": "prod", "user": "app",
        "sslmode": "verify-full", "sslrootcert": str(ca),
    }
    assert config.listen is not None and config.listen["host"] == "db1"
    assert config.password == SECRET and config.schema == "jobs"
    with tenure.connect(url, ttl=1) as client:  # connects lazily: nothing is sent yet
        assert isinstance(client.store, PostgresStore)
        assert SECRET not in client.backend and SECRET not in repr(config)
        assert client.store.limits.min_ttl == 1.0 and client.store.limits.arrival_order


@pytest.mark.unit
def test_listen_none_polls_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "tenure"):
        assert parse_url(parse_backend_url("postgresql://h/db?listen=none")[0]).listen is None
        with tenure.connect("postgresql://h/db?listen=none", ttl=1):
            pass
    assert "listen=none: no LISTEN/NOTIFY; waiters poll" in caplog.text


@pytest.mark.unit
def test_a_ttl_below_the_floor_is_refused() -> None:
    with pytest.raises(tenure.ConfigError, match=r"TTL 0\.5 s is outside .* \(1 to 86400 s\)"):
        tenure.connect("postgresql://h/db", ttl=0.5)


def test_password_from_url_file_or_pgpassword_and_a_refused_login(
    lab: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = lab.start("postgres", password=SECRET)
    address = cluster.nodes[0].client_address
    secret_file = tmp_path / "pg-password"
    secret_file.write_text(SECRET + "\n")
    urls = [
        (f"postgresql://tenure:{SECRET}@{address}/postgres", False),
        (f"postgresql://tenure@{address}/postgres?password_file={secret_file}", False),
        (f"postgresql://tenure@{address}/postgres", True),
    ]
    for number, (url, from_env) in enumerate(urls):
        if from_env:
            monkeypatch.setenv("PGPASSWORD", SECRET)
        with tenure.connect(url, ttl=1) as client:
            assert SECRET not in client.backend
            lead = client.election(f"auth/{number}").campaign(timeout=10)
            assert client.election(f"auth/{number}").leader() == tenure.LeaderInfo(
                f"auth/{number}", lead.candidate_id, b"", lead.token)
            lead.resign()
    monkeypatch.delenv("PGPASSWORD")
    wrong = f"postgresql://tenure:wrong@{address}/postgres"
    # A refused login is an input error: the campaign fails at once, naming the fix.
    with tenure.connect(wrong, ttl=1) as client, pytest.raises(tenure.ConfigError) as err:
        client.election("auth/refused").campaign(timeout=30)
    assert "password authentication failed" in str(err.value)
    assert "check the user, password" in str(err.value) and "wrong" not in str(err.value)


def test_tls_verify_full_with_the_ca_file_and_a_wrong_ca_is_refused(lab: LabFactory) -> None:
    cluster = lab.start("postgres", tls=True)
    assert isinstance(cluster, PostgresCluster)
    base = cluster.url
    with tenure.connect(f"{base}?sslmode=verify-full&sslrootcert={cluster.ca_file}",
                        ttl=1) as client:
        lead = client.election("tls").campaign(timeout=10)
        row = cluster.nodes[0].psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl")
        assert int(row) >= 2  # our statement and renewal connections
        lead.resign()
    strangers = PostgresCluster(1, tls=True)
    try:
        strangers._make_certificates()  # another CA, never started
        with tenure.connect(f"{base}?sslmode=verify-full&sslrootcert={strangers.ca_file}",
                            ttl=1) as client, pytest.raises(tenure.ConfigError) as err:
            client.election("tls").campaign(timeout=30)
        assert "certificate verify failed" in str(err.value)
    finally:
        strangers.close()
