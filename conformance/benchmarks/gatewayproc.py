"""A ``tenure serve`` process for the benchmark: started on a free loopback port in
front of one store, ready once ``/healthz`` answers, killed with its process group."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
from types import TracebackType

from tenure.childproc import signal_group, spawn_guarded
from tenure.conformance.lab.cluster import free_port, wait_until


class Gateway:
    """``tenure serve --backend URL --listen 127.0.0.1:PORT --ttl TTL``."""

    def __init__(self, backend_url: str, ttl: float, timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"tenure-serve://127.0.0.1:{self.port}"
        self.process = spawn_guarded(
            [sys.executable, "-m", "tenure.cli.main", "serve", "--backend", backend_url,
             "--listen", f"127.0.0.1:{self.port}", "--ttl", repr(ttl),
             "--max-ttl", repr(max(60.0, ttl))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(self._healthy, timeout, "tenure serve answering /healthz")
        except BaseException:
            self.close()
            raise

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise RuntimeError(f"tenure serve exited ({self.process.returncode}): {err[-800:]}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def close(self) -> None:
        """Stops the gateway (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def leader_queries(gateway_url: str, election: str, seconds: float, callers: int = 4) -> float:
    """Leader queries per second served by the gateway: ``callers`` threads, each on a
    keep-alive connection, ``GET /v1/elections/{election}/leader`` for ``seconds``
    (the gateway answers from its cache). The callers share the 2 cores with the
    gateway, so this is a floor on what the gateway alone can serve."""
    import threading
    import time

    host, _, port = gateway_url.split("://", 1)[1].rpartition(":")
    counts = [0] * callers
    stop = time.monotonic() + seconds

    def call(slot: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            while time.monotonic() < stop:
                conn.request("GET", f"/v1/elections/{election}/leader")
                response = conn.getresponse()
                response.read()
                if response.status in (200, 404):
                    counts[slot] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)
