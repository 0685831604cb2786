"""Smoke test of the ACQUIRE script trace (conformance/benchmarks/redis_script_trace.py):
with a tiny N on a lab Redis, the counters it reads are real -- Redis counted every
EVALSHA it sent, the commands the ACQUIRE script called inside it (each once per call,
none from the variant that drops that step), and a positive in-Redis time -- and every
variant's source still differs from ACQUIRE where it claims to (the trace raises if a
step it removes is no longer in the script). ~2 s."""

from __future__ import annotations

import pytest
import redis

from tenure.adapters import redis_scripts as lua
from tenure.conformance.benchmarks import redis_script_trace as trace
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis]


def test_the_trace_reads_the_script_s_inner_commands_from_redis(lab: LabFactory) -> None:
    cluster = lab.start("redis", nodes=1)
    host, port = cluster.nodes[0].client_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=10)
    rows = {row.name: row for row in trace.trace(client, n=5, rounds=1, warmup=2)}
    client.close()

    assert list(rows) == [*trace.variants(), trace.PLAIN]
    full = rows["ACQUIRE (as sent)"]
    assert full.calls == {"get": 1, "pttl": 1, "hmget": 2, "zscore": 1,
                          "zrevrangebyscore": 1, "pexpire": 1, "set": 1, "hset": 1,
                          "publish": 1}, full.calls
    assert full.inside > full.inner > 0
    assert full.rtt_median > 0
    # Each "-" variant lost exactly the commands of its step.
    assert "zscore" not in rows["- queue ZSCORE + ZREVRANGEBYSCORE"].calls
    assert "zrevrangebyscore" not in rows["- queue ZSCORE + ZREVRANGEBYSCORE"].calls
    assert rows["- handoff marker HMGET"].calls["hmget"] == 1
    assert "get" not in rows["- fencing counter GET/SET"].calls
    assert rows["empty script, same KEYS/ARGV"].calls == {}
    assert rows["script: SET NX PX only"].calls == {"set": 1}
    assert rows[trace.PLAIN].inside > 0
    assert all(source != lua.ACQUIRE for name, (source, _) in trace.variants().items()
               if name.startswith("- ") and "marker" not in name)
    assert "ACQUIRE (as sent)" in trace.render(list(rows.values()))
