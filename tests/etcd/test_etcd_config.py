"""etcd URL options, secrets, TLS options and TTL bounds: every bad input is a
ConfigError naming it and the fix; secrets never show in descriptions or errors."""

from __future__ import annotations

from pathlib import Path

import pyetcd
import pytest
from pyetcd import etcdrpc

import tenure
from tenure.adapters.etcd import parse_url
from tenure.config import load_settings, parse_backend_url
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.etcd import EtcdCluster, EtcdNode
from tenure.conformance.lab.fixtures import LabFactory, attach_cluster

pytestmark = [pytest.mark.etcd]

SECRET = "s3cret-Pa55"


def config_of(url: str) -> object:
    return parse_url(parse_backend_url(url)[0])


# -- TTL bounds -----------------------------------------------------------------------


def test_a_ttl_below_two_seconds_is_rejected_naming_the_range(etcd_cluster: Cluster) -> None:
    with pytest.raises(tenure.ConfigError, match=r"TTL 1 s is outside .* \(2 to 86400 s\)"):
        tenure.connect(etcd_cluster.url, ttl=1)


def test_a_ttl_that_is_not_whole_seconds_is_rejected_with_a_suggestion(
    etcd_cluster: Cluster,
) -> None:
    with pytest.raises(tenure.ConfigError, match=r"TTL 2\.5 s is not a multiple of 1 s.*e\.g\."):
        tenure.connect(etcd_cluster.url, ttl=2.5)


class _SlowElectionNode(EtcdNode):
    """A member with a 2 s election timeout: its minimum lease TTL is ceil(1.5 x 2) = 3 s."""

    def argv(self) -> list[str]:
        argv = super().argv()
        argv[argv.index("--election-timeout") + 1] = "2000"
        argv[argv.index("--heartbeat-interval") + 1] = "100"
        return argv


class _SlowElectionCluster(EtcdCluster):
    node_class = _SlowElectionNode


def test_a_server_that_would_raise_the_ttl_is_a_config_error_naming_its_minimum(
    request: pytest.FixtureRequest,
) -> None:
    with _SlowElectionCluster(1) as cluster:
        attach_cluster(request, cluster)
        cluster.start()
        with tenure.connect(cluster.url, ttl=2) as client, pytest.raises(
            tenure.ConfigError, match=r"minimum lease TTL is 3 s.*ttl=3"
        ):
            client.election("e").campaign(timeout=10)
        with tenure.connect(cluster.url, ttl=3) as client:
            assert client.election("e").campaign(timeout=10).token > 0


# -- URL options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", r"unknown option\(s\) colour .*known: ttl, drift, prefix, user, "
                       r"password_file, ca, cert, key, timeout"),
        ("password=x", r"no 'password' option.*password_file=PATH"),
        ("prefix=", r"prefix=''"),
        ("prefix=/a%23b", r"without spaces or '#'"),
        ("timeout=0", r"timeout='0' is out of range; use seconds in \(0, 300\]"),
        ("timeout=soon", r"timeout='soon'"),
        ("user=", r"user= is empty"),
        ("user=alice", r"user 'alice' needs a password: give password_file=PATH, set "
                       r"\$TENURE_ETCD_PASSWORD"),
        ("password_file=/nonexistent/pw", r"password_file='/nonexistent/pw' cannot be read"),
        ("ca=/nonexistent/ca.pem", r"ca='/nonexistent/ca.pem' cannot be read"),
    ],
)
def test_bad_url_options_are_config_errors_naming_the_option(query: str, message: str) -> None:
    with pytest.raises(tenure.ConfigError, match=message):
        config_of(f"etcd://127.0.0.1:2379?{query}")


def test_a_path_is_refused_pointing_at_the_prefix_option() -> None:
    with pytest.raises(tenure.ConfigError, match=r"take no path.*\?prefix=/x"):
        config_of("etcd://127.0.0.1:2379/x")


def test_a_user_given_twice_differently_is_refused() -> None:
    with pytest.raises(tenure.ConfigError, match="given twice"):
        config_of(f"etcd://alice:{SECRET}@127.0.0.1:2379?user=bob")


def test_a_password_without_a_user_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    with pytest.raises(tenure.ConfigError, match="no user"):
        config_of(f"etcd://127.0.0.1:2379?password_file={secret}")


def test_tls_options_need_readable_pem_files_and_cert_goes_with_key(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    with pytest.raises(tenure.ConfigError, match=r"ca=.* is not a PEM file"):
        config_of(f"etcd://127.0.0.1:2379?ca={not_pem}")
    pem = tmp_path / "c.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    with pytest.raises(tenure.ConfigError, match=r"cert= needs key= too"):
        config_of(f"etcd://127.0.0.1:2379?cert={pem}")
    with pytest.raises(tenure.ConfigError, match=r"key= needs cert= too"):
        config_of(f"etcd://127.0.0.1:2379?key={pem}")


def test_the_password_comes_from_a_file_the_environment_or_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    from_file = parse_url(parse_backend_url(f"etcd://h:1?user=u&password_file={secret}")[0])
    assert from_file.password == SECRET

    monkeypatch.setenv("TENURE_ETCD_PASSWORD", SECRET)
    from_env = parse_url(parse_backend_url("etcd://u@h:1")[0])
    assert (from_env.user, from_env.password) == ("u", SECRET)
    monkeypatch.delenv("TENURE_ETCD_PASSWORD")

    toml = tmp_path / "tenure.toml"
    toml.write_text(
        f'backend = "etcd://h:1"\n[options]\nuser = "u"\npassword_file = "{secret}"\n'
    )
    settings = load_settings(config_file=toml)
    from_toml = parse_url(settings.url)
    assert (from_toml.user, from_toml.password) == ("u", SECRET)
    for config in (from_file, from_env, from_toml):
        assert SECRET not in repr(config) and SECRET not in config.description


def test_a_password_given_in_two_places_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    with pytest.raises(tenure.ConfigError, match=r"two places \(the URL and password_file=") as e:
        config_of(f"etcd://u:{SECRET}@127.0.0.1:2379?password_file={secret}")
    assert SECRET not in str(e.value)
    monkeypatch.setenv("TENURE_ETCD_PASSWORD", SECRET)
    with pytest.raises(tenure.ConfigError, match=r"two places \(the URL and \$TENURE_ETCD_PASS"):
        config_of(f"etcd://u:{SECRET}@127.0.0.1:2379")
    with pytest.raises(
        tenure.ConfigError, match=r"two places \(password_file=.* and \$TENURE_ETCD_PASSWORD\)"
    ) as e:
        config_of(f"etcd://127.0.0.1:2379?user=u&password_file={secret}")
    assert SECRET not in str(e.value)


def test_a_password_in_the_url_never_shows_in_the_description() -> None:
    config = parse_url(parse_backend_url(f"etcd://u:{SECRET}@127.0.0.1:1")[0])
    assert config.description == "etcd://u:***@127.0.0.1:1"


# -- authentication against a real server ---------------------------------------------


def enable_auth(cluster: Cluster) -> None:
    host, port = cluster.nodes[0].client_address.rsplit(":", 1)
    admin = pyetcd.MultiEndpointEtcd3Client(
        [pyetcd.Endpoint(host, int(port), secure=False)], timeout=5
    )
    admin.authstub.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password=SECRET), 5)
    admin.authstub.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"), 5)
    admin.authstub.AuthEnable(etcdrpc.AuthEnableRequest(), 5)
    admin.close()


def test_user_and_password_file_authenticate_and_a_wrong_password_is_a_config_error(
    lab: LabFactory, tmp_path: Path
) -> None:
    cluster = lab.start("etcd")
    enable_auth(cluster)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(SECRET + "\n")
    bad.write_text("wrong\n")

    url = f"{cluster.url}?user=root&password_file={good}"
    with tenure.connect(url, ttl=2) as client, tenure.connect(url, ttl=2) as other:
        assert SECRET not in client.backend
        lead = client.election("auth").campaign(value=b"v", timeout=10)
        lead.guarded_write("auth/data", b"x")
        assert other.read("auth/data") == b"x"
        assert other.election("auth").leader() == tenure.LeaderInfo(
            "auth", client.candidate_id, b"v", lead.token)
        observed = next(other.election("auth").observe(timeout=5))
        assert observed is not None and observed.token == lead.token

    with pytest.raises(tenure.ConfigError, match="refused user 'root'") as refused:
        tenure.connect(f"{cluster.url}?user=root&password_file={bad}", ttl=2)
    assert "wrong" not in str(refused.value) and SECRET not in str(refused.value)

    # Missing credentials are an input error: the campaign fails at once, naming the fix.
    with tenure.connect(cluster.url, ttl=2) as anonymous, pytest.raises(
        tenure.ConfigError, match="give a user"
    ):
        anonymous.election("auth").campaign(timeout=30)
