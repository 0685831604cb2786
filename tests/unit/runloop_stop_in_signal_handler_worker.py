"""RunLoop.stop() from a signal handler (documented as allowed) deadlocks when the
signal lands while the main thread holds the client's lock (Client.in_use, taken by
every resign) or the leadership's lock (Leadership._end)."""
import os
import signal
import sys
import tempfile
import threading
import time

import tenure
from tenure.runloop import RunLoop

which = sys.argv[1]
d = tempfile.mkdtemp()
with tenure.connect(f"sqlite://{d}/s.db", ttl=5, candidate_id="a") as client:
    election = client.election("e")
    def work(lead):
        lock = client._lock if which == "client" else lead._lock
        with lock:                      # what in_use()/_end() do for a few bytecodes
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)            # the handler runs here, inside the lock
        lead.ended.wait()
    loop = RunLoop(election, work)
    signal.signal(signal.SIGUSR1, lambda *_: loop.stop())
    def give_up() -> None:
        print("DEADLOCK: stop() in the handler never returned", flush=True)
        os._exit(3)
    threading.Timer(5, give_up).start()
    loop.run()
    print("ok: run returned", flush=True)
    os._exit(0)
