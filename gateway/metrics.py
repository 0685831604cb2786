"""Prometheus metrics and JSON-line logs of leadership changes, from :mod:`tenure.events`.

    from tenure import metrics
    collector = metrics.install()              # into prometheus_client's default REGISTRY
    metrics.install_json_log(sys.stderr)       # one JSON line per leadership change

Everything here listens to the core's events (nothing is hooked into the core itself),
so it sees every :class:`tenure.Client` of the process. Series (label ``election`` is
the election name; ``backend`` is the store scheme, never a URL, so no credentials):

* ``tenure_is_leader{election}``: leaderships this process holds (0 or 1 per client);
* ``tenure_leadership_transitions_total{election,kind}``: kind = won, lost, released;
* ``tenure_campaign_wait_seconds{election}``: histogram of time spent in campaign;
* ``tenure_renewal_latency_seconds{backend}``, ``tenure_renewal_failures_total{backend}``;
* ``tenure_store_errors_total{backend,operation}``: failed renewals, expired sessions,
  and whatever else a caller reports with :meth:`Metrics.store_error`;
* ``tenure_loss_detection_seconds{election}``: histogram of the ``late`` field of a loss
  (seconds from the validity deadline, or the store's report, to the loss callback).

Needs ``prometheus-client`` (the ``serve`` extra).
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from typing import IO

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from tenure import events

WAIT_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf"))
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                   float("inf"))


def _scheme(backend: object) -> str:
    """The store scheme of a backend description ('etcd://...' -> 'etcd')."""
    text = str(backend)
    return text.split("://", 1)[0] if "://" in text else "unknown"


class Metrics(events.Subscriber):
    """The tenure series in one registry, fed by :mod:`tenure.events`.

        m = Metrics(CollectorRegistry())
        m.start()            # subscribe; m.close() unsubscribes
        m.store_error("etcd", "leader")
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.is_leader = Gauge(
            "tenure_is_leader", "Leaderships this process holds in the election",
            ["election"], registry=registry,
        )
        self.transitions = Counter(
            "tenure_leadership_transitions", "Leadership changes of this process",
            ["election", "kind"], registry=registry,
        )
        self.campaign_wait = Histogram(
            "tenure_campaign_wait_seconds", "Time from campaign start to winning",
            ["election"], buckets=WAIT_BUCKETS, registry=registry,
        )
        self.renewal_latency = Histogram(
            "tenure_renewal_latency_seconds", "Session renewal round trip",
            ["backend"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.renewal_failures = Counter(
            "tenure_renewal_failures", "Failed session renewals", ["backend"],
            registry=registry,
        )
        self.store_errors = Counter(
            "tenure_store_errors", "Store operations that failed", ["backend", "operation"],
            registry=registry,
        )
        self.loss_detection = Histogram(
            "tenure_loss_detection_seconds",
            "Seconds from the validity deadline (or the store's report) to the loss callback",
            ["election"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}


    def store_error(self, backend: str, operation: str) -> None:
        """Counts one failed store operation (``backend``: a scheme or description)."""
        self.store_errors.labels(_scheme(backend), operation).inc()

    def handle(self, event: events.Event) -> None:
        """Updates the series for one event (the events listener)."""
        fields = event.fields
        kind = event.kind
        if kind == "campaign_won":
            election = str(fields["election"])
            self._change(election, +1)
            self.transitions.labels(election, "won").inc()
            self.campaign_wait.labels(election).observe(float(fields.get("waited", 0.0)))
        elif kind in ("leadership_lost", "leadership_released"):
            election = str(fields["election"])
            self._change(election, -1)
            self.transitions.labels(election, kind.removeprefix("leadership_")).inc()
            if kind == "leadership_lost":
                self.loss_detection.labels(election).observe(float(fields.get("late", 0.0)))
        elif kind == "renewal":
            backend = _scheme(fields.get("backend", ""))
            self.renewal_latency.labels(backend).observe(float(fields.get("latency", 0.0)))
            if not fields.get("ok", True):
                self.renewal_failures.labels(backend).inc()
                self.store_errors.labels(backend, "renew").inc()
        elif kind == "session_expired":
            self.store_errors.labels(_scheme(fields.get("backend", "")), "session").inc()

    def _change(self, election: str, delta: int) -> None:
        with self._lock:
            held = max(0, self._held.get(election, 0) + delta)
            self._held[election] = held
            self.is_leader.labels(election).set(held)


def install(registry: CollectorRegistry = REGISTRY) -> Metrics:
    """Registers the tenure series in ``registry`` and starts feeding them."""
    return Metrics(registry).start()


LEADERSHIP_KINDS = frozenset({"campaign_won", "leadership_lost", "leadership_released",
                              "session_expired"})


class JsonLog(events.Subscriber):
    """Writes one JSON line per leadership change (and session expiry) to a stream.

        log = JsonLog(sys.stderr).start()
        # {"ts": "...", "event": "campaign_won", "election": "e", "candidate_id": ..., ...}
        log.close()
    """

    def __init__(self, stream: IO[str], redact: Callable[[str], str] = lambda s: s) -> None:
        self.stream = stream
        self._redact = redact
        self._lock = threading.Lock()


    def handle(self, event: events.Event) -> None:
        """Writes ``event`` if it is a leadership change."""
        if event.kind not in LEADERSHIP_KINDS:
            return
        self.write(event.kind, **event.fields)

    def write(self, kind: str, **fields: object) -> None:
        """Writes one line ``{"ts", "event", **fields}`` (strings pass ``redact``)."""
        record: dict[str, object] = {
            "ts": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "event": kind,
        }
        for key, value in fields.items():
            record[key] = self._redact(value) if isinstance(value, str) else value
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def install_json_log(stream: IO[str], redact: Callable[[str], str] = lambda s: s) -> JsonLog:
    """Starts writing JSON lines of leadership changes to ``stream``."""
    return JsonLog(stream, redact).start()
