"""What only the Consul backend has to prove (the shared properties are in
tests/conformance): its URL options, the server's TTL floor, sessions without health
checks, ModifyIndex tokens, lock-delay, arrival order and losses it learns by itself.
Real Consul servers from the lab only."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import tenure
from tenure.adapters import consul_http
from tenure.adapters.consul import ConsulStore
from tenure.adapters.consul_http import BlockingQuery, ConsulHTTP, KeyWatch
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.consul import ConsulCluster, ConsulNode
from tenure.store import Won

pytestmark = [pytest.mark.consul]


def api(cluster: Cluster) -> str:
    return f"http://{cluster.nodes[0].client_address}"


def session_of(client: tenure.Client) -> str:
    store = client.store
    assert isinstance(store, ConsulStore)
    return store._session


def raw_leader_key(cluster: Cluster, client: tenure.Client, election: str) -> dict[str, Any]:
    store = client.store
    assert isinstance(store, ConsulStore)
    got = requests.get(f"{api(cluster)}/v1/kv/{store._leader_key(election)}?consistent",
                       timeout=5)
    assert got.status_code == 200, got.text
    entry: dict[str, Any] = got.json()[0]
    return entry


# -- URL options (no server needed: options are checked before connecting) -----------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", r"unknown option\(s\) colour .*known: ttl, drift, lock_delay"),
        ("token=s3cret", r"takes no 'token' option .*token_file=PATH"),
        ("lock_delay=61", r"lock_delay='61' is out of range; use seconds in \[0, 60\]"),
        ("lock_delay=soon", r"lock_delay='soon' is not a duration"),
        ("timeout=0", r"timeout='0' is out of range"),
        ("prefix=/abs", r"prefix='/abs' must be a key path"),
        ("prefix=a/../b", r"prefix='a/../b' must be a key path"),
        ("scheme=gopher", r"scheme='gopher' must be one of http, https"),
        ("ca=/etc/hostname", r"ca= needs scheme=https"),
        ("scheme=https&ca=/no/such/ca.pem", r"ca='/no/such/ca.pem' cannot be read"),
        ("scheme=https&ca=/etc/hostname", r"ca='/etc/hostname' is not a PEM file"),
        ("dc=bad%20dc", r"dc='bad dc' must be a datacenter name"),
        ("token_file=/no/such/token", r"token_file='/no/such/token' cannot be read"),
    ],
)
def test_bad_url_options_are_config_errors_naming_the_option(query: str, message: str) -> None:
    with pytest.raises(tenure.ConfigError, match=message):
        tenure.connect(f"consul://127.0.0.1:1?{query}")


def test_credentials_and_paths_in_the_url_are_refused() -> None:
    with pytest.raises(tenure.ConfigError, match="token_file=PATH"):
        tenure.connect("consul://user:pw@127.0.0.1:1")
    with pytest.raises(tenure.ConfigError, match=r"prefix=NAME"):
        tenure.connect("consul://127.0.0.1:1/some/path")


def test_the_acl_token_comes_from_a_file_or_the_environment_and_is_never_shown(
    consul_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    monkeypatch.delenv("TENURE_CONSUL_TOKEN", raising=False)
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    with tenure.connect(f"{consul_cluster.url}?token_file={secret}", ttl=1) as client:
        store = client.store
        assert isinstance(store, ConsulStore)
        assert store.http.headers == {"X-Consul-Token": "from-file"}
        assert "from-file" not in client.backend and "from-file" not in repr(store.options)
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-consul-env")
    with tenure.connect(consul_cluster.url, ttl=1) as client:
        assert isinstance(client.store, ConsulStore)
        assert client.store.http.headers == {"X-Consul-Token": "from-consul-env"}
    secret.write_text("")
    monkeypatch.delenv("CONSUL_HTTP_TOKEN")
    with pytest.raises(tenure.ConfigError, match="is empty") as error:
        tenure.connect(f"{consul_cluster.url}?token_file={secret}")
    assert "from-" not in str(error.value)


def test_a_token_given_in_two_places_is_a_config_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-consul-env")
    with pytest.raises(tenure.ConfigError, match="two places") as error:
        tenure.connect(f"consul://127.0.0.1:1?token_file={secret}")
    assert f"token_file={secret}" in str(error.value)
    assert "$CONSUL_HTTP_TOKEN" in str(error.value)
    assert "from-" not in str(error.value)
    # The variable tenure read before is refused, not silently ignored.
    monkeypatch.delenv("CONSUL_HTTP_TOKEN")
    monkeypatch.setenv("TENURE_CONSUL_TOKEN", "from-tenure-env")
    with pytest.raises(tenure.ConfigError, match=r"TENURE_CONSUL_TOKEN is no longer read"):
        tenure.connect("consul://127.0.0.1:1")


def test_ttl_outside_the_declared_range_is_refused_at_connect(consul_cluster: Cluster) -> None:
    url, _ = parse_backend_url(consul_cluster.url)
    assert ConsulStore.limits.min_ttl == 1.0 and ConsulStore.limits.max_ttl == 86400.0
    with pytest.raises(tenure.ConfigError, match=r"TTL 0.5 s is outside .* \(1 to 86400 s\)"):
        tenure.connect(consul_cluster.url, ttl=0.5)
    with pytest.raises(tenure.ConfigError, match="TTL 86401 s is outside"):
        tenure.connect(consul_cluster.url, ttl=86401)
    assert url.scheme == "consul"


class DefaultFloorNode(ConsulNode):
    """A server with Consul's default session_ttl_min (10 s), unlike the lab's 1 s."""

    def prepare(self) -> None:
        super().prepare()
        path = self.dir / "consul.json"
        config = json.loads(path.read_text())
        config.pop("session_ttl_min")
        path.write_text(json.dumps(config))


class DefaultFloorCluster(ConsulCluster):
    node_class = DefaultFloorNode


def test_a_ttl_under_the_servers_floor_fails_with_the_servers_message_and_the_fix() -> None:
    with DefaultFloorCluster(1) as cluster:
        cluster.start()
        # tenure sends half its TTL: ttl=10 asks the server for 5 s, under its 10 s floor.
        with tenure.connect(cluster.url, ttl=10) as client:
            with pytest.raises(tenure.ConfigError) as error:
                client.election("floor").campaign(timeout=10)
            assert "must be between [10s=24h0m0s]" in str(error.value)
            assert "session_ttl_min" in str(error.value)
            assert "5000ms" in str(error.value) and "ttl=10" in str(error.value)
        with tenure.connect(cluster.url, ttl=20) as client:
            client.election("floor").campaign(timeout=10).resign()


# -- sessions, tokens, lock-delay ------------------------------------------------------


def test_sessions_carry_no_health_check_only_half_the_ttl(consul_cluster: Cluster) -> None:
    with tenure.connect(consul_cluster.url, ttl=1.5) as client:
        client.election("checks").campaign(timeout=10).resign()
        info = requests.get(f"{api(consul_cluster)}/v1/session/info/{session_of(client)}",
                            timeout=5).json()[0]
        # Consul guarantees the TTL it was sent, so that is the lifetime renewals count on.
        assert client.keeper.lifetime == 0.75
        assert client.keeper.renew_interval == 0.25
    assert info["NodeChecks"] == [] and not info["ServiceChecks"]
    assert info["Behavior"] == "delete"
    assert info["TTL"] == "750ms"  # the server invalidates after twice that: 1.5 s
    assert info["LockDelay"] == 0


def crashed_leader_failover(cluster: Cluster, ttl: float) -> float:
    """Seconds from a leader's last renewal to the next candidate leading, when the
    leader never renews again (a crash: a raw store without the session keeper)."""
    url, _ = parse_backend_url(cluster.url)
    name = f"crash/{time.monotonic_ns()}"
    crashed = ConsulStore.from_url(url)
    try:
        last_renewal = time.monotonic()
        assert crashed.open_session(ttl) == ttl / 2
        ticket = crashed.enqueue(name, "crashed", b"")
        assert isinstance(crashed.try_lead(ticket), Won)
        with tenure.connect(cluster.url, ttl=ttl) as successor:
            successor.election(name).campaign(timeout=ttl + 10).resign()
            return time.monotonic() - last_renewal
    finally:
        crashed.close()


@pytest.mark.slow
def test_a_crashed_leader_is_replaced_within_its_ttl_not_twice_it(
    consul_cluster: Cluster,
) -> None:
    took = sorted(crashed_leader_failover(consul_cluster, 1.0) for _ in range(3))
    # Never before the lifetime Consul guarantees (half the TTL); at most TTL + 1 s.
    assert took[0] >= 0.5 and took[-1] <= 2.0, took


def test_the_token_is_the_modify_index_at_acquisition_and_rises_when_the_key_is_recreated(
    consul_cluster: Cluster,
) -> None:
    name = f"tokens/{time.monotonic_ns()}"
    with tenure.connect(consul_cluster.url, ttl=1) as a, \
            tenure.connect(consul_cluster.url, ttl=1) as b:
        first = a.election(name).campaign(timeout=10)
        key = raw_leader_key(consul_cluster, a, name)
        assert first.token == key["ModifyIndex"]
        first.proclaim(b"moved")
        assert raw_leader_key(consul_cluster, a, name)["ModifyIndex"] > first.token
        assert b.election(name).leader() == tenure.LeaderInfo(
            name, a.candidate_id, b"moved", first.token)
        first.resign()  # deletes the key
        second = b.election(name).campaign(timeout=10)
        recreated = raw_leader_key(consul_cluster, b, name)
        # LockIndex starts again at 1 for the recreated key; the token does not.
        assert key["LockIndex"] == recreated["LockIndex"] == 1
        assert second.token == recreated["ModifyIndex"] > first.token
        second.resign()


def crash_then_measure_successor(cluster: Cluster, lock_delay: float) -> float:
    """Seconds from the leader's session being invalidated (destroyed server-side, as
    its expiry would) to the waiting candidate leading."""
    url = f"{cluster.url}?lock_delay={lock_delay:g}"
    name = f"lock-delay/{time.monotonic_ns()}"
    with tenure.connect(url, ttl=5) as leader_client, tenure.connect(url, ttl=5) as waiter:
        lost = threading.Event()
        leader_client.election(name).campaign(timeout=10, on_lost=lambda *_: lost.set())
        won: list[float] = []
        thread = threading.Thread(
            target=lambda: (waiter.election(name).campaign(timeout=30),
                            won.append(time.monotonic())))
        thread.start()
        deadline = time.monotonic() + 10
        while waiter.store._session == "" or len(  # type: ignore[attr-defined]
                requests.get(f"{api(cluster)}/v1/kv/tenure/{name}/~queue/?recurse",
                             timeout=5).json()) < 2:
            assert time.monotonic() < deadline, "the waiter never queued"
            time.sleep(0.02)
        invalidated = time.monotonic()
        requests.put(f"{api(cluster)}/v1/session/destroy/{session_of(leader_client)}",
                     timeout=5).raise_for_status()
        thread.join(timeout=40)
        assert won, "the waiter never led"
        assert lost.wait(10), "the old leader never learned it lost its session"
        return won[0] - invalidated


@pytest.mark.slow
def test_lock_delay_is_honoured_after_a_leaders_session_is_invalidated(
    consul_cluster: Cluster,
) -> None:
    assert 1.8 <= crash_then_measure_successor(consul_cluster, 2.0) <= 6.0
    assert crash_then_measure_successor(consul_cluster, 0.0) < 1.5


# -- queue and losses ------------------------------------------------------------------


# fast: each wait has a blocking query of its own; 0: every wait shares the watcher
LANES = pytest.mark.parametrize("fast_waits", [consul_http.FAST_WAITS, 0],
                                ids=["own-query", "shared-watcher"])


@LANES
def test_waiting_candidates_are_served_in_arrival_order(
    consul_cluster: Cluster, monkeypatch: pytest.MonkeyPatch, fast_waits: int,
) -> None:
    monkeypatch.setattr(consul_http, "FAST_WAITS", fast_waits)
    name = f"order/{time.monotonic_ns()}"
    clients = [tenure.connect(consul_cluster.url, ttl=2, candidate_id=f"c{i}")
               for i in range(4)]
    order: list[str] = []
    try:
        first = clients[0].election(name).campaign(timeout=10)
        threads = []
        for client in clients[1:]:
            def run(c: tenure.Client = client) -> None:
                with c.election(name).campaign(timeout=30):
                    order.append(c.candidate_id)
            thread = threading.Thread(target=run)
            thread.start()
            threads.append(thread)
            # the next one arrives only once this one is queued
            prefix = clients[0].store._queue_prefix(name)  # type: ignore[attr-defined]
            deadline = time.monotonic() + 10
            while len(requests.get(f"{api(consul_cluster)}/v1/kv/{prefix}?recurse",
                                   timeout=5).json()) < len(threads) + 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        first.resign()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for client in clients:
            client.close()
    assert order == ["c1", "c2", "c3"]


def test_a_leader_whose_key_is_deleted_behind_its_back_reports_the_loss(
    consul_cluster: Cluster,
) -> None:
    name = f"taken/{time.monotonic_ns()}"
    with tenure.connect(consul_cluster.url, ttl=5) as client:
        reasons: list[str] = []
        lost = threading.Event()
        lead = client.election(name).campaign(
            timeout=10, on_lost=lambda _l, r: (reasons.append(r), lost.set()))
        store = client.store
        assert isinstance(store, ConsulStore)
        requests.delete(f"{api(consul_cluster)}/v1/kv/{store._leader_key(name)}",
                        timeout=5).raise_for_status()
        assert lost.wait(5)
        assert "no longer held" in reasons[0]
        with pytest.raises(tenure.LeadershipLost):
            lead.ensure()


def test_a_value_round_trips_as_bytes(consul_cluster: Cluster) -> None:
    name = f"bytes/{time.monotonic_ns()}"
    value = bytes(range(256)) * 16
    with tenure.connect(consul_cluster.url, ttl=1) as client, \
            client.election(name).campaign(value, timeout=10) as lead:
        info = client.election(name).leader()
        assert info is not None and info.value == value
        lead.guarded_write(f"{name}/blob", value)
        assert client.read(f"{name}/blob") == value
        raw = raw_leader_key(consul_cluster, client, name)
        assert json.loads(base64.b64decode(raw["Value"]))["id"] == client.candidate_id


def test_a_waiter_whose_session_is_invalidated_queues_again_on_a_new_session(
    consul_cluster: Cluster,
) -> None:
    name = f"requeue/{time.monotonic_ns()}"
    with tenure.connect(consul_cluster.url, ttl=5) as a, \
            tenure.connect(consul_cluster.url, ttl=5) as b:
        lead = a.election(name).campaign(timeout=10)
        won: list[tenure.Leadership] = []
        thread = threading.Thread(target=lambda: won.append(
            b.election(name).campaign(timeout=30)))
        thread.start()
        prefix = f"{api(consul_cluster)}/v1/kv/tenure/{name}/~queue/?recurse"
        deadline = time.monotonic() + 10
        while len(requests.get(prefix, timeout=5).json()) < 2:
            assert time.monotonic() < deadline, "b never queued"
            time.sleep(0.02)
        old = session_of(b)
        requests.put(f"{api(consul_cluster)}/v1/session/destroy/{old}",
                     timeout=5).raise_for_status()
        lead.resign()  # b finds its entry gone (or its renewer, every 5/6 s, noticed first)
        thread.join(timeout=30)
        assert won and won[0].token > lead.token
        assert session_of(b) != old
        won[0].resign()


# -- signals: blocking queries, no polling -------------------------------------------


def test_a_blocking_query_signal_fires_on_a_change_and_closes_at_once(
    consul_cluster: Cluster,
) -> None:
    url, _ = parse_backend_url(consul_cluster.url)
    store = ConsulStore.from_url(url)
    key = f"tenure/watch/{time.monotonic_ns()}"
    try:
        requests.put(f"{api(consul_cluster)}/v1/kv/{key}", data=b"1", timeout=5)
        index, _ = store.http.get(key)
        with KeyWatch(store.http, key, index).start() as change:
            assert not change.wait(0.5)
            requests.put(f"{api(consul_cluster)}/v1/kv/{key}", data=b"2", timeout=5)
            assert change.wait(5)
            assert change.wait(0)  # and from then on
        idle = KeyWatch(store.http, key, store.http.get(key)[0]).start()
        started = time.monotonic()
        assert not idle.wait(0.2)  # its blocking query is now in flight
        assert time.monotonic() - started < 0.4  # wait(timeout) keeps to its timeout
        for end in (idle.interrupt, idle.close):  # from another thread, a wait in progress
            woken: list[bool] = []
            waiter = threading.Thread(target=lambda got=woken: got.append(idle.wait(30)))
            waiter.start()
            assert not waiter.join(0.3) and waiter.is_alive()
            end()
            waiter.join(2)
            assert woken == [True], f"{end.__name__}() did not end the wait in progress"
        assert idle.wait(0)  # closed: fires from then on
    finally:
        store.close()


@LANES
def test_a_waiting_candidate_sends_nothing_while_nothing_changes(
    consul_cluster: Cluster, monkeypatch: pytest.MonkeyPatch, fast_waits: int,
) -> None:
    monkeypatch.setattr(consul_http, "FAST_WAITS", fast_waits)
    name = f"quiet/{time.monotonic_ns()}"
    with tenure.connect(consul_cluster.url, ttl=2) as a, \
            tenure.connect(consul_cluster.url, ttl=2) as b:
        lead = a.election(name).campaign(timeout=10)
        store = b.store
        assert isinstance(store, ConsulStore)
        sent: list[str] = []
        queries: list[str] = []
        call, query = ConsulHTTP.call, BlockingQuery.get
        monkeypatch.setattr(ConsulHTTP, "call", lambda self, method, path, *args, **kwargs: (
            sent.append(path) if self is store.http else None,
            call(self, method, path, *args, **kwargs))[1])
        monkeypatch.setattr(BlockingQuery, "get", lambda self, path, *args: (
            queries.append(path) if self.client is store.http else None,
            query(self, path, *args))[1])
        send = KeyWatch._send
        monkeypatch.setattr(KeyWatch, "_send", lambda self: (
            queries.append(self.key) if self.client is store.http else None, send(self))[1])
        won: list[tenure.Leadership] = []
        thread = threading.Thread(target=lambda: won.append(b.election(name).campaign(timeout=30)))
        thread.start()
        # one key alone: the shared watcher waits on it from the read's index at once
        deadline = time.monotonic() + 10
        while not queries:
            assert time.monotonic() < deadline, "b never waited"
            time.sleep(0.01)
        before = ([p for p in sent if "/session/renew/" not in p], list(queries))
        time.sleep(3)  # nothing changes: b's only traffic is its session renewals
        assert ([p for p in sent if "/session/renew/" not in p], queries) == before
        lead.resign()
        thread.join(10)
        assert won and won[0].token > lead.token
        won[0].resign()


def test_a_leader_cut_off_from_consul_does_not_block_the_election_once_it_is_back(
    consul_cluster: Cluster,
) -> None:
    """The leader loses at its deadline while cut off, so its withdraw fails; its session
    outlives the cut (renewals resume in time). The leader key it still holds must be
    given back at its next renewal, not only when the client closes."""
    name = f"cut/{time.monotonic_ns()}"
    proxy = consul_cluster.proxy(node=0)
    with tenure.connect(proxy.url, ttl=4) as b, \
            tenure.connect(consul_cluster.url, ttl=4) as a:
        lost = threading.Event()
        lead = b.election(name).campaign(timeout=10, on_lost=lambda *_: lost.set())
        session = session_of(b)
        won: list[float] = []
        thread = threading.Thread(target=lambda: (
            a.election(name).campaign(timeout=30), won.append(time.monotonic())))
        thread.start()
        proxy.cut()
        assert lost.wait(3), "the cut-off leader did not lose at its deadline"
        time.sleep(0.5)  # its withdraw has failed by now
        assert raw_leader_key(consul_cluster, b, name)["Session"] == session
        healed = time.monotonic()
        proxy.heal()
        thread.join(10)
        assert won and won[0] - healed < 3, "the election stayed blocked after the cut"
        assert session_of(b) == session  # the same session: it was given back, not expired
        assert lead.lost


@pytest.mark.parametrize(("raw", "status", "body", "closes"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Consul-Index: 7\r\n\r\nhello", 200,
     b"hello", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nhel\r\n2\r\nlo\r\n"
     b"0\r\nTrailer: t\r\n\r\n", 200, b"hello", False),
    (b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnone", 404, b"none", True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", False),
])
def test_answers_are_parsed_by_length_chunks_or_the_connection_end(
    raw: bytes, status: int, body: bytes, closes: bool,
) -> None:
    """The hand-written HTTP/1.1 reading of :class:`consul_http.Line` (no server)."""
    following = b"" if closes else b"HTTP/1.1 200 OK\r\n"  # the next answer: unread
    reader = io.BytesIO(raw + following)
    got, fields = consul_http.read_head(reader)
    assert (got, consul_http.read_body(reader, got, fields)) == (status, body)
    assert (fields.get("Connection", "").lower() == "close") == closes
    assert reader.read() == following


@pytest.mark.parametrize("raw", [b"", b"SSH-2.0-OpenSSH\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"])
def test_a_broken_answer_is_an_http_error_not_a_traceback(raw: bytes) -> None:
    reader = io.BytesIO(raw)
    with pytest.raises(http.client.HTTPException):
        status, fields = consul_http.read_head(reader)
        consul_http.read_body(reader, status, fields)


def test_an_interrupt_ends_the_pause_after_a_failed_blocking_query_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No server: the query cannot connect, so the watch pauses (ERROR_PAUSE, made
    30 s here); :meth:`KeyWatch.interrupt` from another thread ends that pause."""
    monkeypatch.setattr(consul_http, "ERROR_PAUSE", 30.0)
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    client = ConsulHTTP((("127.0.0.1", port),), scheme="http", ca=None, dc=None,
                        timeout=2.0, token=None, description="none")
    failed = threading.Event()
    monkeypatch.setattr(client, "move_on", failed.set)
    watch = KeyWatch(client, "tenure/pause", 1).start()
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(watch.wait(60)), daemon=True)
    waiter.start()
    try:
        assert failed.wait(10), "the blocking query did not fail"
        watch.interrupt()
        waiter.join(5)
        assert woken == [True], "interrupt() did not end the pause after a failed query"
    finally:
        watch.close()
        waiter.join(5)
        client.close()
