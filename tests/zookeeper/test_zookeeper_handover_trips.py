"""ZooKeeper requests of a handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning, in the
default layout and in ``layout=native``: the leader sends ONE request (the ``delete`` of
its node), and the successor's wake-up is ONE request -- a ``multiRead`` of the listing
(what kazoo's Election reads) and the core's handoff marker (``Ticket.read_on_win``),
sent by kazoo's callback thread the moment the predecessor's deletion arrives -- and
no other: no ``sync`` (the listing orders the marker read after the release, on a
follower too) and no ``exists`` (the successor's own-node watch was armed by its first
step, once per connection). On a server without multiRead (< 3.6, simulated) it is two
pipelined requests. The old code sent ``get_children, exists, sync, get``.

Idle, a session sends one request per renewal period: the renewal's ``sync``, which
stands for kazoo's ping (the old code sent both); kazoo's connection thread wakes only
to send it and to read its answer (not at kazoo's ping time to skip the ping), and
waits with poll(), never with kazoo's per-wait epoll object.

Every request the client hands to kazoo is counted (``KazooClient._call``, which every
kazoo call and the multiRead go through), on any thread but the session renewer's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from handover_kit import Handover, handovers
from kazoo.handlers import threading as kazoo_threading

import tenure
from tenure.adapters import zookeeper_multiread
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.fixtures import LabFactory
from tenure.leadership import State

pytestmark = [pytest.mark.zookeeper]

TTL = 3.0  # the lab's tickTime 200 ms allows sessions of 0.4-4 s


def _name(request: Any) -> str:
    """A request as the test names it: kazoo's class, or a multiRead with its ops."""
    if isinstance(request, zookeeper_multiread.MultiRead):
        ops = {zookeeper_multiread.GET_CHILDREN: "get_children",
               zookeeper_multiread.GET_DATA: "get"}
        return "multiRead(" + ",".join(ops[op] for op, _ in request.ops) + ")"
    return type(request).__name__


class Requests:
    """Every request one client's store sends, with its time and thread."""

    def __init__(self, client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        self.sent: list[tuple[float, str, str]] = []
        self._store = store
        self._wrapped: set[int] = set()

    def attach(self) -> None:
        """Counts the requests of the store's current kazoo client (opening the session
        replaces the observer's client, so this runs once the session is open)."""
        zk = self._store._conn.current
        assert zk is not None, "no kazoo client"
        if id(zk) in self._wrapped:
            return
        self._wrapped.add(id(zk))
        send = zk._call

        def call(request: Any, pending: Any) -> Any:
            self.sent.append((time.monotonic(), threading.current_thread().name,
                              _name(request)))
            return send(request, pending)

        zk._call = call  # type: ignore[method-assign]

    def between(self, start: float, end: float) -> list[str]:
        """The requests sent in [start, end], renewals excepted."""
        return [what for t, thread, what in self.sent
                if start <= t <= end and thread != "tenure-renewer"]


@pytest.fixture(scope="module")
def cluster(lab_module: LabFactory) -> Cluster:
    return lab_module.start("zookeeper")


def _attach(counted: list[Requests]) -> None:
    for requests in counted:  # both sessions are open now
        requests.attach()


@pytest.mark.parametrize("layout", ["tenure", "native"])
def test_a_handover_is_one_request_each_side(cluster: Cluster, layout: str) -> None:
    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        by_leader = leader.between(done.start, done.resigned)
        by_successor = successor.between(done.start, done.end)
        detail = f"leader {by_leader}, successor {by_successor}, steps {done.steps}"
        assert by_leader == ["Delete"], detail
        assert done.steps == ["Won"], detail
        assert by_successor == ["multiRead(get_children,get)"], detail

    handovers(f"{cluster.url}?layout={layout}", TTL, f"trips/{time.monotonic_ns()}",
              Requests, check, before_resign=_attach)


def test_without_multiread_the_wake_up_is_two_pipelined_requests(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # An opcode the server does not know stands for a server before 3.6: the session's
    # probe sees it refused, and the store reads with separate requests from then on.
    monkeypatch.setattr(zookeeper_multiread.MultiRead, "type", 9999)

    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        assert not successor._store._multiread
        by_successor = successor.between(done.start, done.end)
        assert by_successor == ["GetChildren", "GetData"], by_successor
        assert done.steps == ["Won"], done.steps

    handovers(cluster.url, TTL, f"trips/{time.monotonic_ns()}", Requests, check, rounds=2,
              before_resign=_attach)


def test_an_idle_session_sends_one_sync_per_renewal_and_no_kazoo_ping(cluster: Cluster) -> None:
    # kazoo pings after a third of the session timeout without a request, the renewer
    # syncs every third of the TTL: the old code sent both, one request too many per
    # renewal period. A renewal sent less than half the timeout ago stands for the ping.
    with tenure.connect(cluster.url, ttl=2.0) as client:
        lead = client.election(f"idle/{time.monotonic_ns()}").campaign(timeout=10)
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        zk = store._conn.current
        assert zk is not None
        sent: list[str] = []
        submit = zk._connection._submit

        def counted(request: Any, timeout: float, xid: int | None = None) -> Any:
            sent.append(type(request).__name__)
            return submit(request, timeout, xid)

        zk._connection._submit = counted  # type: ignore[method-assign]
        renewed = client.keeper.renewals
        time.sleep(2.5)  # about four renewal periods of 0.67 s: what is counted, not a sync
        renewals = client.keeper.renewals - renewed
        assert renewals >= 3, renewals
        assert sent.count("Ping") == 0, sent
        assert abs(sent.count("Sync") - renewals) <= 1 and set(sent) == {"Sync"}, sent
        assert lead.state is State.HELD


def test_an_idle_connection_thread_wakes_only_for_renewals_and_polls_without_epoll(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # kazoo's connection loop waits until its ping is due: a third of the timeout minus
    # jitter after the last send, always before the next renewal (a third of the TTL),
    # so the old code woke it once per renewal period only to skip the ping. Now its
    # wait runs to the end of the answered renewal's cover: it wakes to send each sync
    # and to read its answer, and no wait ends empty. Every wait (the loop's, and the
    # one before each socket read and write) is one poll(): kazoo's selector_select,
    # an epoll object made and closed per wait, is never called (the old code: 4 per
    # renewal). ~2.5 s.
    epolls: list[int] = []
    kazoo_select = kazoo_threading.selector_select

    def counted_epoll(*args: Any, **kwargs: Any) -> Any:
        epolls.append(1)
        return kazoo_select(*args, **kwargs)

    with tenure.connect(cluster.url, ttl=2.0) as client:
        lead = client.election(f"idle-wakes/{time.monotonic_ns()}").campaign(timeout=10)
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        zk = store._conn.current
        assert zk is not None
        waits: list[bool] = []  # per connection-loop wait: did it end with nothing ready?
        select = zk.handler.select

        def counted(rlist: list[Any], wlist: list[Any], xlist: list[Any],
                    timeout: float | None = None) -> Any:
            found = select(rlist, wlist, xlist, timeout)
            if len(rlist) == 2 and not wlist:
                waits.append(not found[0])
            return found

        zk.handler.select = counted
        monkeypatch.setattr(kazoo_threading, "selector_select", counted_epoll)
        renewed = client.keeper.renewals
        time.sleep(2.5)  # about four renewal periods of 0.67 s: what is counted, not a sync
        renewals = client.keeper.renewals - renewed
        monkeypatch.undo()
        zk.handler.select = select
        assert renewals >= 3, renewals
        assert waits.count(True) == 0, f"{waits.count(True)} empty waits in {renewals} renewals"
        assert len(waits) <= 2 * renewals + 2, (len(waits), renewals)
        assert epolls == [], f"{len(epolls)} kazoo selector_select calls in {renewals} renewals"
        assert lead.state is State.HELD
