"""Review finding (PostgreSQL, read with the win), fixed: the marker read in TRY_LEAD's
snapshot can miss a guarded write that committed before the win was decided.

TRY_LEAD's ``gone`` CTE deletes the expired session ahead. A guarded write of that
leader (``_LEADING ... FOR KEY SHARE OF c, s``), checked while its session was live,
holds a KEY SHARE lock on the session row; the DELETE waits for it to commit and then
deletes the row -- but every part of the statement, the marker column included, reads
the snapshot taken BEFORE that commit. So the win is decided after the marker committed,
while the 4th column still shows the older value (here: none). The separate
``store.read`` of the old gate was a new statement and saw it. The fix: a win whose
statement deleted a session returns a plain Won, and the core's gate reads the marker
separately. Deterministic: the guarded write (a real marker naming a live third
candidate) is run by hand in an open transaction, the session is expired by hand, and
the commit is made once TRY_LEAD waits on the lock; the gate must then refuse the
winner. About 1-2 s.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from tenure.adapters import open_store
from tenure.adapters.postgres import PostgresStore
from tenure.config import parse_backend_url
from tenure.conformance.lab.fixtures import SharedClusters, attach_cluster
from tenure.handoff import HandoffGate, Marker, marker_key
from tenure.store import Won

pytestmark = [pytest.mark.postgres]


def test_the_winning_statement_reads_a_marker_committed_before_it_won(
    request: pytest.FixtureRequest, lab_clusters: SharedClusters,
) -> None:
    cluster = lab_clusters.get("postgres")
    attach_cluster(request, cluster)
    url, _ = parse_backend_url(cluster.url)
    old, new, third = open_store(url), open_store(url), open_store(url)
    assert isinstance(old, PostgresStore) and isinstance(new, PostgresStore)
    name = f"review/pg-read-with-win/{uuid.uuid4().hex[:8]}"
    key = marker_key(name)
    holding: psycopg.Connection[Any] | None = None
    try:
        for store in (old, new, third):
            store.open_session(10.0)
        leader = old.enqueue(name, "old", b"")
        assert isinstance(old.try_lead(leader), Won)
        waiter = new.enqueue(name, "new", b"")
        waiter.read_on_win = key
        third.enqueue(name, "third", b"")  # the live successor the marker names
        marker = Marker(id="review", to="third", by="old", token=leader.order,
                        timeout=600.0, keep=False).encode()
        step = new.try_lead(waiter)
        assert not isinstance(step, Won)
        step.signal.close()

        conninfo = old.config.conninfo(old.config.params, 10.0)
        schema = old.config.schema
        holding = psycopg.connect(conninfo)  # a transaction, left open on purpose
        rows = holding.execute(old.sql.guarded_write, {
            "seq": leader.order, "sid": old._session, "e": name, "k": key,
            "v": marker}).fetchall()
        assert rows, "the guarded write was refused while the old leader leads"
        with psycopg.connect(conninfo, autocommit=True) as admin:
            # expires_at is no key column: this UPDATE does not wait for the KEY SHARE.
            admin.execute(f"UPDATE {schema}.sessions SET expires_at = clock_timestamp() "
                          "- interval '1 second' WHERE id = %s", (old._session,))
            outcome: list[Any] = []
            stepping = threading.Thread(target=lambda: outcome.append(new.try_lead(waiter)))
            stepping.start()
            end = time.monotonic() + 20
            while not admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%gone%%'").fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < end, "TRY_LEAD never waited on the lock"
                time.sleep(0.02)
        holding.commit()  # the marker commits; TRY_LEAD then deletes the session, wins
        stepping.join(20)
        won = outcome[0]
        assert isinstance(won, Won) and won.token == waiter.order, won
        assert new.read(key) == marker
        assert not won.read_done or won.read == marker, (
            f"won with read={won.read!r} although the marker committed before the win")
        assert not HandoffGate().admits(new, waiter, won), (
            "admitted although the marker names the live candidate 'third'")
    finally:
        if holding is not None:
            holding.close()
        for store in (third, new, old):
            try:
                store.close_session()
            finally:
                store.close()
