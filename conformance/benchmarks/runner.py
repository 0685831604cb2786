"""Runs the measurements of every system on every store and collects :class:`Row`s.

Stores come from ``--lab BACKEND`` (a 1-node lab cluster started here, or a temporary
SQLite file, or two free ports for the Bully reference) or ``--backend URL`` (the
user's store; peers use its first host). Every (system, measurement) pair gives a row:
``ok`` with its samples, ``unsupported`` with the reason, or ``failed`` with the error;
nothing is dropped.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenure.conformance.benchmarks import detection, failover, handover, idle, scale
from tenure.conformance.benchmarks.gatewayproc import Gateway
from tenure.conformance.benchmarks.scale import ScaleRow
from tenure.conformance.benchmarks.stats import Summary
from tenure.conformance.benchmarks.systems import (
    MEASUREMENTS,
    STORE_TTL,
    System,
    idle_system,
    store_hosts,
    systems_for,
)
from tenure.conformance.lab.proxy import Proxy, ProxyGroup

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How many samples each measurement takes."""

    handovers: int = 50
    kills: int = 10
    detections: int = 3
    campaigns: int = 100
    """Uncontended campaigns per system (a few ms each: 20 left the gateway's overhead,
    a difference of two medians, moving by 1.5 ms from run to run)."""
    scale_elections: tuple[int, ...] = (1, 100, 1000)
    scale_waiters: tuple[int, ...] = (10, 100, 500)
    scale_window: float = 0.0
    """Seconds each scale (a) point is watched (0: 3 x TTL, at least 5 s)."""
    idle_window: float = idle.DEFAULT_WINDOW
    """Seconds the idle measurement (and its store baseline) is watched."""
    idle_followers: int = idle.DEFAULT_FOLLOWERS
    """Waiting candidates behind the one leader in the idle measurement."""

    @classmethod
    def quick(cls) -> Sizes:
        """A few samples each: a smoke run."""
        return cls(handovers=8, kills=2, detections=1, campaigns=5,
                   scale_elections=(1, 20), scale_waiters=(3, 6), scale_window=1.0,
                   idle_window=1.0, idle_followers=2)


@dataclass
class Row:
    """One measurement of one system on one store."""

    store: str
    system: str
    measurement: str
    status: str  # ok | unsupported | failed | never (a loss the tool never reported)
    samples: list[float] = field(default_factory=list)
    reason: str = ""
    ttl: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    unsafe: bool = False
    baseline: bool = False

    @property
    def summary(self) -> Summary | None:
        """The summary of the samples, if any."""
        return Summary.of(self.samples) if self.samples else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        summary = self.summary
        return {
            "store": self.store, "system": self.system, "measurement": self.measurement,
            "status": self.status, "reason": self.reason, "ttl": self.ttl,
            "summary": summary.as_dict() if summary else None, "samples": self.samples,
            "extra": self.extra, "unsafe": self.unsafe, "baseline": self.baseline,
        }


@dataclass
class StoreUnderTest:
    """A store the run measures: its backend name, URL and (lab) cluster."""

    backend: str
    url: str
    cluster: Any = None
    idle_baseline: float | None = None
    """The store's CPU s/min with no candidates (idle measurement), once measured."""


@contextlib.contextmanager
def lab_store(backend: str, workdir: Path) -> Iterator[StoreUnderTest]:
    """A fresh 1-node lab store (SQLite: a file; Bully: two free loopback ports)."""
    if backend == "sqlite":
        yield StoreUnderTest("sqlite", f"sqlite://{workdir}/bench-{uuid.uuid4().hex[:6]}.db")
        return
    if backend == "bully":
        from tenure.conformance.lab.cluster import free_port

        peers = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        yield StoreUnderTest("bully", f"bully://{peers}?me={{me}}")
        return
    from tenure.conformance.lab import start_cluster

    with start_cluster(backend, nodes=1) as cluster:
        yield StoreUnderTest(backend, cluster.url, cluster)


@contextlib.contextmanager
def store_for(backend: str, url: str | None, workdir: Path) -> Iterator[StoreUnderTest]:
    """The user's store at ``url``, or a lab store of ``backend`` when ``url`` is None."""
    if url is not None:
        yield StoreUnderTest(backend, url)
        return
    with lab_store(backend, workdir) as store:
        yield store


def run_store(store: StoreUnderTest, sizes: Sizes, progress: Progress,
              only: tuple[str, ...] = MEASUREMENTS, tools: tuple[str, ...] = ()) -> list[Row]:
    """Every measurement of every system on ``store``, after a store warm-up. The
    handover and campaign samples of all systems are taken first, in blocks the systems
    take turns at (:func:`interleaved`); every other measurement runs system by system."""
    rows: list[Row] = []
    every = systems_for(store.backend, store.url)
    systems = [s for s in every if not tools or s.tool in tools]
    if systems and ("handover" in only or "campaign" in only):
        # tenure's library (always first): a gateway system has no URL of its own here
        _warm_up(store, every[0], sizes, progress)
    taken: dict[str, dict[str, Taken]] = {s.label: {} for s in systems}
    spent: dict[str, dict[str, float]] = {s.label: {} for s in systems}
    side_by_side = [m for m in SIDE_BY_SIDE if m in only]
    if side_by_side:
        # Gateways only for this phase: an idle ``tenure serve`` must not run (and renew
        # a session) during another system's idle measurement.
        with contextlib.ExitStack() as stack:
            gateways = {s.label: _gateway(s, store, stack) for s in systems}
            for measurement in side_by_side:
                seconds: dict[str, float] = {}
                for label, result in interleaved(measurement, _count(sizes, measurement),
                                                 systems, store, gateways, progress,
                                                 seconds).items():
                    taken[label][measurement] = result
                for label, took in seconds.items():
                    spent[label][measurement] = took
    for system in systems:
        rows.extend(run_system(system, store, sizes, progress, only,
                               taken[system.label], spent[system.label]))
    return rows


Taken = list[float] | BaseException | str
"""A side-by-side measurement of one system (:func:`run_store`): its samples, the error
that ended them, or why it was not taken (its gateway did not start)."""


def _gateway(system: System, store: StoreUnderTest,
             stack: contextlib.ExitStack) -> Gateway | str | None:
    """The ``tenure serve`` process ``system`` runs through (closed with ``stack``), the
    reason it did not start, or None (the system needs none)."""
    if not system.needs_gateway or store.backend == "bully":
        return None
    try:
        gateway = Gateway(store.url, system.ttl)
    except Exception as exc:
        return f"tenure serve did not start: {exc}"
    stack.callback(gateway.close)
    return gateway


BLOCKS = 5
"""Blocks each system's resign-handover and campaign samples are taken in (see
:func:`interleaved`)."""

SIDE_BY_SIDE = ("handover", "campaign")
"""The latency measurements taken side by side (:func:`interleaved`): the issue's
ratios and the gateway's overhead are differences between systems' rows of these, so
no system may be measured in a better minute than another."""


def _count(sizes: Sizes, measurement: str) -> int:
    """How many samples a :data:`SIDE_BY_SIDE` measurement takes."""
    return sizes.handovers if measurement == "handover" else sizes.campaigns


def _sample(measurement: str, system: System, url: str, store: StoreUnderTest,
            count: int) -> list[float]:
    """``count`` samples of a :data:`SIDE_BY_SIDE` measurement, in one set of workers."""
    election = f"bench/{measurement}/{uuid.uuid4().hex[:8]}"
    if measurement == "handover":
        return handover.measure(system.tool, url, election, system.ttl, count,
                                fixed_order=store.backend == "bully")
    return handover.uncontended(system.tool, url, election, system.ttl, count)


def interleaved(
    measurement: str, count: int, systems: list[System], store: StoreUnderTest,
    gateways: dict[str, Gateway | str | None], progress: Progress,
    spent: dict[str, float] | None = None,
) -> dict[str, Taken]:
    """Each system's ``count`` samples of ``measurement`` (one of :data:`SIDE_BY_SIDE`),
    or the error that ended them, or why it was not measured (its gateway did not
    start: the reason string, so its row says so instead of measuring it alone).

    Taken in :data:`BLOCKS` blocks: every system measures one block in turn, and who
    goes first rotates from block to block. Side by side in time, so a shared machine's
    slow minute is spread over every system instead of charged to the one measured
    then. Each block is a fresh set of worker processes with its own unreported
    warm-up. Systems that cannot take the measurement, or whose gateway did not start,
    take no turn. ``spent``, if given, gets the seconds each system spent in its
    blocks."""
    able = [s for s in systems
            if not s.why_not(measurement) and not isinstance(gateways[s.label], str)]
    blocks = min(BLOCKS, count)
    sizes_of = [count // blocks + (1 if b < count % blocks else 0) for b in range(blocks)]
    taken: dict[str, Taken] = {label: reason for label, reason in gateways.items()
                               if isinstance(reason, str)}
    taken.update({s.label: [] for s in able})
    for block, size in enumerate(sizes_of):
        turn = block % len(able) if able else 0
        for system in able[turn:] + able[:turn]:
            so_far = taken[system.label]
            if not isinstance(so_far, list):  # an error ended its blocks
                continue
            gateway = gateways[system.label]
            url = gateway.url if isinstance(gateway, Gateway) else system.url
            started = time.monotonic()
            try:
                so_far.extend(_sample(measurement, system, url, store, size))
            except Exception as exc:
                taken[system.label] = exc
            if spent is not None:
                spent[system.label] = (spent.get(system.label, 0.0)
                                       + time.monotonic() - started)
    if able:
        progress(f"{store.backend:9} {measurement}: {count} samples per system in "
                 f"{blocks} interleaved blocks ({', '.join(s.label for s in able)})")
    return taken


def _warm_up(store: StoreUnderTest, system: System, sizes: Sizes, progress: Progress) -> None:
    """Unreported handovers on a fresh store before any system is measured, so that the
    first system measured is not the one that pays for a cold store (a ZooKeeper JVM that
    has not compiled its request path yet); failures here are left to the measurements."""
    count = min(STORE_WARMUP, 2 * sizes.handovers)
    started = time.monotonic()
    try:
        handover.measure(system.tool, system.url, f"bench/warm-up/{uuid.uuid4().hex[:8]}",
                         system.ttl, count, hold=0.005, warmup=0,
                         fixed_order=store.backend == "bully")
    except Exception as exc:
        progress(f"{store.backend:9} warm-up failed (measurements go on): {_reason(exc)}")
        return
    progress(f"{store.backend:9} warm-up: {count} unreported handovers "
             f"({system.label}) in {time.monotonic() - started:.1f} s")


#: Handovers made on a fresh store before its first measurement (see :func:`_warm_up`).
STORE_WARMUP = 100


def run_system(system: System, store: StoreUnderTest, sizes: Sizes, progress: Progress,
               only: tuple[str, ...],
               taken: dict[str, Taken] | None = None,
               spent: dict[str, float] | None = None) -> list[Row]:
    """The measurements of one system; a gateway is started for it if it needs one.
    ``taken``: measurement -> its samples already taken side by side, the error that
    ended them, or why they were not taken (:data:`Taken`); the others are taken here
    (``spent``: measurement -> seconds its side-by-side blocks took, for the progress
    line)."""
    taken = taken or {}
    spent = spent or {}
    rows: list[Row] = []
    running: Gateway | None = None
    gateway_error = ""
    if system.needs_gateway and store.backend != "bully":
        try:
            running = Gateway(store.url, system.ttl)
        except Exception as exc:
            gateway_error = f"tenure serve did not start: {exc}"
    learnt = ""  # a tool that said it cannot: the rest of its measurements are skipped
    try:
        for measurement in only:
            row = Row(store.backend, system.label, measurement, "ok", ttl=system.ttl,
                      unsafe=system.unsafe, baseline=system.baseline)
            already = taken.get(measurement)
            # this gateway's error is not the reason for samples taken through another
            reason = system.why_not(measurement) or (
                already if isinstance(already, str) else
                gateway_error if already is None else "") or learnt
            if measurement == "idle":
                reason = reason or idle.why_not(store.backend) or ""
            if reason:
                row.status, row.reason = "unsupported", reason
                rows.append(row)
                progress(f"{store.backend:9} {system.label:24} {measurement:12} n/a: {reason}")
                continue
            url = running.url if running is not None else system.url
            started = time.monotonic()
            try:
                if already is not None:
                    started -= spent.get(measurement, 0.0)
                    if isinstance(already, BaseException):
                        raise already
                    assert not isinstance(already, str)
                    row.samples = list(already)
                    row.extra["blocks"] = min(BLOCKS, len(already))
                else:
                    _measure(row, measurement, system, url, store, sizes, running)
            except Exception as exc:
                row.status = "failed"
                row.reason = _reason(exc)
                row.extra["trace"] = traceback.format_exc()[-3000:]
                if row.reason.startswith(UNSUPPORTED):
                    row.status = "unsupported"
                    learnt = row.reason
            rows.append(row)
            if measurement == "idle" and row.status == "ok":
                progress(idle.line(row.store, row.system, row.extra))
            else:
                progress(_line(row, time.monotonic() - started))
        if running is not None:
            rows.append(_leader_queries(system, store, running, progress))
    finally:
        if running is not None:
            running.close()
    return rows


def _leader_queries(system: System, store: StoreUnderTest, gateway: Gateway,
                    progress: Progress) -> Row:
    row = Row(store.backend, system.label, "leader-qps", "ok", ttl=system.ttl)
    try:
        from tenure.conformance.benchmarks.gatewayproc import leader_queries

        row.extra["qps"] = leader_queries(gateway.url, "bench/leader-qps", 3.0)
        progress(f"{store.backend:9} {system.label:24} leader-qps   "
                 f"{row.extra['qps']:.0f} queries/s")
    except Exception as exc:
        row.status, row.reason = "failed", _reason(exc)
        progress(_line(row, 0.0))
    return row


def run_scale(store: StoreUnderTest, sizes: Sizes, progress: Progress) -> list[ScaleRow]:
    """Scale (a) and (b) for tenure on ``store`` (not for peers, nor the Bully
    reference: see :mod:`.scale`)."""
    rows: list[ScaleRow] = []
    if store.backend == "bully":
        return rows
    ttl, _ = STORE_TTL.get(store.backend, (1.0, 1.0))
    hosts = store_hosts(store.url) if store.backend != "sqlite" else ""
    window = sizes.scale_window or max(5.0, 3 * ttl)
    # waiters first: a failed elections point (e.g. Consul's per-IP connection limit)
    # can leave the store refusing this host for a while
    points: list[tuple[str, int]] = [("waiters", n) for n in sizes.scale_waiters]
    points += [("elections", n) for n in sizes.scale_elections]
    done: set[tuple[str, int]] = set()
    for kind, size in points:
        started = time.monotonic()
        if kind == "waiters" and store.backend == "sqlite":  # one row says why
            if ("waiters", 0) in done:
                continue
            done.add(("waiters", 0))
            rows.append(scale.ScaleRow(
                store.backend, kind, 0, "unsupported",
                "no counter: SQLite has no server, and by design every waiter of an "
                "election listens on the election's one bell file (inotify), so each "
                "change wakes every waiter on the host"))
            continue
        if (kind, size) in done:
            continue
        done.add((kind, size))
        try:
            if kind == "elections":
                row = scale.elections_point(store.backend, store.url, hosts, ttl, size,
                                            window)
            else:
                row = scale.waiters_point(store.backend, store.url, hosts, size, 5,
                                          min(window, 3.0))
        except Exception as exc:
            row = scale.ScaleRow(store.backend, kind, size, "failed", _reason(exc))
        rows.append(row)
        progress(f"{store.backend:9} scale {kind:9} {size:6}: {_scale_line(row)} "
                 f"({time.monotonic() - started:.1f} s)")
    return rows


def _scale_line(row: ScaleRow) -> str:
    if row.status != "ok":
        return f"{row.status}: {row.reason}"
    parts = []
    if row.requests_per_s is not None:
        parts.append(f"{row.requests_per_s:.2f} store req/s")
    if row.renewals_per_s is not None:
        parts.append(f"{row.renewals_per_s:.2f} renewals/s")
    if row.cpu_per_s is not None:
        parts.append(f"client CPU {row.cpu_per_s * 100:.2f} %")
    if row.requests_per_change is not None:
        parts.append(f"{row.requests_per_change:.1f} store req/change")
    if row.notifications_per_change is not None:
        parts.append(f"{row.notifications_per_change:.1f} notifications/change")
    return ", ".join(parts) or "no counter on this store"


def _measure(row: Row, measurement: str, system: System, url: str, store: StoreUnderTest,
             sizes: Sizes, gateway: Gateway | None = None) -> None:
    election = f"bench/{measurement}/{uuid.uuid4().hex[:8]}"
    limit = system.ttl * system.expiry_factor * 3 + 5
    if measurement in SIDE_BY_SIDE:
        row.samples = _sample(measurement, system, url, store, _count(sizes, measurement))
    elif measurement == "failover":
        row.samples = failover.measure(system.tool, url, election, system.ttl, sizes.kills,
                                       expiry_factor=system.expiry_factor)
        row.extra["bound"] = system.ttl * system.expiry_factor
    elif measurement == "detect-pause":
        found = detection.pause(system.tool, url, election, system.ttl,
                                system.expiry_factor, sizes.detections, limit)
        _detected(row, found, limit)
    elif measurement == "detect-cut":
        path = _proxied(system)
        try:
            found = detection.cut(system.tool, system.make_url(path.hosts), path, election,
                                  system.ttl, sizes.detections, limit)
        finally:
            path.close()
        _detected(row, found, limit)
    elif measurement == "idle":
        _idle(row, system, url, store, sizes, election, gateway)
    else:
        raise ValueError(f"unknown measurement {measurement!r}")


def _idle(row: Row, system: System, url: str, store: StoreUnderTest, sizes: Sizes,
          election: str, gateway: Gateway | None) -> None:
    """The idle measurement (:mod:`.idle`); the store's baseline is taken once per store,
    before its first idle row."""
    pids = idle.store_pids(store.cluster)
    note = idle.EMBEDDED if store.backend == "sqlite" else idle.NOT_OURS if pids is None \
        else ""
    if store.backend == "sqlite":  # embedded: no store process, 0 is the true figure
        pids, store.idle_baseline = [], 0.0
    if pids is not None and store.idle_baseline is None:
        store.idle_baseline = idle.baseline(pids, sizes.idle_window)
    client_extra = [gateway.process.pid] if gateway is not None else []
    at = idle_system(system, store.url)  # every idle row at one TTL (IDLE_TTL)
    url, row.ttl = (url if gateway is not None else at.url), at.ttl
    row.extra.update(idle.measure(system.tool, url, election, at.ttl,
                                  sizes.idle_followers, sizes.idle_window, pids,
                                  client_extra))
    row.extra.update(baseline_per_min=store.idle_baseline if pids is not None else None,
                     store_note=note)
    if gateway is not None:
        row.extra["client_note"] = "the tenure serve process included"


def _detected(row: Row, found: detection.Detection, limit: float) -> None:
    row.samples = found.after_fault
    row.extra.update(late=found.late, never=found.never, limit=limit)
    if found.never and not found.after_fault:
        row.status = "never"
        row.reason = f"no loss reported within {limit:g} s of the fault"


class _Proxied(ProxyGroup):
    """Blackhole-able TCP proxies in front of every host of a system."""

    def __init__(self, hosts: str) -> None:
        proxies = []
        for item in hosts.split(","):
            host, _, port = item.rpartition(":")
            proxies.append(Proxy((host, int(port)), name=f"bench->{item}"))
        super().__init__(proxies)


def _proxied(system: System) -> _Proxied:
    if not system.hosts:
        raise RuntimeError(f"{system.store} has no network path to cut")
    return _Proxied(system.hosts)


UNSUPPORTED = "the tool says it cannot: "


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "Unsupported: " in text:
        return UNSUPPORTED + text.split("Unsupported: ")[-1][:400]
    return text[:600]


def _line(row: Row, took: float) -> str:
    head = f"{row.store:9} {row.system:24} {row.measurement:12}"
    summary = row.summary
    if row.status != "ok" or summary is None:
        return f"{head} {row.status}: {row.reason[:300]}"
    return (f"{head} n={summary.n:3} median {summary.median * 1e3:9.2f} ms  "
            f"p90 {summary.p90 * 1e3:9.2f} ms  ({took:.1f} s)")


def temp_workdir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for SQLite files and gateway state."""
    return tempfile.TemporaryDirectory(prefix="tenure-bench-")
