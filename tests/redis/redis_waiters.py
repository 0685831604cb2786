"""One process of waiting Redis candidates, for tests/redis/test_redis_queue.py (several
of these hold 500 waiters without one process's threads swamping the machine).

    python redis_waiters.py URL ELECTION COUNT PREFIX TTL

Opens COUNT stores (own sessions, no keepers: TTL is long), enqueues candidates
``<PREFIX><i>`` one after the other and steps each with the core's wait (like the
campaign loop). Prints ``queued cid:order:ticket ...`` once every candidate has stepped after
its wake subscription was confirmed on every instance, ``won CID`` when one leads,
``withdrawn CID`` and ``steps N`` (try_lead calls so far, all candidates) on request.
Reads ``withdraw CID``, ``steps`` and ``stop`` from stdin.
"""

from __future__ import annotations

import random
import sys
import threading

from tenure.adapters.redis import WAKE, RedisStore, RedisTicket
from tenure.adapters.redis_quorum import Bell
from tenure.campaign import wait_for
from tenure.config import parse_backend_url
from tenure.errors import StoreUnavailable
from tenure.store import Wait, Won


def main() -> int:
    url, election, count, prefix, ttl = sys.argv[1:6]
    backend, _ = parse_backend_url(url)
    stores = [RedisStore.from_url(backend) for _ in range(int(count))]
    cond = threading.Condition()
    steps = 0
    ready: set[str] = set()
    cancel = threading.Event()

    def say(line: str) -> None:
        with cond:
            print(line, flush=True)

    for store in stores:
        store.open_session(float(ttl))
    tickets: dict[str, tuple[RedisStore, RedisTicket]] = {}
    for i, store in enumerate(stores):
        tickets[f"{prefix}{i}"] = (store, store.enqueue(election, f"{prefix}{i}", b""))

    def subscribed(store: RedisStore) -> bool:
        # Test-only peek at the quorum's bell: one ring per confirmed subscription.
        return store._quorum._bell.counts.get((WAKE, Bell.ALL), 0) >= store.n

    def campaign(cid: str) -> None:
        nonlocal steps
        store, ticket = tickets[cid]
        while not cancel.is_set():
            up = subscribed(store)
            try:
                step = store.try_lead(ticket)
            except StoreUnavailable:  # an overloaded machine: back off, as the core does
                cancel.wait(random.uniform(0.05, 0.5))
                continue
            # Settled once a step read after the subscription was confirmed (if it was
            # confirmed during this step and the signal did not fire, before its arming).
            settled = up or (subscribed(store) and isinstance(step, Wait)
                             and not step.signal.wait(0))
            with cond:
                steps += 1
                if settled:
                    ready.add(cid)
                    cond.notify_all()
            if isinstance(step, Won):
                say(f"won {cid}")
                return
            with step.signal:
                wait_for(step, None, cancel)

    threads = [threading.Thread(target=campaign, args=(cid,), daemon=True) for cid in tickets]
    for thread in threads:
        thread.start()
    with cond:
        if not cond.wait_for(lambda: len(ready) == len(tickets), timeout=600):
            print(f"error: only {len(ready)} of {len(tickets)} ready", flush=True)
            return 1
    say("queued " + " ".join(f"{cid}:{t.order}:{t.key}" for cid, (_, t) in tickets.items()))
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "withdraw":
            store, ticket = tickets[arg]
            store.withdraw(ticket)
            say(f"withdrawn {arg}")
        elif command == "steps":
            with cond:
                print(f"steps {steps}", flush=True)
        elif command == "stop":
            break
    cancel.set()
    for thread in threads:
        thread.join(timeout=10)
    for store in stores:
        store.close_session()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
