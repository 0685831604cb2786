"""Round trips of a Redis handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning, on 1 and on
3 instances: the leader sends ONE script per instance (WITHDRAW: release, remove the
entry, wake the successor), and the woken successor makes ONE step whose only request
is ONE script per instance (ACQUIRE, which reads what a separate state read would,
takes the key and reads the core's handoff marker, a ``data:`` key, in the same
script): no read before it, no retry delay after the wake, and no marker read after
it (no ``HMGET`` of a ``data:`` key). Requests are counted on each client's connections
(``send_command`` of every pooled connection and of each instance's lane); session
renewals are left out. Those scripts go out on each instance's lane (no pool checkout on
either side of the handover). An uncontended campaign is ONE script per instance
(REGISTER, which also takes the key).
"""

from __future__ import annotations

import hashlib
import select
import time
from collections import Counter
from typing import Any

import pytest
import redis
from handover_kit import Handover, handovers

import tenure
from tenure.adapters import redis_scripts as lua
from tenure.adapters.redis import WAKE, RedisStore
from tenure.adapters.redis_quorum import Bell
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis]

SCRIPTS = {hashlib.sha1(getattr(lua, name).encode()).hexdigest(): name
           for name in ("STATE", "ACQUIRE", "RELEASE", "REGISTER", "ORDER", "WITHDRAW",
                        "PROCLAIM", "GUARDED_WRITE", "CONTENDERS")}


class Requests:
    """Every request a client's store sends, with the time it was sent."""

    def __init__(self, client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, RedisStore)
        self.sent: list[tuple[float, str]] = []
        self._data = f"{store.prefix}data:".encode()
        self.checkouts: list[float] = []
        """When a request took a connection from a client's pool (the scripts of the
        handover path use each instance's lane instead)."""
        for inst in store._quorum.instances:  # every other request: a pool connection
            inst.client.connection_pool.get_connection = self._counting(
                inst.client.connection_pool.get_connection)
            inst.lane.conn.send_command = self._counted(inst.lane.conn.send_command)
        for inst in store._quorum.instances:  # a fresh server answers NOSCRIPT once
            for script in vars(inst.scripts).values():
                inst.client.script_load(script.script)
        # Subscribe the wake feed now: its first confirmation wakes every waiter of the
        # client once (a re-read), which must not fall into a counted window.
        store._quorum.signal(WAKE, "warm-up").close()
        # Several instances: the lanes connect in the background after the store opens.
        wait_until(lambda: all(inst.lane.connected for inst in store._quorum.instances)
                   or store.n == 1, 10, "script lanes connected")
        wait_until(lambda: store._quorum._bell.counts.get((WAKE, Bell.ALL), 0) >= store.n,
                   10, "wake feed subscribed")

    def _counting(self, get_connection: Any) -> Any:
        def get(*args: Any, **kwargs: Any) -> Any:
            self.checkouts.append(time.monotonic())
            conn = get_connection(*args, **kwargs)
            if not getattr(conn, "_tenure_counted", False):
                conn._tenure_counted = True
                conn.send_command = self._counted(conn.send_command)
            return conn

        return get

    def _counted(self, execute: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            name = str(args[0])
            if name == "EVALSHA":
                name = SCRIPTS.get(str(args[1]), "EVALSHA of an unknown script")
            elif name == "HMGET" and str(args[1]).encode().startswith(self._data):
                name = "HMGET data (read)"
            if name != "PEXPIRE":  # session renewals run on their own schedule
                self.sent.append((time.monotonic(), name))
            return execute(*args, **kwargs)

        return counted

    def between(self, start: float, end: float) -> Counter[str]:
        return Counter(name for t, name in self.sent if start <= t <= end)


@pytest.fixture(params=[1, 3], ids=["1-instance", "3-instances"])
def cluster(request: pytest.FixtureRequest, lab: LabFactory) -> Cluster:
    return lab.start("redis", nodes=request.param)


def test_a_handover_is_one_script_per_instance_each_side(cluster: Cluster) -> None:
    n = len(cluster.nodes)

    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        by_leader = leader.between(done.start, done.resigned)
        by_successor = successor.between(done.start, done.end)
        detail = (f"leader sent {dict(by_leader)}, successor sent {dict(by_successor)}, "
                  f"steps {done.steps}")
        assert by_leader == Counter({"WITHDRAW": n}), detail
        assert done.steps == ["Won"], detail
        assert by_successor == Counter({"ACQUIRE": n}), detail

    handovers(cluster.url, 6, f"trips/{time.monotonic_ns()}", Requests, check)


def test_a_handover_takes_no_connection_from_a_pool(cluster: Cluster) -> None:
    # Both scripts go out on the instances' lanes: a pool checkout costs ~70 us of CPU.
    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        taken = ([t for t in leader.checkouts if done.start <= t <= done.resigned],
                 [t for t in successor.checkouts if done.start <= t <= done.end])
        assert taken == ([], []), f"pool checkouts (leader, successor): {taken}"

    handovers(cluster.url, 4, f"trips/lanes/{time.monotonic_ns()}", Requests, check)


def test_an_uncontended_campaign_is_one_script_per_instance(cluster: Cluster) -> None:
    # The enqueue script also takes the free key (no ACQUIRE after it, no read before).
    n = len(cluster.nodes)
    with tenure.connect(cluster.url, ttl=5.0, candidate_id="solo") as client:
        election = client.election(f"trips/solo/{time.monotonic_ns()}")
        # with several instances the enqueue proposes 1 + this client's last token
        election.campaign(timeout=30).resign()
        requests = Requests(client)
        for _ in range(3):
            start = time.monotonic()
            lead = election.campaign(timeout=30)
            sent = requests.between(start, time.monotonic())
            assert sent == Counter({"REGISTER": n}), dict(sent)
            lead.resign()


def test_a_leaders_withdrawal_scans_the_queue_once(lab: LabFactory) -> None:
    # WITHDRAW wakes the queue's head and the entry behind the removed one: when the
    # leader headed the queue they are the same entry, found by one forward scan
    # (ZRANGEBYSCORE, which only WITHDRAW's scan sends; two before).
    cluster = lab.start("redis", nodes=1)
    host, port = cluster.nodes[0].client_address.rsplit(":", 1)
    admin = redis.Redis(host=host, port=int(port), socket_timeout=10)

    def scans() -> int:
        stats = admin.info("commandstats").get("cmdstat_zrangebyscore", {"calls": 0})
        return int(stats["calls"])

    seen: list[int] = []

    def before(_: list[Any]) -> None:
        seen.append(scans())

    def check(_leader: Any, _successor: Any, done: Handover) -> None:
        assert done.steps == ["Won"], done.steps
        seen[-1] = scans() - seen[-1]

    handovers(cluster.url, 6, f"trips/scan/{time.monotonic_ns()}", lambda c: None, check,
              before_resign=before)
    assert seen == [1, 1, 1], f"forward queue scans per handover: {seen}"


def test_a_woken_successor_on_one_instance_looks_at_its_feed_no_more(
        lab: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wake's select() returns; arming the bell for the winning step makes no
    # catch-up look (a select() with no wait) on one instance, which sends no late
    # copies of a wake.
    cluster = lab.start("redis", nodes=1)
    readers: list[int] = []  # the poke pipes of the successors' wake readers
    looks: list[float] = []
    real = select.select

    def counting(rlist: Any, *args: Any) -> Any:
        if args[-1] == 0 and any(fd in readers for fd in rlist if isinstance(fd, int)):
            looks.append(time.monotonic())  # a look at the wake feed, not a wait
        return real(rlist, *args)

    monkeypatch.setattr(select, "select", counting)

    def count(client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, RedisStore)
        store._quorum.signal(WAKE, "warm-up").close()
        readers.append(store._quorum._readers[WAKE]._poke_r)

    def check(_leader: Any, _successor: Any, done: Handover) -> None:
        assert done.steps == ["Won"], done.steps
        after_wake = [t for t in looks if done.start <= t <= done.end]
        assert after_wake == [], f"looks at the wake feed after the resign: {len(after_wake)}"

    handovers(cluster.url, 6, f"trips/select/{time.monotonic_ns()}", count, check)


def test_a_renewal_on_every_instance_is_not_kept_for_the_win_check(lab: LabFactory) -> None:
    # A win checks the renewals sent since its take for one that covered fewer than a
    # majority of the instances it took; one that renewed all covers every majority.
    cluster = lab.start("redis", nodes=1)
    with tenure.connect(cluster.url, ttl=5.0, candidate_id="renewing") as client:
        lead = client.election(f"trips/renewals/{time.monotonic_ns()}").campaign(timeout=30)
        store = client.store
        assert isinstance(store, RedisStore)
        for _ in range(3):
            store.renew_session(frozenset({lead.ticket}))  # type: ignore[arg-type]
        assert list(store._renewals) == []
        lead.resign()
