"""A leader-election loop written the way Consul's leader-election guide describes.

    session = PUT /v1/session/create {"TTL": ..., "LockDelay": ...}  (renewed every TTL/2)
    PUT /v1/kv/<key>?acquire=<session>     -> true: leader
    else GET /v1/kv/<key>?index=<X>        blocking query until the key changes;
         when it has no Session any more, try the acquire again
    PUT /v1/kv/<key>?release=<session>     to step down

Raw HTTP (``http.client``, one keep-alive connection per thread), no client library.
The guide's session carries the node's health check and the default 15 s lock-delay;
a crashed *process* does not fail the node's check, so a guide-follower who wants
failover on a crash uses a TTL session, as here. For the same failover as tenure's
adapter we set ``LockDelay`` to 0 as it does (with the default 15 s, every crash
failover would take 15 s longer). Consul invalidates a session only after 2 x TTL.
URL: ``consul-guide://h:p``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from typing import Any

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback

WAIT = "5s"
"""The blocking query's ``wait`` (Consul's default is 5 min; shorter keeps exits quick)."""


class _HTTP:
    """One keep-alive HTTP connection to the agent."""

    def __init__(self, address: str, timeout: float) -> None:
        host, _, port = address.rpartition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data)
        response = self.conn.getresponse()
        raw = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if "json" not in headers.get("content-type", ""):
            return response.status, raw.decode(errors="replace"), headers  # e.g. a 404's text
        return response.status, (json.loads(raw) if raw else None), headers

    def close(self) -> None:
        self.conn.close()


class ConsulGuideContender(Contender):
    """Session + KV acquire + blocking query, per Consul's leader-election guide."""

    reports_loss = True

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        self.address = url.split("://", 1)[-1].split(",")[0].split("/")[0]
        self.key = f"/v1/kv/tenure-bench/{election}"
        self.http = _HTTP(self.address, timeout=30)
        status, body, _ = self.http.call("PUT", "/v1/session/create", {
            "Name": member_id, "TTL": f"{max(ttl, 1):g}s", "LockDelay": "0s",
            "Checks": [], "Behavior": "release",
        })
        if status != 200:
            raise RuntimeError(f"session create: HTTP {status} {body}")
        self.session: str = body["ID"]
        self._stop = threading.Event()
        self._leading = False
        self.renewals = 0
        self.blocking_queries = 0
        self._renewer = threading.Thread(target=self._renew, daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        conn = _HTTP(self.address, timeout=self.ttl)
        try:
            while not self._stop.wait(self.ttl / 2):
                try:
                    status, _, _ = conn.call("PUT", f"/v1/session/renew/{self.session}")
                    self.renewals += 1
                except OSError as exc:
                    status = 0
                    conn.close()
                    conn = _HTTP(self.address, timeout=self.ttl)
                    detail = str(exc)
                else:
                    detail = f"HTTP {status}"
                if status == 404 and self._leading:
                    self.on_lost(f"session invalidated ({detail})", None)
                    return
        finally:
            conn.close()

    def campaign(self) -> dict[str, Any]:
        index = "0"
        while True:
            status, acquired, _ = self.http.call(
                "PUT", f"{self.key}?acquire={self.session}", self.member_id)
            if status == 200 and acquired is True:
                self._leading = True
                return {}
            while True:  # blocking query until the key has no holder
                status, entries, headers = self.http.call(
                    "GET", f"{self.key}?index={index}&wait={WAIT}")
                self.blocking_queries += 1
                index = headers.get("x-consul-index", index)
                if status == 404 or not entries or not entries[0].get("Session"):
                    break

    def resign(self) -> None:
        self._leading = False
        self.http.call("PUT", f"{self.key}?release={self.session}")

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.http.call("PUT", f"/v1/session/destroy/{self.session}")
        self.http.close()

    def counters(self) -> dict[str, float]:
        return {"renewals": self.renewals, "blocking_queries": self.blocking_queries}
