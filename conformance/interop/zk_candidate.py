"""One ZooKeeper election candidate in its own process, for tenure's ``layout=native``
interop tests (tests/zookeeper/test_zookeeper_native.py).

    python zk_candidate.py MODE HOSTS PATH ID SESSION_SECONDS

MODE is what runs the candidate:

* ``kazoo-election``: kazoo's ``Election``, its lock made with
  ``extra_lock_patterns=["lock-"]`` so that it sees Curator-form nodes (tenure's
  ``layout=native`` and Curator's own) as contenders;
* ``kazoo-lock``: kazoo's ``Lock`` with the same pattern;
* ``kazoo-default``: kazoo's ``Election`` as it comes, without the pattern (it does NOT
  see Curator-form nodes: the tests show the two leaders this makes);
* ``tenure``: a tenure candidate (``zookeeper://HOSTS?layout=native``, TTL =
  SESSION_SECONDS, election PATH without its leading ``/``), for a leader that can be
  SIGKILLed.

It prints one line per event, flushed, the same protocol as the Curator candidate
(conformance/interop/curator): ``queued NODE`` once its node exists, ``leading NODE
CZXID OWNER`` when it leads (OWNER: the node's session id in hex, tenure's candidate
id), ``released`` after a ``release`` line on stdin, ``error TEXT``.
EOF on stdin ends it (its session is closed, its node goes).
"""

from __future__ import annotations

import sys
import threading
import time

from kazoo.client import KazooClient


def say(line: str) -> None:
    print(line, flush=True)


def run_kazoo(mode: str, hosts: str, path: str, ident: str, session: float) -> None:
    zk = KazooClient(hosts=hosts, timeout=session)
    zk.start(timeout=30)
    release = threading.Event()
    if mode == "kazoo-lock":
        lock = zk.Lock(path, ident, extra_lock_patterns=["lock-"])
    else:
        election = zk.Election(path, ident)
        if mode == "kazoo-election":  # Election takes no patterns: give it a lock that has
            election.lock = zk.Lock(path, ident, extra_lock_patterns=["lock-"])
        lock = election.lock

    def lead() -> None:
        with lock:
            node = lock.node
            stat = zk.exists(f"{path}/{node}")
            owner = f"{stat.ephemeralOwner:x}" if stat else "-"
            say(f"leading {node} {stat.czxid if stat else -1} {owner}")
            release.wait()
        say("released")

    worker = threading.Thread(target=lead, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while lock.node is None:  # kazoo creates the node inside acquire and tells nobody
        if time.monotonic() > deadline:
            say("error not queued in time")
            sys.exit(1)
        time.sleep(0.01)
    say(f"queued {lock.node}")
    for line in sys.stdin:
        if line.strip() == "release":
            release.set()
    zk.stop()
    zk.close()


def run_tenure(hosts: str, path: str, ident: str, session: float) -> None:
    import tenure

    with tenure.connect(f"zookeeper://{hosts}?layout=native", ttl=session,
                        candidate_id=ident) as client:
        election = client.election(path.lstrip("/"))
        ticket: list[str] = []
        won = threading.Event()

        def campaign() -> None:
            lead = election.campaign(value=ident.encode(), timeout=120)
            node = lead.ticket.key.rsplit("/", 1)[1]
            ticket.append(f"leading {node} {lead.token} {lead.candidate_id}")
            won.set()
            for line in sys.stdin:
                if line.strip() == "release":
                    lead.resign()
                    say("released")

        threading.Thread(target=campaign, daemon=True).start()
        deadline = time.monotonic() + 30
        while not any(c.value == ident.encode() for c in election.contenders()):
            if time.monotonic() > deadline:
                say("error not queued in time")
                sys.exit(1)
            time.sleep(0.02)
        say("queued")
        won.wait()
        say(ticket[0])
        threading.Event().wait()  # until killed


def main(argv: list[str]) -> None:
    if len(argv) != 5:
        sys.exit(__doc__)
    mode, hosts, path, ident, session = argv
    if mode == "tenure":
        run_tenure(hosts, path, ident, float(session))
    elif mode in ("kazoo-election", "kazoo-lock", "kazoo-default"):
        run_kazoo(mode, hosts, path, ident, float(session))
    else:
        sys.exit(f"unknown mode {mode!r}; see the docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
