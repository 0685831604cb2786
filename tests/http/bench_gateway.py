"""Gateway overhead on SQLite: handover and leader queries through ``tenure serve``
against the library called directly, and leader-query throughput.

    .venv/bin/python tests/http/bench_gateway.py [--rounds 30] [--seconds 5]

Prints medians (ms) and the ratios. Not a test (bounded: a few seconds per part).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpkit import Gateway, call

import tenure


def library_handover(url: str, rounds: int) -> list[float]:
    a, b = tenure.connect(url, ttl=10), tenure.connect(url, ttl=10)
    times = []
    try:
        for i in range(rounds):
            lead = a.election(f"lib/{i}").campaign()
            won: list[float] = []
            waiter = threading.Thread(target=lambda i=i, won=won: (
                b.election(f"lib/{i}").campaign().resign(), won.append(time.perf_counter())))
            waiter.start()
            time.sleep(0.05)  # let b queue (benchmark pacing, not synchronisation)
            start = time.perf_counter()
            lead.resign()
            waiter.join()
            times.append(won[0] - start)
    finally:
        a.close()
        b.close()
    return times


def gateway_handover(gw_url: str, rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        status, grant = call("POST", f"{gw_url}/v1/elections/gw/{i}/campaign", {})
        assert status == 200, grant
        won: list[float] = []

        def wait(i: int = i, won: list[float] = won) -> None:
            _, second = call("POST", f"{gw_url}/v1/elections/gw/{i}/campaign", {})
            won.append(time.perf_counter())
            call("DELETE", f"{gw_url}/v1/leaderships/{second['handle']}")

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)
        start = time.perf_counter()
        call("DELETE", f"{gw_url}/v1/leaderships/{grant['handle']}")
        waiter.join()
        times.append(won[0] - start)
    return times


def leader_latency(url: str, gw_url: str, rounds: int) -> tuple[list[float], list[float]]:
    lib, gw = [], []
    with tenure.connect(url) as client:
        election = client.election("q")
        for _ in range(rounds):
            start = time.perf_counter()
            election.leader()
            lib.append(time.perf_counter() - start)
    call("GET", f"{gw_url}/v1/elections/q/leader")
    for _ in range(rounds):
        start = time.perf_counter()
        call("GET", f"{gw_url}/v1/elections/q/leader")
        gw.append(time.perf_counter() - start)
    return lib, gw


async def throughput(gw_url: str, seconds: float, connections: int = 16) -> float:
    count = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        async def worker() -> None:
            nonlocal count
            while time.monotonic() < end:
                async with s.get(f"{gw_url}/v1/elections/q/leader") as answer:
                    await answer.read()
                    count += answer.status == 200
        await asyncio.gather(*(worker() for _ in range(connections)))
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp()
    url = f"sqlite://{workdir}/bench.db"
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    with Gateway.start(["--backend", url, "--ttl", "10"]) as gw:
        lib_h = library_handover(url, args.rounds)
        gw_h = gateway_handover(gw.url, args.rounds)
        lib_q, gw_q = leader_latency(url, gw.url, args.rounds * 10)
        rate = asyncio.run(throughput(gw.url, args.seconds))
    print(f"handover   library {ms(lib_h):7.2f} ms  gateway {ms(gw_h):7.2f} ms  "
          f"ratio {ms(gw_h) / ms(lib_h):.1f}x  (medians of {args.rounds})")
    print(f"leader     library {ms(lib_q):7.3f} ms  gateway {ms(gw_q):7.3f} ms  "
          f"added {ms(gw_q) - ms(lib_q):.3f} ms  (medians of {args.rounds * 10})")
    print(f"leader-query throughput through the gateway: {rate:,.0f} req/s "
          f"(16 connections, {args.seconds:g} s, client on the same 2 cores)")


if __name__ == "__main__":
    main()
