"""Live migration of an election from one store to another, by staged rolling restarts.

    # every candidate of election "jobs/nightly" runs with a URL naming its stage:
    url = migration_url("dual-source", "zookeeper://zk1:2181", "etcd://e1:2379")
    client = tenure.connect(url, ttl=4)   # then campaign as usual

A :class:`MigratingStore` is a :class:`~tenure.store.Store` built from two stores (the
*source*, the *target*) and a *stage*; the core (``Client``, session keeper, validity,
loss) is reused unchanged. URL form (register of the ``migrate+<stage>`` schemes in
:mod:`tenure.adapters`)::

    migrate+<stage>://?source=<urlencoded URL>&target=<urlencoded URL>[&ttl=..&drift=..]

or, in ``tenure.toml``, a ``[migration]`` table with ``source``, ``target`` and
``stage`` (see :mod:`tenure.config`).

Stages, in order: ``source`` -> ``dual-source`` -> ``dual-target`` -> ``target``.

* ``source``: the source only; tokens are the source's.
* ``dual-source``: take the source, then the target; lead only while holding both.
  Token: the source's.
* ``dual-target``: take the source, then the target; lead only while holding both.
  Token: the target's + ``offset``. The first such leader (no offset recorded in the
  target yet) sets ``offset`` = its own source token, writes the *epoch marker*
  ``{"stage": "dual-target", "offset": ...}`` into the SOURCE and then the offset into
  the TARGET, both as guarded writes (committed only while it leads there), and only
  then returns from its campaign.
* ``target``: the target only; token: the target's + the recorded offset (a
  ``target`` candidate that finds no offset refuses to lead: a ``dual-target`` leader
  must have led first).

A candidate on ``source`` or ``dual-source`` that wins the source and finds the epoch
marker (or, holding the target, an offset there) REFUSES to lead:
:class:`MigrationStageError` says to restart it with ``dual-target``. Candidates
publish their stage (an entry in the side election ``_tenure_stage/<election>`` of
each store they use, bound to their session) for ``tenure migrate status``.

Why there are never two leaders across adjacent stages. A leader of any stage holds
the leadership (in the store's own sense) of at least one store, and any two adjacent
stages share a store that BOTH must hold: ``source``/``dual-source`` the source,
``dual-source``/``dual-target`` both stores (dual candidates take the source first,
so at most one of them is ever queued on the target: no deadlock), and
``dual-target``/``target`` the target. The store's own mutual exclusion on that
shared store, with the core's validity deadline, gives S1. The deadline covers both
sessions: one ``renew_session`` call renews both, sent after ``t_sent``, and fails if
either fails, so ``t_sent + ttl x (1 - drift)`` lies within both sessions' lives.
Loss on either store is loss. Stages two apart (``source`` with ``dual-target``) share
no store: that is why the operator moves one stage at a time (``tenure migrate
advance`` checks it).

Why tokens never go backwards. Before the epoch, every leadership holds the source and
takes its source token, which the source makes strictly increasing. The first
``dual-target`` leader L holds the source with token s_L, higher than every source
token ever handed out (all earlier source leaderships ended before L's began, and
source tokens increase), and sets ``offset = s_L``; every token from then on is
``t + offset`` with target token ``t >= 1``, so above s_L, and strictly increasing
with the target's tokens, since the offset never changes once recorded in the target.
No source token is handed out after the epoch: the marker is written in the source by
a guarded write of L while L leads the source, so any later source leader (the source
orders leaderships) reads it by a linearizable read after it has won and refuses. The
marker is written BEFORE the offset: if L dies in between, the next ``dual-target``
leader finds no offset, picks its own (higher) source token and rewrites both; no
token was handed out with the first offset. If the offset were written first, a
``dual-source`` leader could lead in between with a source token above it.

Rollback. ``target`` -> ``dual-target`` is safe (the same token space, the target's +
offset; the two stages share the target). ``dual-target`` -> ``dual-source`` is
REFUSED once a ``dual-target`` candidate has led (the epoch is recorded): source tokens
would then go back below ``t + offset``; a ``dual-source`` candidate finding the
marker refuses to lead and says so. Before any ``dual-target`` leadership (no epoch)
rolling back is safe. To leave the target for good after the epoch, migrate forward
again (``target`` as the new source).

Limits. Once migrated, candidates must keep the ``migrate+target`` URL (it adds the
offset): a plain target URL would hand out the target's raw tokens, lower than those
issued during the migration. Guarded-write data and ``read()`` go to the store whose
token is in force for this client's stage (source before ``dual-target``, target
from it on); data is not copied between stores. ``leader()``/observe report the
target's leader with the offset once an offset is recorded, else the source's leader
unless its published stage is ``dual-target`` (then None: it has not led yet); a
``dual-source`` leader reported may still be acquiring the target;
``await_change`` waits on that store in slices of at most 1 s so that it also sees
the offset appear. The TTL must suit both stores (``limits`` is the intersection).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from tenure.config import BackendURL, parse_backend_url
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable, TenureError
from tenure.store import Contender, LeaderInfo, LossReporter, Store, StoreLimits, Ticket

STAGES = ("source", "dual-source", "dual-target", "target")
"""The stages in the order an operator moves through them."""

SCHEME_PREFIX = "migrate+"
STAGE_ELECTION_PREFIX = "_tenure_stage/"
MARKER_PREFIX = "_tenure_migration/"
OBSERVE_SLICE = 1.0

_USES = {
    "source": ("source",),
    "dual-source": ("source", "target"),
    "dual-target": ("source", "target"),
    "target": ("target",),
}


class MigrationStageError(ConfigError):
    """This candidate's stage is one the election has left (or not yet reached):
    restart it with the stage the message names."""


def check_stage(stage: str) -> str:
    """``stage`` if it is one of :data:`STAGES`, else ConfigError."""
    if stage not in STAGES:
        raise ConfigError(
            f"unknown migration stage {stage!r}; use one of {', '.join(STAGES)}"
        )
    return stage


def migration_url(stage: str, source: str, target: str, **options: str) -> str:
    """The backend URL of a migrating candidate (inner URLs percent-encoded)."""
    query = f"source={quote(source, safe='')}&target={quote(target, safe='')}"
    for key, value in options.items():
        query += f"&{key}={quote(value, safe='')}"
    return f"{SCHEME_PREFIX}{check_stage(stage)}://?{query}"


def stage_election(election: str) -> str:
    """The side election where candidates of ``election`` publish their stage."""
    return STAGE_ELECTION_PREFIX + election


def epoch_key(election: str) -> str:
    """Key (in the SOURCE) of the epoch marker."""
    return f"{MARKER_PREFIX}{election}/epoch"


def offset_key(election: str) -> str:
    """Key (in the TARGET) of the token offset."""
    return f"{MARKER_PREFIX}{election}/offset"


def parse_record(data: bytes | None) -> dict[str, object] | None:
    """A marker or publication record (JSON object), or None if absent/unreadable."""
    if data is None:
        return None
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def record_offset(data: bytes | None) -> int | None:
    """The offset in a marker or offset record, or None."""
    record = parse_record(data)
    offset = None if record is None else record.get("offset")
    return offset if isinstance(offset, int) and not isinstance(offset, bool) else None


@dataclass(frozen=True)
class Published:
    """A candidate's stage as it published it in one store."""

    candidate_id: str
    stage: str
    store: str


def published_stages(store: Store, election: str, label: str) -> list[Published]:
    """The stages published by the live candidates of ``election`` in ``store``."""
    found = []
    for contender in store.contenders(stage_election(election)):
        record = parse_record(contender.value) or {}
        found.append(Published(contender.candidate_id, str(record.get("stage", "?")), label))
    return found


class MigratingStore(Store):
    """Two stores and a stage, as one Store (see the module docstring)."""

    def __init__(self, source: Store, target: Store, stage: str) -> None:
        super().__init__()
        self.stage = check_stage(stage)
        self.source = source
        self.target = target
        self._stores = {"source": source, "target": target}
        self._uses = _USES[self.stage]
        self._lock = threading.Lock()
        self._opened: set[str] = set()
        self._owners: dict[str, dict[Ticket, Ticket]] = {"source": {}, "target": {}}
        used = [self._stores[name].limits for name in self._uses]
        steps = [lim.ttl_step for lim in used if lim.ttl_step]
        self.limits = StoreLimits(
            min_ttl=max(lim.min_ttl for lim in used),
            max_ttl=min(lim.max_ttl for lim in used),
            ttl_step=max(steps) if steps else None,
            partition_safe=all(lim.partition_safe for lim in used),
            warning="; ".join(lim.warning for lim in used if lim.warning),
        )
        for name in ("source", "target"):
            self._stores[name].set_loss_reporter(self._reporter(name))

    # -- configuration ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: BackendURL) -> MigratingStore:
        from tenure.adapters import store_class

        stage = check_stage(url.scheme.removeprefix(SCHEME_PREFIX))
        options = dict(url.options)
        unknown = sorted(set(options) - {"source", "target"})
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for a migrate+ URL; it takes source, "
                "target (percent-encoded backend URLs), ttl and drift"
            )
        inner: list[Store] = []
        try:
            for role in ("source", "target"):
                if not options.get(role):
                    raise ConfigError(
                        f"a migrate+{stage} URL needs {role}=<percent-encoded backend URL>"
                    )
                parsed, core = parse_backend_url(options[role])
                if core:
                    raise ConfigError(
                        f"option(s) {', '.join(sorted(core))} in the {role} URL: give ttl "
                        "and drift on the migrate+ URL itself (one session TTL for both)"
                    )
                if parsed.scheme.startswith(SCHEME_PREFIX):
                    raise ConfigError(f"the {role} of a migration cannot itself be a migration")
                inner.append(store_class(parsed.scheme).from_url(parsed))
        except BaseException:
            for store in inner:
                store.close()
            raise
        if inner[0].description == inner[1].description:
            for store in inner:
                store.close()
            raise ConfigError(
                f"source and target are the same store ({inner[0].description}); name two"
            )
        return cls(inner[0], inner[1], stage)

    @property
    def description(self) -> str:
        return (f"{SCHEME_PREFIX}{self.stage}://?source={self.source.description}"
                f"&target={self.target.description}")

    def _used(self) -> Iterator[tuple[str, Store]]:
        for name in self._uses:
            yield name, self._stores[name]

    def _reporter(self, name: str) -> LossReporter:
        def report(inner: Ticket, reason: str) -> None:
            with self._lock:
                outer = self._owners[name].get(inner)
            if outer is not None:
                self._report_loss(outer, f"{name} store ({self._stores[name].description}): "
                                         f"{reason}")
        return report

    # -- session ------------------------------------------------------------------

    def open_session(self, ttl: float) -> None:
        # A (re)open after one session expired: end the other one first, so that its
        # entries (e.g. a held source entry) do not block others until it expires.
        for name, store in self._used():
            if name in self._opened:
                with contextlib.suppress(TenureError):
                    store.close_session()
                self._opened.discard(name)
            store.open_session(ttl)
            self._opened.add(name)

    def renew_session(self, held: frozenset[Ticket]) -> frozenset[Ticket]:
        """Renews BOTH sessions (the core's ``t_sent`` precedes both requests); fails if
        either fails -- SessionExpired first -- after trying both, so a blip on one store
        does not let the other's session lapse."""
        lost: set[Ticket] = set()
        errors: list[Exception] = []
        for name, store in self._used():
            inner: dict[Ticket, Ticket] = {}
            for outer in held:
                mine = _inner(outer, name)
                if mine is not None:
                    inner[mine] = outer
            try:
                gone = store.renew_session(frozenset(inner))
            except TenureError as exc:
                errors.append(exc)
                continue
            lost.update(inner[t] for t in gone if t in inner)
        expired = [e for e in errors if isinstance(e, SessionExpired)]
        if expired or errors:
            raise (expired or errors)[0]
        return frozenset(lost)

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

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
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
                with contextlib.suppress(TenureError):
                    self._stores[name].withdraw(side)
            raise
        ticket = Ticket(election, candidate_id, f"{first}:{inner.key}", inner.order,
                        {first: inner, "published": published, "value": value})
        self._own(first, inner, ticket)
        return ticket

    def _own(self, name: str, inner: Ticket, outer: Ticket) -> None:
        with self._lock:
            self._owners[name][inner] = outer

    def await_turn(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> int:
        election = ticket.election
        if self.stage == "target":
            token = self.target.await_turn(_need(ticket, "target"), deadline, cancelled)
            offset = record_offset(self.target.read(offset_key(election)))
            if offset is None:
                raise MigrationStageError(
                    f"election {election!r} has not reached stage dual-target (no token "
                    f"offset recorded in {self.target.description}); this candidate runs "
                    "stage target, which needs a dual-target leader to have led first: "
                    "restart it with stage dual-target"
                )
            return token + offset
        src = _need(ticket, "source")
        source_token = self.source.await_turn(src, deadline, cancelled)
        if self.stage in ("source", "dual-source"):
            self._refuse_if_epoch(election)
        if self.stage == "source":
            return source_token
        tgt = self.target.enqueue(election, ticket.candidate_id, _value(ticket))
        ticket.extra["target"] = tgt
        self._own("target", tgt, ticket)
        target_token = self.target.await_turn(tgt, deadline, cancelled)
        recorded = record_offset(self.target.read(offset_key(election)))
        if self.stage == "dual-source":
            if recorded is not None:
                self._refuse(election, recorded, "the target")
            self._check_still_leads(src, source_token)
            return source_token
        offset = recorded if recorded is not None else source_token
        marker = json.dumps({"stage": "dual-target", "offset": offset, "by": ticket.candidate_id,
                             "target": self.target.description}).encode()
        if recorded is None or record_offset(self.source.read(epoch_key(election))) != offset:
            # Guarded: commits only while we lead the source. Marker first (see docstring).
            self.source.guarded_write(src, epoch_key(election), marker)
        else:
            self._check_still_leads(src, source_token)
        if recorded is None:
            self.target.guarded_write(tgt, offset_key(election), json.dumps(
                {"offset": offset, "by": ticket.candidate_id,
                 "source": self.source.description}).encode())
        return target_token + offset

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
        """After waiting on the target: do we still lead the source? (A loss the source
        adapter reported while we were not yet the core's leader would be missed.)"""
        current = self.source.leader(src.election)
        if current is None or current.token != token or current.candidate_id != src.candidate_id:
            # Retryable, but not a session expiry: the core withdraws both entries and
            # queues again without ending this client's sessions (other elections).
            raise StoreUnavailable(
                f"{src.candidate_id} no longer leads {src.election!r} in the source while "
                "it acquired the target; queueing again"
            )

    def withdraw(self, ticket: Ticket) -> None:
        errors: list[TenureError] = []
        for name in ("target", "source"):
            inner = _inner(ticket, name)
            if inner is None:
                continue
            try:
                self._stores[name].withdraw(inner)
            except TenureError as exc:
                errors.append(exc)
            with self._lock:
                self._owners[name].pop(inner, None)
        published = ticket.extra.get("published")
        for name, side in published if isinstance(published, list) else []:
            try:
                self._stores[name].withdraw(side)
            except TenureError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        for name in self._uses:
            inner = _inner(ticket, name)
            if inner is None:
                raise NotLeader(f"proclaim refused: {ticket.candidate_id} does not lead "
                                f"{ticket.election!r} in the {name} store")
            self._stores[name].proclaim(inner, value)
        ticket.extra["value"] = value

    def _in_force_for_me(self) -> str:
        return "source" if self.stage in ("source", "dual-source") else "target"

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        name = self._in_force_for_me()
        inner = _inner(ticket, name)
        if inner is None:
            raise NotLeader(f"guarded write refused: {ticket.candidate_id} does not lead "
                            f"{ticket.election!r} in the {name} store")
        self._stores[name].guarded_write(inner, key, value)

    def read(self, key: str) -> bytes | None:
        return self._stores[self._in_force_for_me()].read(key)

    # -- observing ------------------------------------------------------------------

    def _in_force(self, election: str) -> tuple[Store, int]:
        """The store whose token is in force for ``election`` now, and its offset."""
        if self.stage == "source":
            return self.source, 0
        offset = record_offset(self.target.read(offset_key(election)))
        if offset is None:
            return (self.source, 0) if self.stage != "target" else (self.target, 0)
        return self.target, offset

    def leader(self, election: str) -> LeaderInfo | None:
        store, offset = self._in_force(election)
        return self._leading(store, election, offset, store.leader(election))

    def _leading(self, store: Store, election: str, offset: int,
                 raw: LeaderInfo | None) -> LeaderInfo | None:
        """``raw`` (the in-force store's leader) as the election's leader: with the
        offset applied; and None for a dual-target candidate that holds the source but
        has not recorded the offset yet (it will lead with a target token, never with
        this source token)."""
        if raw is None or offset or store is not self.source or self.stage == "source":
            return _shift(raw, offset)
        stages = {p.candidate_id: p.stage for p in published_stages(self.source, election, "")}
        return None if stages.get(raw.candidate_id) in ("dual-target", "target") else raw

    def contenders(self, election: str) -> list[Contender]:
        if self.stage == "target":
            return self.target.contenders(election)
        listed = self.source.contenders(election)
        if self.stage != "source":
            ids = {c.candidate_id for c in listed}
            listed += [c for c in self.target.contenders(election) if c.candidate_id not in ids]
        return listed

    def await_change(
        self, election: str, known: LeaderInfo | None, deadline: float
    ) -> LeaderInfo | None:
        while True:
            store, offset = self._in_force(election)
            raw = store.leader(election)
            current = self._leading(store, election, offset, raw)
            now = time.monotonic()
            if current != known or now >= deadline:
                return current
            store.await_change(election, raw, min(deadline, now + OBSERVE_SLICE))

    def close(self) -> None:
        for store in (self.source, self.target):
            store.close()


def _inner(ticket: Ticket, name: str) -> Ticket | None:
    inner = ticket.extra.get(name)
    return inner if isinstance(inner, Ticket) else None


def _need(ticket: Ticket, name: str) -> Ticket:
    inner = _inner(ticket, name)
    if inner is None:
        raise StoreUnavailable(f"{ticket.candidate_id} has no entry in the {name} store")
    return inner


def _value(ticket: Ticket) -> bytes:
    value = ticket.extra.get("value", b"")
    return value if isinstance(value, bytes) else b""


def _shift(info: LeaderInfo | None, offset: int) -> LeaderInfo | None:
    if info is None or not offset:
        return info
    return LeaderInfo(info.election, info.candidate_id, info.value, info.token + offset)


# -- operator view (tenure migrate status / advance) ----------------------------------


@dataclass
class MigrationStatus:
    """What ``tenure migrate status`` shows: every live candidate's stage, the leader on
    each store, the epoch marker and the offset."""

    election: str
    source: str
    target: str
    candidates: dict[str, str]
    """candidate id -> stage (``source (plain URL)``/``target (plain URL)`` when it
    published none: it runs a plain backend URL of that store)."""
    source_leader: LeaderInfo | None
    target_leader: LeaderInfo | None
    epoch: dict[str, object] | None
    offset: int | None

    def stages(self) -> set[int]:
        """Stage indexes of the live candidates (a plain source URL counts as
        ``source``; a plain target URL as ``target``)."""
        return {STAGES.index(s.split(" ")[0]) for s in self.candidates.values()
                if s.split(" ")[0] in STAGES}

    def problems(self, stage: str) -> list[str]:
        """Why rolling out ``stage`` now is unsafe (empty if it is safe)."""
        n = STAGES.index(check_stage(stage))
        found = []
        for cid, running in sorted(self.candidates.items()):
            name = running.split(" ")[0]
            if name not in STAGES:
                found.append(f"{cid} publishes an unknown stage {running!r}")
            elif abs(STAGES.index(name) - n) > 1:
                found.append(
                    f"{cid} runs {running}, not adjacent to {stage}: move it to "
                    f"{STAGES[n - 1] if STAGES.index(name) < n else STAGES[n + 1]} first")
            elif running == "target (plain URL)" and self.offset is not None:
                found.append(f"{cid} runs a plain target URL: its tokens lack the offset "
                             f"{self.offset}; give it the migrate+target URL")
        if n <= 1 and self.epoch is not None:
            found.append(
                f"the epoch marker is recorded (offset {self.epoch.get('offset')}): "
                f"a dual-target leader has led, so {stage} candidates would hand out "
                "source tokens below the tokens already issued; rollback is possible only "
                "to dual-target (or migrate forward again)")
        if n == 3 and self.offset is None:
            found.append("no token offset is recorded in the target yet: a dual-target "
                         "candidate must have led before target candidates can lead")
        return found

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form."""
        return {
            "election": self.election, "source": self.source, "target": self.target,
            "candidates": self.candidates,
            "source_leader": None if self.source_leader is None else self.source_leader.as_dict(),
            "target_leader": None if self.target_leader is None else self.target_leader.as_dict(),
            "epoch": self.epoch, "offset": self.offset,
            "safe_to_advance": {s: not self.problems(s) for s in STAGES},
        }


def migration_status(source: Store, target: Store, election: str) -> MigrationStatus:
    """Reads the migration state of ``election`` from both stores."""
    candidates: dict[str, str] = {}
    for label, store in (("source", source), ("target", target)):
        for published in published_stages(store, election, label):
            candidates[published.candidate_id] = published.stage
    for label, store in (("source", source), ("target", target)):
        for contender in store.contenders(election):
            candidates.setdefault(contender.candidate_id, f"{label} (plain URL)")
    return MigrationStatus(
        election, source.description, target.description, candidates,
        source.leader(election), target.leader(election),
        parse_record(source.read(epoch_key(election))),
        record_offset(target.read(offset_key(election))),
    )
