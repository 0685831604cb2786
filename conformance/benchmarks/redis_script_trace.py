"""Where the Redis acquisition script's time goes: a trace of the store calls of ONE take.

Measures, on one Redis instance (a lab instance it starts, or ``--url``), for the ACQUIRE
script exactly as a woken waiter sends it in a resign handover (the keys and arguments
of :meth:`tenure.adapters.redis.RedisStore._compete`, logged from a real handover: the
leader key already deleted by the withdrawal, the waiter's own entry first in the queue,
its session alive, the handoff marker key to read on the win) and for local copies of
it with one safety step removed at a time (never used by tenure), a script doing only
``SET NX`` and a plain ``SET NX`` (python-redis-lock's take):

* inside Redis, from ``INFO commandstats`` after ``CONFIG RESETSTAT``: the EVALSHA's
  microseconds per call, the sum of the commands the script called (Redis counts the
  commands a script calls; their time is inside the EVALSHA's), and the difference:
  the Lua interpreter's own share (call setup, KEYS/ARGV tables, the script body,
  the reply's conversion);
* the round trip on one connection, client side (``time.perf_counter_ns`` around the
  redis-py call, reply parsed): median and 90th percentile, the variants interleaved
  call by call in a shuffled order (the shared machine's speed changes by the second).

A step's cost is the full script's figure minus that of the copy without it.
``--gap-ms`` idles the server before every call, as between two handovers: every
command is several times slower on a CPU that has just been idle.

Between two takes the leader key is deleted (a ``DEL``, not timed, never counted as the
script's) and each take proposes a rising token, so every call takes the same path: a
win. What this is not: the whole handover (the withdrawal, the wake message, the
waiter's Python: ``tenure bench --only handover``), a contended take, or a
multi-instance quorum (the transport's fan-out is not used: redis-py's own client).
The machine is shared: compare rows of one run, not runs.

    python -m tenure.conformance.benchmarks.redis_script_trace [-n 1000] [--rounds 3]
        [--gap-ms 0] [--url redis://h:p]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tenure.adapters import redis_scripts as lua

PREFIX = "trace:"
ELECTION = "trace/handover"
SID, TICKET, CLIENT = "5" * 32, "a" * 32, "c" * 32
ORDER = 2
TTL_MS = 600_000
"""The session TTL each take sets (PEXPIRE): long enough that it never runs out mid-trace."""
NOT_SCRIPT = {"del", "config", "info", "script", "evalsha", "eval", "ping", "flushall"}
"""Commands the trace itself sends: never counted as a script's inner commands."""
PLAIN = "plain SET NX PX (python-redis-lock)"


def _without(source: str, *edits: tuple[str, str]) -> str:
    """``source`` with each (old, new) replaced once; raises if ``old`` is not there once
    (the script changed: the trace would silently measure the full script)."""
    for old, new in edits:
        if source.count(old) != 1:
            raise ValueError(f"the ACQUIRE script no longer contains {old!r} once")
        source = source.replace(old, new)
    return source


def variants() -> dict[str, tuple[str, bool]]:
    """Name -> (script source, read the handoff marker key): the ACQUIRE script and local
    copies with one step removed each (for measurement only)."""
    full = lua.ACQUIRE
    return {
        "ACQUIRE (as sent)": (full, True),
        "- fencing counter GET/SET": (_without(
            full, ("local counter = tonumber(redis.call('GET', k[2]) or '0')",
                   "local counter = 0"),
            ("redis.call('SET', k[2], token)", "")), True),
        "- own session PTTL": (_without(
            full, ("local own = redis.call('PTTL', k[3])", "local own = 1")), True),
        "- leader HMGET (holder check)": (_without(
            full, ("local h = redis.call('HMGET', k[1], 'sid', 'ticket', 'token', "
                   "'cid', 'value', 'vseq')", "local h = {}")), True),
        "- queue ZSCORE + ZREVRANGEBYSCORE": (_without(
            full, ("  if ticket then\n    local order", "  if false then\n    local order")),
            True),
        "- handoff marker HMGET": (full, False),
        "- PUBLISH changed": (_without(
            full, ("redis.call('PUBLISH', a[9], 'acquired')", "")), True),
        "- leader HSET": (_without(
            full, ("redis.call('HSET', k[1], 'sid', a[1], 'ticket', a[2], 'token', token,\n"
                   "             'cid', a[4], 'value', a[5], 'vseq', a[6])", "")), True),
        "- session PEXPIRE": (_without(full, ("redis.call('PEXPIRE', k[3], a[7])", "")), True),
        "empty script, same KEYS/ARGV": ("return 1", True),
        "script: SET NX PX only": (
            "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[7])", True),
    }


@dataclass(frozen=True)
class Row:
    """One measured variant: ``inside`` is the EVALSHA's (or the command's) microseconds
    per call in Redis, ``inner`` the sum per call of the commands it called (``calls``
    of them per call, by name), ``rtt_us`` the client-side round trips' median and
    90th percentile."""

    name: str
    inside: float
    inner: float
    calls: dict[str, float]
    rtt_median: float
    rtt_p90: float

    @property
    def lua(self) -> float:
        """The interpreter's own share: the script's time minus its commands'."""
        return self.inside - self.inner


def commandstats(client: redis.Redis) -> dict[str, tuple[int, float]]:
    """``INFO commandstats`` as command -> (calls, usec in total)."""
    out: dict[str, tuple[int, float]] = {}
    for name, stats in client.info("commandstats").items():
        out[name.removeprefix("cmdstat_").lower()] = (int(stats["calls"]), float(stats["usec"]))
    return out


def _keys(marker: bool) -> list[str]:
    keys = [f"{PREFIX}{kind}:{ELECTION}" for kind in ("leader", "counter")]
    keys.append(f"{PREFIX}session:{SID}")
    keys += [f"{PREFIX}{kind}:{ELECTION}" for kind in ("queue", "contenders")]
    if marker:
        keys.append(f"{PREFIX}data:.tenure-handoff/{ELECTION}")
    return keys


def _args(proposal: int) -> list[Any]:
    return [SID, TICKET, proposal, "b", b"", 0, TTL_MS, f"{PREFIX}session:",
            f"{PREFIX}changed:{ELECTION}", ORDER, "0"]


def prepare(client: redis.Redis) -> None:
    """The instance as a woken waiter finds it: its session alive, its entry first in
    the queue (order 2: the leader's, order 1, withdrawn), no leader key."""
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)
    client.set(f"{PREFIX}session:{SID}", b"", px=600_000)
    client.zadd(f"{PREFIX}queue:{ELECTION}", {TICKET: ORDER})
    client.hset(f"{PREFIX}contenders:{ELECTION}", TICKET,
                lua.entry(SID, CLIENT, "b", b""))


def _timed(n: int, call: Callable[[int], object], reset: Callable[[], object],
           gap: float = 0.0) -> list[int]:
    """Round trips (ns) of ``n`` calls, ``reset`` (untimed) after each; ``gap`` s of idle
    before each call (the server idles as it does between two handovers)."""
    rtts = []
    for i in range(n):
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter_ns()
        call(i)
        rtts.append(time.perf_counter_ns() - t0)
        reset()
    return rtts


@dataclass
class _Samples:
    inside: list[float]
    inner: list[float]
    calls: dict[str, float]
    rtts: list[int]


def _measure(client: redis.Redis, name: str, outer: str, n: int, gap: float,
             call: Callable[[int], object], reset: Callable[[], object],
             into: _Samples) -> None:
    client.config_resetstat()
    _timed(n, call, reset, gap)
    stats = commandstats(client)
    calls, usec = stats.get(outer, (0, 0.0))
    if calls != n:
        raise RuntimeError(f"{name}: Redis counted {calls} {outer} calls, not {n}")
    ours = {cmd: v for cmd, v in stats.items()
            if cmd.split("|")[0] not in NOT_SCRIPT and cmd != outer}
    into.inside.append(usec / n)
    into.inner.append(sum(u for _, u in ours.values()) / n)
    into.calls = {cmd: c / n for cmd, (c, _) in ours.items() if c}


def _check_win(name: str, take: Callable[[int], object], reset: Callable[[], object]
               ) -> None:
    """Raises unless one more call of ``take`` wins (the path the trace measures)."""
    reply = take(0)
    reset()
    won = int(reply[0]) == 1 if isinstance(reply, list) else reply in (1, b"OK", True)
    if not won:
        raise RuntimeError(f"{name}: the take did not win ({reply!r}): not the path measured")


def _taker(script: Any, keys: list[str], proposals: Iterator[int]
           ) -> Callable[[int], object]:
    """One take with ``script``: the next (rising) proposal, so that every call wins."""
    return lambda _: script(keys, _args(next(proposals)))


def trace(client: redis.Redis, n: int = 1000, rounds: int = 3, gap: float = 0.0,
          warmup: int = 20) -> list[Row]:
    """Every variant of :func:`variants`, then a plain SET NX, on ``client``'s one
    connection, after ``warmup`` uncounted calls each. In Redis: ``rounds`` rounds of a
    block of ``n`` calls per variant (the command statistics are per instance), the
    median of the rounds' means. Round trips: then ``n`` x ``rounds`` calls of each,
    the variants interleaved call by call (the shared machine's state changes by the
    second: interleaved, every variant meets the same), median and 90th percentile."""
    leader = f"{PREFIX}leader:{ELECTION}"
    proposals = itertools.count(1)
    names = [*variants(), PLAIN]
    samples = {name: _Samples([], [], {}, []) for name in names}

    def reset() -> object:
        return client.delete(leader)

    prepare(client)
    calls: dict[str, Callable[[int], object]] = {}
    for name, (source, marker) in variants().items():
        take = _taker(client.register_script(source), _keys(marker), proposals)
        _timed(warmup, take, reset)
        _check_win(name, take, reset)
        calls[name] = take
    calls[PLAIN] = lambda _: client.set(leader, TICKET, nx=True, px=TTL_MS)
    for _ in range(rounds):  # in Redis: blocks of n calls of one variant
        for name, call in calls.items():
            _measure(client, name, "set" if name == PLAIN else "evalsha", n, gap, call,
                     reset, samples[name])
    order = list(calls.items())
    shuffle = random.Random(0).shuffle
    for _ in range(n * rounds):  # round trips: interleaved call by call, in a new order
        shuffle(order)  # each time (no variant always follows the same one)
        for name, call in order:
            samples[name].rtts += _timed(1, call, reset, gap)
    for name, call in calls.items():  # still the path measured at the end
        _check_win(name, call, reset)
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)
    rows = []
    for name in names:
        got = samples[name]
        us = sorted(got.rtts)
        rows.append(Row(name, statistics.median(got.inside), statistics.median(got.inner),
                        got.calls, statistics.median(us) / 1000, us[int(len(us) * 0.9)] / 1000))
    return rows


def render(rows: Sequence[Row]) -> str:
    """A plain-text table of ``rows``."""
    lines = [f"{'variant':36} {'in Redis':>8} {'step':>6} {'cmds':>6} {'Lua':>6} "
             f"{'RTT p50':>8} {'step':>6} {'RTT p90':>8}  inner calls/call",
             f"{'':36} {'us':>8} {'us':>6} {'us':>6} {'us':>6} {'us':>8} {'us':>6} {'us':>8}"]
    full = rows[0]
    for r in rows:
        calls = " ".join(f"{c}:{k:g}" for c, k in sorted(r.calls.items()))
        step, rtt_step = "", ""
        if r.name.startswith("- "):  # what removing the step saved: the step's cost
            step = f"{full.inside - r.inside:6.1f}"
            rtt_step = f"{full.rtt_median - r.rtt_median:6.1f}"
        lines.append(f"{r.name:36} {r.inside:8.1f} {step:>6} {r.inner:6.1f} {r.lua:6.1f} "
                     f"{r.rtt_median:8.1f} {rtt_step:>6} {r.rtt_p90:8.1f}  {calls}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=1000, help="calls per variant (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="idle before each call, ms (default 0: a hot server)")
    parser.add_argument("--url", help="redis://host:port (default: start a lab instance)")
    ns = parser.parse_args(argv)
    if ns.url:
        print(render(trace(redis.Redis.from_url(ns.url), ns.n, ns.rounds, ns.gap_ms / 1000)))
        return 0
    from tenure.conformance.lab import start_cluster
    with start_cluster("redis", nodes=1) as cluster:
        host, port = cluster.nodes[0].client_address.rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port), socket_timeout=10)
        print(render(trace(client, ns.n, ns.rounds, ns.gap_ms / 1000)))
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
