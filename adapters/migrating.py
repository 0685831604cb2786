"""The migrating store: a source store, a target store and a stage, as one Store.

    # every candidate of election "jobs/nightly" runs with a URL naming its stage:
    url = migration_url("dual-source", "zookeeper://zk1:2181", "etcd://e1:2379")
    client = tenure.connect(url, ttl=4)   # then campaign as usual

The protocol (stages, records, URL form, why there are never two leaders across
adjacent stages and tokens never go backwards) is :mod:`tenure.migration`; this module
maps it onto the store steps, so the core is reused unchanged.

Mapping of the contract:

* session: one in each store the stage uses; ``open_session`` returns the SHORTER
  guaranteed lifetime; ``renew_session`` tries both, then fails (SessionExpired first)
  if either failed;
* entry: a stage publication in each used store and a queue entry in the first; a dual
  candidate queues on the target only while it leads the source (so at most one is
  queued there: no lock-order deadlock) and gives that entry back when it stops;
* ``try_lead`` steps the source, then (dual stages) the target, returning either's
  Wait as is; Won only within one step that holds both, after the epoch/offset
  refusals, the re-check that the source is still led and the first ``dual-target``
  leader's marker and offset writes; a source lost meanwhile is SessionExpired (the
  core withdraws both entries and queues again);
* ``leader``/``observe_step``: the target's leader plus the offset once one is recorded,
  else the source's leader unless it published a dual-target stage (it has not led
  yet), in every stage but ``source`` (which reads the source only); while no offset is
  recorded an observer re-steps every ``OBSERVE_SLICE``;
* ``proclaim`` goes to every held store; ``guarded_write``/``read`` to the one whose
  token is in force (:func:`tenure.migration.token_store`); each inner store's loss
  reports are mapped to the migrating ticket and reported once.

Clock reasoning: the core's ``t_sent`` precedes both renewal requests, each keeping its
session alive for its store's lifetime from ITS later send time, so ``t_sent + lifetime
x (1 - drift)`` with the shorter lifetime lies within both sessions' lives. No other
clock is read, but for the observe slice (a re-read, not a deadline).

Limits: ``limits`` is the intersection of both stores'; a dual campaign costs a second
queue entry, a publication per store and a few reads after winning; the operator's
limits (plain URLs, data not copied) are in :mod:`tenure.migration`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tenure.config import BackendURL
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable, TenureError
from tenure.migration import (
    ROLES,
    SCHEME_PREFIX,
    USES,
    check_stage,
    epoch_key,
    epoch_marker,
    epoch_refusal,
    joint_limits,
    no_offset_refusal,
    offset_key,
    offset_record,
    parse_migration_url,
    publication,
    published_stages,
    record_offset,
    refuses_epoch,
    shifted,
    stage_election,
    token_store,
)
from tenure.store import Contender, LeaderInfo, LossReporter, Step, Store, Ticket, Wait, Won

OBSERVE_SLICE = 1.0
"""Longest wait (seconds) of an observer while no token offset is recorded yet."""


@dataclass(eq=False)
class MigratingTicket(Ticket):
    """One candidate's entries in both stores. ``source``/``target`` are the inner
    queue entries (``target`` exists in dual stages only while the source is led);
    ``source_token`` is the source's token while this candidate leads the source;
    ``offset`` the token offset in force once it leads (0 before the epoch)."""

    value: bytes = b""
    source: Ticket | None = None
    target: Ticket | None = None
    published: list[tuple[str, Ticket]] = field(default_factory=list)
    source_token: int | None = None
    offset: int = 0
    loss_reported: bool = False

    def entry(self, role: str) -> Ticket | None:
        """The inner queue entry in the ``role`` store, if any."""
        return self.source if role == "source" else self.target


class MigratingStore(Store[MigratingTicket]):
    """Two stores and a stage, as one Store (see the module docstring)."""

    def __init__(self, source: Store[Any], target: Store[Any], stage: str) -> None:
        super().__init__()
        self.stage = check_stage(stage)
        self.source = source
        self.target = target
        self._stores: dict[str, Store[Any]] = {"source": source, "target": target}
        self._used = [(name, self._stores[name]) for name in USES[self.stage]]
        self._lock = threading.Lock()
        self._opened: set[str] = set()
        self._owners: dict[str, dict[Ticket, MigratingTicket]] = {r: {} for r in ROLES}
        self.limits = joint_limits([store.limits for _, store in self._used])
        for name in ROLES:
            self._stores[name].bind(self._reporter(name))

    @classmethod
    def from_url(cls, url: BackendURL) -> MigratingStore:
        from tenure.adapters import store_class

        stage, *urls = parse_migration_url(url)
        inner: list[Store[Any]] = []
        try:
            for parsed in urls:
                inner.append(store_class(parsed.scheme).from_url(parsed))
            if inner[0].description == inner[1].description:
                raise ConfigError(
                    f"source and target are the same store ({inner[0].description}); name two")
        except BaseException:
            for store in inner:
                store.close()
            raise
        return cls(inner[0], inner[1], stage)

    @property
    def description(self) -> str:
        return (f"{SCHEME_PREFIX}{self.stage}://?source={self.source.description}"
                f"&target={self.target.description}")

    def _reporter(self, name: str) -> LossReporter:
        def report(inner: Ticket, reason: str) -> None:
            with self._lock:
                outer = self._owners[name].get(inner)
                if outer is None or outer.loss_reported:
                    return
                # Once for a won leadership, whichever store lost it first. (Before the win
                # the core ignores reports; the step itself then finds the entry gone.)
                outer.loss_reported = outer.won
            self.report_loss(outer, f"{name} store ({self._stores[name].description}): "
                                    f"{reason}")
        return report

    def _own(self, name: str, inner: Ticket, outer: MigratingTicket | None) -> None:
        with self._lock:
            if outer is None:
                self._owners[name].pop(inner, None)
            else:
                self._owners[name][inner] = outer

    # -- session ------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        # A (re)open after one session expired: end the other one first, so that its
        # entries (e.g. a held source entry) do not block others until it expires.
        lifetimes = []
        for name, store in self._used:
            if name in self._opened:
                with contextlib.suppress(TenureError):
                    store.close_session()
                self._opened.discard(name)
            lifetimes.append(store.open_session(ttl))
            self._opened.add(name)
        return min(lifetimes)

    def renew_session(self, held: frozenset[MigratingTicket]) -> None:
        """Renews BOTH sessions (the core's ``t_sent`` precedes both requests), so that a
        blip on one store does not let the other's session lapse. Entries found gone are
        reported by the inner stores, through the reporters bound in ``__init__``."""
        _each(partial(store.renew_session, frozenset(
            e for e in (t.entry(name) for t in held) if e is not None))
            for name, store in self._used)

    def close_session(self) -> None:
        self._opened.difference_update(name for name, _ in self._used)
        _each(store.close_session for _, store in self._used)

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> MigratingTicket:
        record = publication(self.stage, self.source.description, self.target.description)
        published: list[tuple[str, Ticket]] = []
        first = self._used[0][0]
        try:
            for name, store in self._used:
                published.append(
                    (name, store.enqueue(stage_election(election), candidate_id, record)))
            inner = self._stores[first].enqueue(election, candidate_id, value)
        except BaseException:
            for name, side in published:
                with contextlib.suppress(TenureError):  # the session ends them anyway
                    self._withdraw_inner(name, side)
            raise
        ticket = MigratingTicket(
            election, candidate_id, f"{first}:{inner.key}", inner.order, value=value,
            source=inner if first == "source" else None,
            target=inner if first == "target" else None, published=published,
        )
        self._own(first, inner, ticket)
        return ticket

    def try_lead(self, ticket: MigratingTicket) -> Step:
        if self.stage == "target":
            step = _step(self.target, _need(ticket, "target"))
            if isinstance(step, Wait):
                return step
            offset = self._recorded_offset(ticket.election)
            if offset is None:
                raise no_offset_refusal(ticket.election, self.target.description)
            ticket.offset = offset
            return Won(step.token + offset)
        src = _need(ticket, "source")
        step = _step(self.source, src)
        if isinstance(step, Wait):
            try:
                self._left_source(ticket)
            except BaseException:
                step.signal.close()
                raise
            return step
        first_win = ticket.source_token is None
        ticket.source_token = step.token
        if first_win and refuses_epoch(self.stage):
            self._refuse_if(ticket.election, self._marker_offset(ticket.election), "the source")
        if self.stage == "source":
            return step
        return self._lead_both(ticket, src, step.token)

    def _lead_both(self, ticket: MigratingTicket, src: Ticket, source_token: int) -> Step:
        """A dual stage that leads the source: queue on the target (once) and step it."""
        election = ticket.election
        if ticket.target is None:
            ticket.target = self.target.enqueue(election, ticket.candidate_id, ticket.value)
            self._own("target", ticket.target, ticket)
        tgt = ticket.target
        step = _step(self.target, tgt)
        if isinstance(step, Wait):
            return step
        recorded = self._recorded_offset(election)
        if self.stage == "dual-source":
            self._refuse_if(election, recorded, "the target")
            self._check_still_leads(src, source_token)
            return Won(source_token)
        offset = recorded if recorded is not None else source_token
        try:
            if recorded is None or self._marker_offset(election) != offset:
                # Guarded: commits only while we lead the source. Marker first (see
                # tenure.migration).
                self.source.guarded_write(src, epoch_key(election), epoch_marker(
                    offset, ticket.candidate_id, self.target.description))
            else:
                self._check_still_leads(src, source_token)
            if recorded is None:
                self.target.guarded_write(tgt, offset_key(election), offset_record(
                    offset, ticket.candidate_id, self.source.description))
        except NotLeader as exc:
            raise SessionExpired(
                f"{ticket.candidate_id} stopped leading {election!r} while recording the "
                f"migration epoch ({exc}); queueing again"
            ) from exc
        ticket.offset = offset
        return Won(step.token + offset)

    def _left_source(self, ticket: MigratingTicket) -> None:
        """The source step waits: this candidate does not lead the source (any more), so
        it must not keep a place in the target's queue (see the module docstring)."""
        ticket.source_token = None
        if ticket.target is not None:
            self._withdraw_inner("target", ticket.target)  # on error kept: tried again
            ticket.target = None

    def _refuse_if(self, election: str, offset: int | None, where: str) -> None:
        """MigrationStageError if an epoch is recorded (``offset``, read ``where``)."""
        if offset is not None:
            raise epoch_refusal(election, self.stage, offset, where)

    def _check_still_leads(self, src: Ticket, token: int) -> None:
        """After winning the target: do we still lead the source? (A loss the source
        adapter reported while we were not yet the core's leader would be missed.)"""
        current = self.source.leader(src.election)
        if current is None or current.token != token or current.candidate_id != src.candidate_id:
            # The entry is gone: the core withdraws both entries and queues again, without
            # ending this client's sessions (other elections).
            raise SessionExpired(
                f"{src.candidate_id} no longer leads {src.election!r} in the source while "
                "it acquired the target; queueing again"
            )

    def withdraw(self, ticket: MigratingTicket) -> None:
        entries = [(name, ticket.entry(name)) for name in ("target", "source")]
        _each(partial(self._withdraw_inner, name, inner)
              for name, inner in [*entries, *ticket.published] if inner is not None)

    def _withdraw_inner(self, name: str, inner: Ticket) -> None:
        inner.withdrawn = True  # as the core does before a withdraw (adapters' watchers)
        try:
            self._stores[name].withdraw(inner)
        finally:
            self._own(name, inner, None)

    def _held(self, ticket: MigratingTicket, name: str, action: str) -> Ticket:
        inner = ticket.entry(name)
        if inner is None:
            raise NotLeader(f"{action} refused: {ticket.candidate_id} does not lead "
                            f"{ticket.election!r} in the {name} store")
        return inner

    def proclaim(self, ticket: MigratingTicket, value: bytes) -> None:
        for name, store in self._used:
            store.proclaim(self._held(ticket, name, "proclaim"), value)
        ticket.value = value

    def guarded_write(self, ticket: MigratingTicket, key: str, value: bytes) -> None:
        name = token_store(self.stage)
        self._stores[name].guarded_write(self._held(ticket, name, "guarded write"), key, value)

    def read(self, key: str) -> bytes | None:
        return self._stores[token_store(self.stage)].read(key)

    # -- observing ------------------------------------------------------------------

    def _recorded_offset(self, election: str) -> int | None:
        """The token offset recorded in the target, if any."""
        return record_offset(self.target.read(offset_key(election)))

    def _marker_offset(self, election: str) -> int | None:
        """The offset of the epoch marker in the source, if any."""
        return record_offset(self.source.read(epoch_key(election)))

    def _in_force(self, election: str) -> tuple[Store[Any], int | None]:
        """The store whose leader is the election's leader now, and the recorded offset:
        the target once an offset is recorded (it never changes then); else the source
        and None -- in stage ``target`` too: before the offset, the target's leader is a
        dual candidate holding a raw token that is no token of the election. Stage
        ``source`` reads the source only (offset 0)."""
        if self.stage == "source":
            return self.source, 0
        offset = self._recorded_offset(election)
        return (self.source, None) if offset is None else (self.target, offset)

    def leader(self, election: str) -> LeaderInfo | None:
        store, offset = self._in_force(election)
        return self._leading(election, offset, store.leader(election))

    def _leading(self, election: str, offset: int | None,
                 raw: LeaderInfo | None) -> LeaderInfo | None:
        """``raw`` (the in-force store's leader) as the election's leader: shifted by the
        offset; before one is recorded, None for a dual-target candidate holding the
        source (it will lead with a target token, never with this source token)."""
        if raw is None or offset is not None:
            return shifted(raw, offset or 0)
        stages = {p.candidate_id: p.stage for p in published_stages(self.source, election, "")}
        return None if stages.get(raw.candidate_id) in ("dual-target", "target") else raw

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        store, offset = self._in_force(election)
        raw, step = store.observe_step(election)
        try:
            current = self._leading(election, offset, raw)
        except BaseException:
            step.signal.close()
            raise
        if offset is None:  # re-read within a slice: the offset may appear in the target
            soon = time.monotonic() + OBSERVE_SLICE
            step = Wait(step.signal, soon if step.retry_at is None else min(step.retry_at, soon))
        return current, step

    def contenders(self, election: str) -> list[Contender]:
        listed: list[Contender] = []
        for _, store in self._used:
            ids = {c.candidate_id for c in listed}
            listed += [c for c in store.contenders(election) if c.candidate_id not in ids]
        return listed

    def close(self) -> None:
        for store in (self.source, self.target):
            store.close()


def _step(store: Store[Any], inner: Ticket) -> Step:
    """One step of ``store`` for ``inner``, marking it won as the core would."""
    step = store.try_lead(inner)
    if isinstance(step, Won):
        inner.won = True
    return step


def _each(calls: Iterable[Callable[[], None]]) -> None:
    """Makes every call, then raises the first failure (SessionExpired before others)."""
    errors: list[TenureError] = []
    for call in calls:
        try:
            call()
        except TenureError as exc:
            errors.append(exc)
    if errors:
        raise next((e for e in errors if isinstance(e, SessionExpired)), errors[0])


def _need(ticket: MigratingTicket, name: str) -> Ticket:
    inner = ticket.entry(name)
    if inner is None:
        raise StoreUnavailable(f"{ticket.candidate_id} has no entry in the {name} store")
    return inner
