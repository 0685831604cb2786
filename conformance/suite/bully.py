"""``bully://``: the Bully algorithm, a TEACHING REFERENCE -- never use it for real.

    bully://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003?me=2

Candidates talk to each other over TCP, with no store: the candidate at position
``me`` of the list listens on that address; a campaign asks every higher-positioned
peer whether it is alive ("ELECTION"); if none answers, this candidate declares itself
coordinator to the lower ones and leads. It is fast (one round of messages) and it is
what many hand-rolled elections do. It is UNSAFE:

* under a partition both sides see the other as dead and each elects a leader (split
  brain) -- the conformance suite catches it (S1);
* nothing expires a paused leader: renewal always "succeeds" because there is no one
  to ask, so a leader keeps believing it leads;
* there is no fencing token: it uses ``time.time_ns()``, which is not ordered across
  hosts or clock steps (the mistake PITFALLS records in libkv's Redis store);
* "guarded" writes only check the writer's own belief, kept in its own memory.

It exists so the suite can prove it detects these failures, and so benchmarks can show
the speed that safety costs. It implements the whole Store interface all the same.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from typing import Any

from tenure.config import BackendURL
from tenure.errors import ConfigError, NotLeader
from tenure.options import Options
from tenure.store import (
    WAIT_SLICE,
    Contender,
    EventSignal,
    LeaderInfo,
    Step,
    Store,
    StoreLimits,
    Ticket,
    Wait,
    Won,
)

POLL = 0.1
"""Seconds between an observer's polls of the peers (a toy has nothing to watch)."""


class BullyStore(Store[Ticket]):
    """One Bully peer; see the module docstring for why it is unsafe."""

    limits = StoreLimits(
        min_ttl=0.2, max_ttl=3600.0, partition_safe=False,
        warning="bully:// is a teaching reference: it elects two leaders under a partition",
    )

    def __init__(self, peers: list[tuple[str, int]], me: int) -> None:
        super().__init__()
        self.peers = peers
        self.me = me
        self._ttl = 1.0
        self._lock = threading.Condition()
        self._campaigning: dict[str, bytes] = {}
        self._leaders: dict[str, LeaderInfo] = {}
        self._data: dict[str, bytes] = {}
        self._ids: dict[str, str] = {}
        self._tickets: dict[str, Ticket] = {}
        self._signals: set[EventSignal] = set()
        self._server: socketserver.ThreadingTCPServer | None = None

    @classmethod
    def from_url(cls, url: BackendURL) -> BullyStore:
        me_text = Options("bully", url, {"me": "this peer's position in the list"}).optional("me")
        me = -1 if me_text is None else int(me_text) if me_text.isdigit() else -2
        if not -1 <= me < len(url.hosts):
            raise ConfigError(f"bully:// option me={me_text!r} must be a position in the "
                              f"peer list (0-{len(url.hosts) - 1})")
        return cls(list(url.hosts), me)

    @property
    def description(self) -> str:
        peers = ",".join(f"{h}:{p}" for h, p in self.peers)
        return f"bully://{peers}?me={self.me}"

    # -- messages -------------------------------------------------------------------

    def _ask(self, peer: int, message: dict[str, Any]) -> dict[str, Any] | None:
        try:
            with socket.create_connection(self.peers[peer], timeout=self._ttl / 4) as conn:
                conn.sendall((json.dumps(message) + "\n").encode())
                reply = conn.makefile().readline()
        except OSError:
            return None
        return json.loads(reply) if reply else None

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        election = message.get("election", "")
        with self._lock:
            if message["type"] == "election":
                return {"ok": election in self._campaigning}
            if message["type"] == "coordinator":
                info = LeaderInfo(election, message["id"], bytes.fromhex(message["value"]),
                                  message["token"])
                mine = self._leaders.get(election)
                self._leaders[election] = info
                self._ring()
                ticket = self._tickets.get(election)
                if mine is not None and mine.candidate_id != info.candidate_id \
                        and election in self._campaigning and ticket is not None:
                    self.report_loss(ticket, "a higher peer declared itself leader")
                return {"ok": True}
            if message["type"] == "resign":
                resigned = self._leaders.get(election)
                if resigned is not None and resigned.candidate_id == message["id"]:
                    del self._leaders[election]
                    self._ring()
                return {"ok": True}
            if message["type"] == "contender":
                if election not in self._campaigning:
                    return {"contender": None}
                return {"contender": [self._my_id(election), self._campaigning[election].hex()]}
            if message["type"] == "leader":
                current = self._leaders.get(election)
                return {"leader": None if current is None else
                        [current.candidate_id, current.value.hex(), current.token]}
        return {"error": "unknown message"}

    # -- wake-ups: a message to this peer fires every armed signal -------------------

    def _ring(self) -> None:
        """Wakes every waiting step (a message changed what this peer believes). Called
        with the lock held."""
        for signal in self._signals:
            signal.fire()

    def _listen(self) -> EventSignal:
        """A signal fired by the next coordinator or resign message to reach this peer."""
        signal = EventSignal(on_close=lambda: self._unlisten(signal))
        with self._lock:
            self._signals.add(signal)
        return signal

    def _unlisten(self, signal: EventSignal) -> None:
        with self._lock:
            self._signals.discard(signal)

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        self._ttl = ttl
        if self.me < 0:
            raise ConfigError("bully:// needs ?me=N to campaign (this peer's position)")
        store = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                if line:
                    reply = store._answer(json.loads(line))
                    self.wfile.write((json.dumps(reply) + "\n").encode())

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(self.peers[self.me], Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return ttl  # nothing guarantees it: the flaw this reference exists to show

    def renew_session(self, held: frozenset[Ticket]) -> None:
        return  # nobody to ask, so it always "succeeds": the same flaw

    def close_session(self) -> None:
        with self._lock:
            leading = [e for e, i in self._leaders.items() if e in self._campaigning
                       and i.candidate_id == self._my_id(e)]
        for election in leading:
            self._broadcast({"type": "resign", "election": election, "id": self._my_id(election)})
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _my_id(self, election: str) -> str:
        return self._ids.get(election, "")

    def _broadcast(self, message: dict[str, Any], peers: range | None = None) -> None:
        for peer in peers if peers is not None else range(len(self.peers)):
            if peer != self.me:
                self._ask(peer, message)

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        ticket = Ticket(election, candidate_id, str(self.me), self.me)
        with self._lock:
            self._campaigning[election] = value
            self._ids[election] = candidate_id
            self._tickets[election] = ticket
        return ticket

    def try_lead(self, ticket: Ticket) -> Step:
        election = ticket.election
        signal = self._listen()  # armed before asking: a coordinator message wakes us
        higher = range(self.me + 1, len(self.peers))
        alive = [p for p in higher
                 if (self._ask(p, {"type": "election", "election": election}) or {}).get("ok")]
        if alive:  # a higher peer is alive: wait to hear from it, then re-check
            return Wait(signal, retry_at=time.monotonic() + min(WAIT_SLICE, self._ttl))
        signal.close()
        token = time.time_ns()
        with self._lock:
            value = self._campaigning.get(election, b"")
            self._leaders[election] = LeaderInfo(election, ticket.candidate_id, value, token)
        self._broadcast({"type": "coordinator", "election": election,
                         "id": ticket.candidate_id, "value": value.hex(),
                         "token": token}, range(self.me))
        return Won(token)

    def withdraw(self, ticket: Ticket) -> None:
        election = ticket.election
        with self._lock:
            self._campaigning.pop(election, None)
            if self._tickets.get(election) is ticket:
                del self._tickets[election]
            info = self._leaders.get(election)
            was_leader = info is not None and info.candidate_id == ticket.candidate_id
            if was_leader:
                del self._leaders[election]
        if was_leader:
            self._broadcast({"type": "resign", "election": election, "id": ticket.candidate_id})

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        info = self._believed(ticket, "proclaim")
        with self._lock:
            self._campaigning[ticket.election] = value
            self._leaders[ticket.election] = LeaderInfo(ticket.election, info.candidate_id,
                                                        value, info.token)
        self._broadcast({"type": "coordinator", "election": ticket.election,
                         "id": info.candidate_id, "value": value.hex(), "token": info.token})

    def _believed(self, ticket: Ticket, action: str) -> LeaderInfo:
        with self._lock:
            info = self._leaders.get(ticket.election)
        if info is None or info.candidate_id != ticket.candidate_id:
            raise NotLeader(f"{action} refused: {ticket.candidate_id} does not believe it "
                            f"leads {ticket.election!r}")
        return info

    def leader(self, election: str) -> LeaderInfo | None:
        with self._lock:
            if election in self._leaders:
                return self._leaders[election]
        best: LeaderInfo | None = None
        for peer in range(len(self.peers)):
            if peer == self.me:
                continue
            found = (self._ask(peer, {"type": "leader", "election": election}) or {}).get("leader")
            if found and (best is None or found[2] > best.token):
                best = LeaderInfo(election, found[0], bytes.fromhex(found[1]), found[2])
        return best

    def contenders(self, election: str) -> list[Contender]:
        found = []  # ask every peer (no store): the ones that answer and campaign
        for peer in range(len(self.peers)):
            if peer == self.me:
                with self._lock:
                    entry = ([self._my_id(election), self._campaigning[election].hex()]
                             if election in self._campaigning else None)
            else:
                entry = (self._ask(peer, {"type": "contender", "election": election})
                         or {}).get("contender")
            if entry:
                found.append(Contender(entry[0], bytes.fromhex(entry[1]), peer))
        return found

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        signal = self._listen()  # messages to this peer; other peers' changes: a toy polls
        return self.leader(election), Wait(signal, retry_at=time.monotonic() + POLL)

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        self._believed(ticket, "guarded write")
        with self._lock:
            self._data[key] = value

    def read(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
