"""Round trips of a Redis handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning, on 1 and on
3 instances: the leader sends ONE script per instance (WITHDRAW: release, remove the
entry, wake the successor), and the woken successor makes ONE step whose only request
is ONE script per instance (ACQUIRE, which reads what a separate state read would and
takes the key): no read before it, no retry delay after the wake. Requests are counted
on each client's connections (``execute_command``); session renewals are left out, and
so is the handoff gate's marker read (``read`` of a ``data:`` key, made by the core, not
the adapter), which is reported in the failure message if present.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from typing import Any

import pytest

import tenure
from tenure.adapters import redis_scripts as lua
from tenure.adapters.redis import WAKE, RedisStore
from tenure.adapters.redis_quorum import Bell
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.conformance.lab.fixtures import LabFactory
from tenure.store import Wait

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
        self.steps: list[tuple[float, str]] = []
        self.parked = threading.Event()
        self._data = f"{store.prefix}data:".encode()
        for inst in store._quorum.instances:
            inst.client.execute_command = self._counted(inst.client.execute_command)
        original = store.try_lead

        def try_lead(ticket: Any) -> Any:
            step = original(ticket)
            self.steps.append((time.monotonic(), type(step).__name__))
            if isinstance(step, Wait):
                self.parked.set()
            return step

        store.try_lead = try_lead  # type: ignore[method-assign]
        for inst in store._quorum.instances:  # a fresh server answers NOSCRIPT once
            for script in vars(inst.scripts).values():
                inst.client.script_load(script.script)
        # Subscribe the wake feed now: its first confirmation wakes every waiter of the
        # client once (a re-read), which must not fall into a counted window.
        store._quorum.signal(WAKE, "warm-up").close()
        wait_until(lambda: store._quorum._bell.counts.get((WAKE, Bell.ALL), 0) >= store.n,
                   10, "wake feed subscribed")

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
    name = f"trips/{time.monotonic_ns()}"
    clients = [tenure.connect(cluster.url, ttl=6, candidate_id=c) for c in ("a", "b")]
    try:
        lead = clients[0].election(name).campaign(timeout=10)
        counted = [Requests(c) for c in clients]
        leader, successor = 0, 1
        for _ in range(3):
            won: list[tenure.Leadership] = []
            ended = threading.Event()
            counted[successor].parked.clear()

            def campaign(c: tenure.Client = clients[successor],
                         won: list[tenure.Leadership] = won,
                         ended: threading.Event = ended) -> None:
                won.append(c.election(name).campaign(timeout=30))
                ended.set()

            thread = threading.Thread(target=campaign)
            thread.start()
            assert counted[successor].parked.wait(10), "the successor never waited"
            start = time.monotonic()
            lead.resign()
            resigned = time.monotonic()
            assert ended.wait(10), "the successor did not win after the resign"
            end = time.monotonic()
            thread.join()
            by_leader = counted[leader].between(start, resigned)
            by_successor = counted[successor].between(start, end)
            steps = [s for t, s in counted[successor].steps if start <= t <= end]
            gate_reads = by_successor.pop("HMGET data (read)", 0)
            detail = (f"leader sent {dict(by_leader)}, successor sent {dict(by_successor)} "
                      f"(+ {gate_reads} handoff-marker reads by the core), steps {steps}")
            assert by_leader == Counter({"WITHDRAW": n}), detail
            assert steps == ["Won"], detail
            assert by_successor == Counter({"ACQUIRE": n}), detail
            assert gate_reads <= n, detail
            lead = won[0]
            leader, successor = successor, leader
        lead.resign()
    finally:
        for client in clients:
            client.close()
