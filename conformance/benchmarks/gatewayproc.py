"""A ``tenure serve`` process for the benchmark: started on a free loopback port in
front of one store, ready once ``/healthz`` answers, killed with its process group."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import tempfile
from types import TracebackType

from tenure.childproc import signal_group, spawn_guarded
from tenure.conformance.benchmarks.peers.gateway import read_answer
from tenure.conformance.lab.cluster import free_port, wait_until


class Gateway:
    """``tenure serve --backend URL --listen 127.0.0.1:PORT --ttl TTL``, otherwise with
    serve's defaults -- warm sessions on (``--warm-sessions 2``), as a user who runs
    ``tenure serve`` gets it: the bench measures that gateway, not a tuned one."""

    def __init__(self, backend_url: str, ttl: float, timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"tenure-serve://127.0.0.1:{self.port}"
        # Its log goes to a file, not a pipe nobody reads while it runs: serve logs two
        # INFO lines per caller leadership, and a full pipe (64 KiB, a few hundred
        # campaigns) would block the gateway in the middle of a measurement.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()
        self.process = spawn_guarded(
            [sys.executable, "-m", "tenure.cli.main", "serve", "--backend", backend_url,
             "--listen", f"127.0.0.1:{self.port}", "--ttl", repr(ttl),
             "--max-ttl", repr(max(60.0, ttl))],
            stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            wait_until(self._healthy, timeout, "tenure serve answering /healthz")
        except BaseException:
            self.close()
            raise

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"tenure serve exited ({self.process.returncode}): "
                               f"{self.log_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, size: int = 800) -> str:
        """The last ``size`` characters the gateway wrote to stderr."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-size:]

    def close(self) -> None:
        """Stops the gateway (SIGTERM, then SIGKILL) and drops its log."""
        if self.process.poll() is None:
            signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def leader_queries(gateway_url: str, election: str, seconds: float, callers: int = 4) -> float:
    """Leader queries per second served by the gateway: ``callers`` threads, each on a
    keep-alive connection with one request in flight, ``GET
    /v1/elections/{election}/leader`` for ``seconds`` (the gateway answers from its
    observer's cache); only 200 answers count. The callers share the 2 cores with the
    gateway, so this is a floor on what the gateway alone can serve.

    Hand-written HTTP/1.1 on a socket, not http.client: the callers run on the same
    cores, and http.client's per-answer parsing in Python costs about as much CPU as
    the gateway's answer itself, so the figure would measure the callers."""
    import threading
    import time

    host, _, port = gateway_url.split("://", 1)[1].rpartition(":")
    request = (f"GET /v1/elections/{election}/leader HTTP/1.1\r\n"
               f"Host: {host}:{port}\r\n\r\n").encode()
    counts = [0] * callers
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def call(slot: int) -> None:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffered = b""
            while time.monotonic() < stop:
                sock.sendall(request)
                status, _, buffered = read_answer(sock, buffered)
                if status == 200:
                    counts[slot] += 1
                elif len(errors) < 3:
                    errors.append(f"HTTP {status}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if not sum(counts):
        raise RuntimeError(f"no leader query was answered 200 ({', '.join(errors)})")
    return sum(counts) / elapsed

