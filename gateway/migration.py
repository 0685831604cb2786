"""Live migration of an election from one store to another, by staged rolling restarts.

    # every candidate of election "jobs/nightly" runs with a URL naming its stage:
    url = migration_url("dual-source", "zookeeper://zk1:2181", "etcd://e1:2379")
    client = tenure.connect(url, ttl=4)   # then campaign as usual

This module is the protocol: the stages and their rules (the stores each holds, whose
token is in force, the refusals), the URL form, the epoch marker and token offset
records, the stage publications, and the operator's view (:func:`migration_status`,
used by ``tenure migrate status|advance``). The store that runs it -- two stores and a stage
as one :class:`~tenure.store.Store`, ``MigratingStore`` -- is the migrating store
beside the other stores, :mod:`tenure.adapters.migrating`; the core (``Client``,
campaign loop, session keeper, validity, loss) is reused unchanged. URL form (the
``migrate+<stage>`` schemes of :mod:`tenure.adapters`)::

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
either fails, so ``t_sent + lifetime x (1 - drift)`` lies within both sessions' lives
(``lifetime`` is the shorter of the two stores' guaranteed lifetimes). Loss on either
store is loss. Stages two apart (``source`` with ``dual-target``) share no store:
that is why the operator moves one stage at a time (``tenure migrate advance`` checks
it).

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
(also on ``target``: the target's leader then holds a raw token that is no token of
the election) unless its published stage is ``dual-target`` (then None: it has not
led yet); a ``dual-source`` leader reported may still be acquiring the target; while
no offset is recorded an observer re-reads at least every second, so that it also
sees the offset appear. The TTL must suit both stores (the migrating store's
``limits`` is the intersection).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tenure.config import BackendURL, parse_backend_url
from tenure.errors import ConfigError
from tenure.options import Options
from tenure.store import LeaderInfo, Store, StoreLimits

STAGES = ("source", "dual-source", "dual-target", "target")
"""The stages in the order an operator moves through them."""

ROLES = ("source", "target")
"""The two stores of a migration."""

SCHEME_PREFIX = "migrate+"
STAGE_ELECTION_PREFIX = "_tenure_stage/"
MARKER_PREFIX = "_tenure_migration/"


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


def parse_migration_url(url: BackendURL) -> tuple[str, BackendURL, BackendURL]:
    """The stage, source and target of a ``migrate+<stage>`` URL (the inverse of
    :func:`migration_url`); ConfigError naming the fix for a missing inner URL, one
    that carries ``ttl``/``drift`` (one TTL for both: on the ``migrate+`` URL), or one
    that is itself a migration."""
    stage = check_stage(url.scheme.removeprefix(SCHEME_PREFIX))
    opts = Options(f"{SCHEME_PREFIX}{stage}", url, {
        role: f"the {role} store's backend URL (percent-encoded)" for role in ROLES})
    inner = []
    for role in ROLES:
        text = opts.optional(role)
        if not text:
            raise ConfigError(f"a migrate+{stage} URL needs {role}=<percent-encoded backend URL>")
        parsed, core = parse_backend_url(text)
        if core:
            raise ConfigError(
                f"option(s) {', '.join(sorted(core))} in the {role} URL: give ttl and drift "
                "on the migrate+ URL itself (one session TTL for both)")
        if parsed.scheme.startswith(SCHEME_PREFIX):
            raise ConfigError(f"the {role} of a migration cannot itself be a migration")
        inner.append(parsed)
    return stage, inner[0], inner[1]


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


# -- stage rules and records (used by tenure.adapters.migrating) ----------------------

USES = {
    "source": ("source",),
    "dual-source": ("source", "target"),
    "dual-target": ("source", "target"),
    "target": ("target",),
}
"""The stores each stage holds, in the order it takes them."""


def token_store(stage: str) -> str:
    """The store (``source``/``target``) whose token, guarded writes and ``read()`` are
    in force for a candidate of ``stage``: the source before ``dual-target``, the
    target from it on."""
    return "source" if STAGES.index(stage) < STAGES.index("dual-target") else "target"


def refuses_epoch(stage: str) -> bool:
    """True for the stages that hand out source tokens, and so refuse to lead once the
    epoch marker (or an offset) is recorded."""
    return token_store(stage) == "source"


def joint_limits(used: list[StoreLimits]) -> StoreLimits:
    """What a stage holding stores with the limits ``used`` can promise: TTLs every one
    accepts (the coarsest step), partition safety and arrival order only where all have
    them, and every store's warning."""
    steps = [lim.ttl_step for lim in used if lim.ttl_step]
    return StoreLimits(
        min_ttl=max(lim.min_ttl for lim in used),
        max_ttl=min(lim.max_ttl for lim in used),
        ttl_step=max(steps) if steps else None,
        partition_safe=all(lim.partition_safe for lim in used),
        warning="; ".join(lim.warning for lim in used if lim.warning),
        arrival_order=all(lim.arrival_order for lim in used),
    )


def shifted(info: LeaderInfo | None, offset: int) -> LeaderInfo | None:
    """``info`` with ``offset`` added to its token."""
    if info is None or not offset:
        return info
    return LeaderInfo(info.election, info.candidate_id, info.value, info.token + offset)


def publication(stage: str, source: str, target: str) -> bytes:
    """The value of a candidate's entry in the side election :func:`stage_election`."""
    return json.dumps({"stage": stage, "source": source, "target": target}).encode()


def epoch_marker(offset: int, by: str, target: str) -> bytes:
    """The epoch marker record, written in the SOURCE at :func:`epoch_key`."""
    return json.dumps({"stage": "dual-target", "offset": offset, "by": by,
                       "target": target}).encode()


def offset_record(offset: int, by: str, source: str) -> bytes:
    """The token offset record, written in the TARGET at :func:`offset_key`."""
    return json.dumps({"offset": offset, "by": by, "source": source}).encode()


def epoch_refusal(election: str, stage: str, offset: int, where: str) -> MigrationStageError:
    """Why a ``source``/``dual-source`` candidate must not lead after the epoch."""
    return MigrationStageError(
        f"election {election!r} has moved to stage dual-target (token offset {offset} "
        f"recorded in {where}); this candidate runs stage {stage} and would hand out "
        "source tokens below the tokens already issued: restart it with stage "
        "dual-target (going back to dual-source after a dual-target leader has led is "
        "not possible)"
    )


def no_offset_refusal(election: str, target: str) -> MigrationStageError:
    """Why a ``target`` candidate must not lead before a ``dual-target`` leader has."""
    return MigrationStageError(
        f"election {election!r} has not reached stage dual-target (no token offset "
        f"recorded in {target}); this candidate runs stage target, which needs a "
        "dual-target leader to have led first: restart it with stage dual-target"
    )


@dataclass(frozen=True)
class Published:
    """A candidate's stage as it published it in one store."""

    candidate_id: str
    stage: str
    store: str


def published_stages(store: Store[Any], election: str, label: str) -> list[Published]:
    """The stages published by the live candidates of ``election`` in ``store``."""
    found = []
    for contender in store.contenders(stage_election(election)):
        record = parse_record(contender.value) or {}
        found.append(Published(contender.candidate_id, str(record.get("stage", "?")), label))
    return found


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


def migration_status(source: Store[Any], target: Store[Any], election: str) -> MigrationStatus:
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
