"""The migrating store: a source store, a target store and a stage, as one Store.

    # every candidate of election "jobs/nightly" runs with a URL naming its stage:
    url = migration_url("dual-source", "zookeeper://zk1:2181", "etcd://e1:2379")
    client = tenure.connect(url, ttl=4)   # then campaign as usual

URL form (the ``migrate+<stage>`` schemes of :mod:`tenure.adapters`)::

    migrate+<stage>://?source=<urlencoded URL>&target=<urlencoded URL>[&ttl=..&drift=..]

The protocol -- stages, epoch marker, token offset, why there are never two leaders
across adjacent stages and why tokens never go backwards -- is :mod:`tenure.migration`
(docs/migration.md); this module maps it onto the store steps, so the core (``Client``,
campaign loop, session keeper, validity, loss) is reused unchanged.

Mapping of the contract:

* session: one session in each store the stage uses; ``open_session`` opens both and
  returns the SHORTER of the two guaranteed lifetimes; ``renew_session`` renews both
  (SessionExpired first if either failed, after trying both);
* entry: a stage publication in each used store (side election
  ``_tenure_stage/<election>``) and a queue entry in the first store the stage holds
  (the source, except in ``target``); a dual candidate queues on the target only
  while it leads the source (so at most one dual candidate is ever queued there: no
  lock-order deadlock), and gives the target entry back if it stops leading the source;
* ``try_lead``: steps the source first, and the target only once the source is Won;
  a Wait from either store is returned as is (its signal and ``retry_at``). In dual
  stages it is Won only within one step that holds both; the epoch/offset refusals
  (MigrationStageError), the re-check that the source is still led after the target
  was won, and the first ``dual-target`` leader's marker and offset writes run inside
  that step, before Won is returned. A dual candidate that lost the source entry
  meanwhile raises SessionExpired: the core withdraws both entries and queues again;
* ``observe_step``: the in-force store's step (the target with the offset once one is
  recorded, else the source), re-stepped at least every ``OBSERVE_SLICE`` while no
  offset is recorded, so the offset appearing in the target is noticed;
* ``proclaim`` goes to every held store; ``guarded_write``/``read`` to the store whose
  token is in force for this stage (source before ``dual-target``, target from it on);
* losses: each inner store is bound to a reporter that maps its entry to the migrating
  ticket, so a loss in either store is reported once, through :attr:`report_loss`.

Clock reasoning: the core's ``t_sent`` precedes both renewal requests, each of which
keeps its store's session alive for that store's lifetime from ITS send time (later
than ``t_sent``); the shorter lifetime therefore bounds both, and ``t_sent + lifetime
x (1 - drift)`` lies within both sessions' lives. Nothing else here reads a clock,
except the observe slice (a re-read, not a deadline).

Limits: the TTL must suit both stores (``limits`` is the intersection; partition
safety and arrival order only where both have them); each dual campaign costs a second
queue entry, a stage publication per store and a few reads after winning; see
:mod:`tenure.migration` for the operator's limits (plain URLs, data not copied).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tenure.config import BackendURL, parse_backend_url
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable, TenureError
from tenure.migration import (
    SCHEME_PREFIX,
    MigrationStageError,
    check_stage,
    epoch_key,
    offset_key,
    published_stages,
    record_offset,
    stage_election,
)
from tenure.options import Options
from tenure.store import (
    Contender,
    LeaderInfo,
    LossReporter,
    Step,
    Store,
    StoreLimits,
    Ticket,
    Wait,
    Won,
)

OBSERVE_SLICE = 1.0
"""Longest wait (seconds) of an observer while no token offset is recorded yet."""

ROLES = ("source", "target")

_USES = {
    "source": ("source",),
    "dual-source": ("source", "target"),
    "dual-target": ("source", "target"),
    "target": ("target",),
}


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


class MigratingStore(Store[MigratingTicket]):
    """Two stores and a stage, as one Store (see the module docstring)."""

    def __init__(self, source: Store[Any], target: Store[Any], stage: str) -> None:
        super().__init__()
        self.stage = check_stage(stage)
        self.source = source
        self.target = target
        self._stores: dict[str, Store[Any]] = {"source": source, "target": target}
        self._uses = _USES[self.stage]
        self._lock = threading.Lock()
        self._opened: set[str] = set()
        self._owners: dict[str, dict[Ticket, MigratingTicket]] = {r: {} for r in ROLES}
        used = [self._stores[name].limits for name in self._uses]
        steps = [lim.ttl_step for lim in used if lim.ttl_step]
        self.limits = StoreLimits(
            min_ttl=max(lim.min_ttl for lim in used),
            max_ttl=min(lim.max_ttl for lim in used),
            ttl_step=max(steps) if steps else None,
            partition_safe=all(lim.partition_safe for lim in used),
            warning="; ".join(lim.warning for lim in used if lim.warning),
            arrival_order=all(lim.arrival_order for lim in used),
        )
        for name in ROLES:
            self._stores[name].bind(self._reporter(name))

    # -- configuration ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: BackendURL) -> MigratingStore:
        from tenure.adapters import store_class

        stage = check_stage(url.scheme.removeprefix(SCHEME_PREFIX))
        opts = Options(f"{SCHEME_PREFIX}{stage}", url, {
            "source": "the source store's backend URL (percent-encoded)",
            "target": "the target store's backend URL (percent-encoded)",
        })
        inner: list[Store[Any]] = []
        try:
            for role in ROLES:
                text = opts.optional(role)
                if not text:
                    raise ConfigError(
                        f"a migrate+{stage} URL needs {role}=<percent-encoded backend URL>"
                    )
                parsed, core = parse_backend_url(text)
                if core:
                    raise ConfigError(
                        f"option(s) {', '.join(sorted(core))} in the {role} URL: give ttl "
                        "and drift on the migrate+ URL itself (one session TTL for both)"
                    )
                if parsed.scheme.startswith(SCHEME_PREFIX):
                    raise ConfigError(f"the {role} of a migration cannot itself be a migration")
                inner.append(store_class(parsed.scheme).from_url(parsed))
            if inner[0].description == inner[1].description:
                raise ConfigError(
                    f"source and target are the same store ({inner[0].description}); name two"
                )
        except BaseException:
            for store in inner:
                store.close()
            raise
        return cls(inner[0], inner[1], stage)

    @property
    def description(self) -> str:
        return (f"{SCHEME_PREFIX}{self.stage}://?source={self.source.description}"
                f"&target={self.target.description}")

    def _used(self) -> Iterator[tuple[str, Store[Any]]]:
        for name in self._uses:
            yield name, self._stores[name]

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

    def _own(self, name: str, inner: Ticket, outer: MigratingTicket) -> None:
        with self._lock:
            self._owners[name][inner] = outer

    def _disown(self, name: str, inner: Ticket) -> None:
        with self._lock:
            self._owners[name].pop(inner, None)

    # -- session ------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        # A (re)open after one session expired: end the other one first, so that its
        # entries (e.g. a held source entry) do not block others until it expires.
        lifetimes = []
        for name, store in self._used():
            if name in self._opened:
                with contextlib.suppress(TenureError):
                    store.close_session()
                self._opened.discard(name)
            lifetimes.append(store.open_session(ttl))
            self._opened.add(name)
        return min(lifetimes)

    def renew_session(self, held: frozenset[MigratingTicket]) -> None:
        """Renews BOTH sessions (the core's ``t_sent`` precedes both requests); fails if
        either fails -- SessionExpired first -- after trying both, so a blip on one store
        does not let the other's session lapse. Entries found gone are reported by the
        inner stores, through the reporters bound in ``__init__``."""
        errors: list[TenureError] = []
        for name, store in self._used():
            inner = frozenset(t for t in (_inner(o, name) for o in held) if t is not None)
            try:
                store.renew_session(inner)
            except TenureError as exc:
                errors.append(exc)
        expired = [e for e in errors if isinstance(e, SessionExpired)]
        if expired or errors:
            raise (expired or errors)[0]

    def close_session(self) -> None:
        errors: list[TenureError] = []
        for name, store in self._used():
            try:
                store.close_session()
            except TenureError as exc:
                errors.append(exc)
            self._opened.discard(name)
        if errors:
            raise errors[0]

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> MigratingTicket:
        publication = json.dumps({"stage": self.stage, "source": self.source.description,
                                  "target": self.target.description}).encode()
        published: list[tuple[str, Ticket]] = []
        first = self._uses[0]
        try:
            for name, store in self._used():
                published.append(
                    (name, store.enqueue(stage_election(election), candidate_id, publication)))
            inner = self._stores[first].enqueue(election, candidate_id, value)
        except BaseException:
            for name, side in published:
                self._withdraw_inner(name, side, [])
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
            return self._lead_target_only(ticket)
        src = _need(ticket, "source")
        step = self.source.try_lead(src)
        if isinstance(step, Wait):
            try:
                self._left_source(ticket)
            except BaseException:
                step.signal.close()
                raise
            return step
        src.won = True
        first_win = ticket.source_token is None
        ticket.source_token = step.token
        if first_win and self.stage in ("source", "dual-source"):
            self._refuse_if_epoch(ticket.election)
        if self.stage == "source":
            return step
        return self._lead_both(ticket, src, step.token)

    def _lead_target_only(self, ticket: MigratingTicket) -> Step:
        tgt = _need(ticket, "target")
        step = self.target.try_lead(tgt)
        if isinstance(step, Wait):
            return step
        tgt.won = True
        offset = record_offset(self.target.read(offset_key(ticket.election)))
        if offset is None:
            raise MigrationStageError(
                f"election {ticket.election!r} has not reached stage dual-target (no token "
                f"offset recorded in {self.target.description}); this candidate runs "
                "stage target, which needs a dual-target leader to have led first: "
                "restart it with stage dual-target"
            )
        ticket.offset = offset
        return Won(step.token + offset)

    def _lead_both(self, ticket: MigratingTicket, src: Ticket, source_token: int) -> Step:
        """A dual stage that leads the source: queue on the target (once) and step it."""
        election = ticket.election
        if ticket.target is None:
            ticket.target = self.target.enqueue(election, ticket.candidate_id, ticket.value)
            self._own("target", ticket.target, ticket)
        tgt = ticket.target
        step = self.target.try_lead(tgt)
        if isinstance(step, Wait):
            return step
        tgt.won = True
        recorded = record_offset(self.target.read(offset_key(election)))
        if self.stage == "dual-source":
            if recorded is not None:
                self._refuse(election, recorded, "the target")
            self._check_still_leads(src, source_token)
            return Won(source_token)
        offset = recorded if recorded is not None else source_token
        marker = json.dumps({"stage": "dual-target", "offset": offset, "by": ticket.candidate_id,
                             "target": self.target.description}).encode()
        try:
            if recorded is None or record_offset(self.source.read(epoch_key(election))) != offset:
                # Guarded: commits only while we lead the source. Marker first (see
                # tenure.migration).
                self.source.guarded_write(src, epoch_key(election), marker)
            else:
                self._check_still_leads(src, source_token)
            if recorded is None:
                self.target.guarded_write(tgt, offset_key(election), json.dumps(
                    {"offset": offset, "by": ticket.candidate_id,
                     "source": self.source.description}).encode())
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
            errors: list[TenureError] = []
            self._withdraw_inner("target", ticket.target, errors)
            if errors:
                raise errors[0]  # kept: the next step (or the withdraw) tries again
            ticket.target = None

    def _refuse_if_epoch(self, election: str) -> None:
        offset = record_offset(self.source.read(epoch_key(election)))
        if offset is not None:
            self._refuse(election, offset, "the source")

    def _refuse(self, election: str, offset: int, where: str) -> None:
        raise MigrationStageError(
            f"election {election!r} has moved to stage dual-target (token offset {offset} "
            f"recorded in {where}); this candidate runs stage {self.stage} and would hand "
            "out source tokens below the tokens already issued: restart it with stage "
            "dual-target (going back to dual-source after a dual-target leader has led is "
            "not possible)"
        )

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
        errors: list[TenureError] = []
        for name in ("target", "source"):
            inner = _inner(ticket, name)
            if inner is not None:
                self._withdraw_inner(name, inner, errors)
        for name, side in ticket.published:
            self._withdraw_inner(name, side, errors)
        if errors:
            raise errors[0]

    def _withdraw_inner(self, name: str, inner: Ticket, errors: list[TenureError]) -> None:
        inner.withdrawn = True  # as the core does before a withdraw (adapters' watchers)
        try:
            self._stores[name].withdraw(inner)
        except TenureError as exc:
            errors.append(exc)
        self._disown(name, inner)

    def proclaim(self, ticket: MigratingTicket, value: bytes) -> None:
        for name in self._uses:
            inner = _inner(ticket, name)
            if inner is None:
                raise NotLeader(f"proclaim refused: {ticket.candidate_id} does not lead "
                                f"{ticket.election!r} in the {name} store")
            self._stores[name].proclaim(inner, value)
        ticket.value = value

    def _in_force_for_me(self) -> str:
        return "source" if self.stage in ("source", "dual-source") else "target"

    def guarded_write(self, ticket: MigratingTicket, key: str, value: bytes) -> None:
        name = self._in_force_for_me()
        inner = _inner(ticket, name)
        if inner is None:
            raise NotLeader(f"guarded write refused: {ticket.candidate_id} does not lead "
                            f"{ticket.election!r} in the {name} store")
        self._stores[name].guarded_write(inner, key, value)

    def read(self, key: str) -> bytes | None:
        return self._stores[self._in_force_for_me()].read(key)

    # -- observing ------------------------------------------------------------------

    def _in_force(self, election: str) -> tuple[Store[Any], int | None]:
        """The store whose token is in force for ``election`` now, and the recorded
        offset (None while none is recorded; never changes once recorded)."""
        if self.stage == "source":
            return self.source, 0
        offset = record_offset(self.target.read(offset_key(election)))
        if offset is None:
            return (self.source if self.stage != "target" else self.target), None
        return self.target, offset

    def leader(self, election: str) -> LeaderInfo | None:
        store, offset = self._in_force(election)
        return self._leading(store, election, offset or 0, store.leader(election))

    def _leading(self, store: Store[Any], election: str, offset: int,
                 raw: LeaderInfo | None) -> LeaderInfo | None:
        """``raw`` (the in-force store's leader) as the election's leader: with the
        offset applied; and None for a dual-target candidate that holds the source but
        has not recorded the offset yet (it will lead with a target token, never with
        this source token)."""
        if raw is None or offset or store is not self.source or self.stage == "source":
            return _shift(raw, offset)
        stages = {p.candidate_id: p.stage for p in published_stages(self.source, election, "")}
        return None if stages.get(raw.candidate_id) in ("dual-target", "target") else raw

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        store, offset = self._in_force(election)
        raw, step = store.observe_step(election)
        try:
            current = self._leading(store, election, offset or 0, raw)
        except BaseException:
            step.signal.close()
            raise
        if offset is None:  # re-read within a slice: the offset may appear in the target
            soon = time.monotonic() + OBSERVE_SLICE
            step = Wait(step.signal, soon if step.retry_at is None else min(step.retry_at, soon))
        return current, step

    def contenders(self, election: str) -> list[Contender]:
        if self.stage == "target":
            return self.target.contenders(election)
        listed = self.source.contenders(election)
        if self.stage != "source":
            ids = {c.candidate_id for c in listed}
            listed += [c for c in self.target.contenders(election) if c.candidate_id not in ids]
        return listed

    def close(self) -> None:
        for store in (self.source, self.target):
            store.close()


def _inner(ticket: MigratingTicket, name: str) -> Ticket | None:
    return ticket.source if name == "source" else ticket.target


def _need(ticket: MigratingTicket, name: str) -> Ticket:
    inner = _inner(ticket, name)
    if inner is None:
        raise StoreUnavailable(f"{ticket.candidate_id} has no entry in the {name} store")
    return inner


def _shift(info: LeaderInfo | None, offset: int) -> LeaderInfo | None:
    if info is None or not offset:
        return info
    return LeaderInfo(info.election, info.candidate_id, info.value, info.token + offset)
