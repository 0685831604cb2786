"""A script's replies never answer a later script on the kept connections (Lanes).

``Quorum.run_script`` writes one script to every instance's lane before it reads the
first reply. An exception outside redis-py's client errors in the middle of those reads
(KeyboardInterrupt or SystemExit from a signal handler in the campaigning thread --
``tenure run`` lets Ctrl-C raise until the store has answered once) used to give the
lanes back with the replies of the instances not read yet still in their sockets: the
next script on those lanes read the previous one's reply as its own, and every script
after it the one before (an ACQUIRE could read a STATE's or another ACQUIRE's answer).
Three real instances, ~1 s.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from tenure.adapters.redis import RedisStore
from tenure.config import parse_backend_url
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis]


def test_an_interrupted_read_leaves_no_reply_for_the_next_script(lab: LabFactory) -> None:
    cluster = lab.start("redis", nodes=3)
    backend, _ = parse_backend_url(cluster.url)
    store = RedisStore.from_url(backend)
    try:
        store.open_session(2.0)
        quorum = store._quorum
        instances = quorum.instances
        shas = [inst.client.script_load("return ARGV[1]") for inst in instances]
        by_scripts = {id(inst.scripts): sha for inst, sha in zip(instances, shas, strict=True)}

        def pick(scripts: Any) -> Any:
            return SimpleNamespace(sha=by_scripts[id(scripts)])

        def on_lanes(word: bytes) -> bool:
            """Runs the script with ``word``; True if it went out on every lane."""
            before = [inst.lane.requests for inst in instances]
            assert quorum.run_script(pick, [], [word]) == [word] * 3
            return all(inst.lane.requests > n for inst, n in zip(instances, before, strict=True))

        deadline = time.monotonic() + 10
        while not on_lanes(b"warm"):  # the lanes are connected in the background
            assert time.monotonic() < deadline, "the scripts never went out on the lanes"
            time.sleep(0.01)

        parser = instances[0].lane.conn._parser
        real = parser.read_response

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            parser.read_response = real
            raise KeyboardInterrupt  # as a signal handler raises it mid-read

        parser.read_response = interrupted
        with pytest.raises(KeyboardInterrupt):
            quorum.run_script(pick, [], ["first"])
        # Every later script gets its own replies on every instance, not "first" --
        # also once the interrupted lane is connected again (its next call goes through
        # the pools and connects it in the background).
        went = 0
        deadline = time.monotonic() + 10
        for n in range(1000):
            went += on_lanes(f"later {n}".encode())
            if went >= 3:
                break
            assert time.monotonic() < deadline, "the lanes were not used again"
            time.sleep(0.01)
    finally:
        store.close_session()
        store.close()
