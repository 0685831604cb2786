"""rediss:// against a real Redis serving TLS only, with client certificates required:
the CA, cert and key options reach the connection; without a client cert it is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_kit import make_certificates

import tenure
from tenure.conformance.lab.cluster import eventually, find_binary, free_port
from tenure.conformance.lab.processes import spawn

pytestmark = [pytest.mark.redis]


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    make_certificates(tmp_path)
    port = free_port()
    process = spawn("redis-tls", [
        find_binary("redis-server", "TENURE_REDIS_BIN"), "--port", "0", "--bind", "127.0.0.1",
        "--tls-port", str(port), "--tls-cert-file", "server.pem", "--tls-key-file",
        "server.key", "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "yes",
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ], tmp_path / "redis.log", cwd=tmp_path)
    try:
        yield port, tmp_path
    finally:
        process.kill()


def test_rediss_with_ca_and_client_certificate(tls_redis: tuple[int, Path]) -> None:
    port, certs = tls_redis
    url = (f"rediss://127.0.0.1:{port}?ca={certs}/ca.pem&cert={certs}/client.pem"
           f"&key={certs}/client.key")

    def lead_once() -> int:
        with tenure.connect(url, ttl=1) as client:
            lead = client.election("tls/e").campaign(timeout=10)
            assert client.election("tls/e").leader() is not None
            lead.resign()
            return lead.token

    assert eventually(lead_once, 30, "the TLS instance to serve") >= 1
    without_cert = f"rediss://127.0.0.1:{port}?ca={certs}/ca.pem"
    # A refused handshake looks like an outage to the client: the campaign retries until
    # its timeout, which then names the store's last error so the user sees why.
    with tenure.connect(without_cert, ttl=1) as client, pytest.raises(
        tenure.CampaignTimeout, match="last store error"
    ):
        client.election("tls/e").campaign(timeout=2)
