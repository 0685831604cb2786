"""tenure through ``tenure serve`` (the HTTP gateway), in handle mode.

    POST /v1/elections/{name}/campaign {"candidate_id", "ttl"}  -> {"handle", "token", ...}
    POST /v1/leaderships/{handle}/keepalive   every ttl/3 while leading
    DELETE /v1/leaderships/{handle}           resign

Each contender is a separate HTTP caller of one gateway process (the gateway opens a
store client with its own session per campaign). A caller that stops sending
keepalives loses its leadership after ``ttl``: that is what a crash failover measures
here. A keepalive answered 410 is reported as the loss. URL: ``tenure-serve://h:p``.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import quote

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


def _call(conn: http.client.HTTPConnection, method: str, path: str,
          body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    return response.status, (json.loads(raw) if raw else None)


class GatewayContender(Contender):
    """One HTTP caller of ``tenure serve`` campaigning in handle mode."""

    reports_loss = True

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
        self.address = (host, int(port))
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)
        self.handle: str | None = None
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.keepalives = 0

    def campaign(self) -> dict[str, Any]:
        status, body = _call(self.conn, "POST",
                             f"/v1/elections/{quote(self.election)}/campaign",
                             {"candidate_id": self.member_id, "ttl": self.ttl})
        if status != 200:
            raise RuntimeError(f"campaign: HTTP {status} {body}")
        self.handle = body["handle"]
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, args=(self.handle,), daemon=True)
        self._keeper.start()
        return {"token": body["token"]}

    def _keep(self, handle: str) -> None:
        conn = http.client.HTTPConnection(*self.address, timeout=self.ttl)
        try:
            while not self._stop.wait(self.ttl / 3):
                status, body = _call(conn, "POST", f"/v1/leaderships/{handle}/keepalive")
                self.keepalives += 1
                if status == 410:
                    self.on_lost(str(body.get("detail", "ended")), None)
                    return
        finally:
            conn.close()

    def resign(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None
        if self.handle is not None:
            _call(self.conn, "DELETE", f"/v1/leaderships/{self.handle}")
            self.handle = None

    def close(self) -> None:
        self._stop.set()
        self.conn.close()

    def counters(self) -> dict[str, float]:
        return {"keepalives": self.keepalives}
