"""The Lua scripts of the Redis backend (see :mod:`tenure.adapters.redis`).

Each script runs atomically on ONE instance; the adapter sends the same script to every
instance in parallel and decides by majority. Key layout (``P`` = the ``prefix`` option,
default ``tenure:``):

* ``P session:<sid>`` -- a string with PX = TTL; the session is alive on an instance
  while this key exists there;
* ``P leader:<election>`` -- a hash ``sid, ticket, token, cid, value, vseq``; it counts
  only while its holder's session key exists on the same instance;
* ``P counter:<election>`` -- the highest token ever accepted on this instance (no
  expiry; it must survive restarts for the token guarantee);
* ``P data:<key>`` -- a hash ``value, token, seq`` written by guarded writes;
* ``P contenders:<election>`` -- a hash ``ticket -> sid LF cid LF value``: every
  candidate that enqueued (Redis has no queue, so this registry is what
  ``contenders()`` lists); REGISTER writes a field only where its session is alive, a
  field counts only while its session key exists on the same instance, and CONTENDERS
  deletes the dead ones it meets;
* channel ``P changed:<election>`` -- published on every acquire, release and proclaim.

Scripts look up the holder's session key by a name read inside the script; that is
fine on standalone instances (the backend does not support Redis Cluster).
:class:`Scripts` registers them on one instance's client; STATE's reply is parsed by
:class:`State`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.commands.core import Script

STATE = """
-- KEYS: leader, counter, own session key (or a key that never exists)
-- ARGV: session key prefix
-- -> {counter, own_pttl} or {counter, own_pttl, holder_pttl, sid, ticket, token, cid,
--     value, vseq}
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local own = redis.call('PTTL', KEYS[3])
local h = redis.call('HMGET', KEYS[1], 'sid', 'ticket', 'token', 'cid', 'value', 'vseq')
if not h[1] then return {counter, own} end
local holder = redis.call('PTTL', ARGV[1] .. h[1])
return {counter, own, holder, h[1], h[2], h[3], h[4], h[5], h[6]}
"""

ACQUIRE = """
-- KEYS: leader, counter, own session key
-- ARGV: sid, ticket, proposal, cid, value, vseq, ttl_ms, session key prefix, channel
-- -> {-1, counter} our session is gone here (never recreated: PEXPIRE on a missing
--    key is a no-op); {0, counter} a live session of another client holds the key;
--    {2, counter} the proposal is not above this instance's counter; {1, proposal} won.
if redis.call('PEXPIRE', KEYS[3], ARGV[7]) == 0 then
  return {-1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local holder = redis.call('HGET', KEYS[1], 'sid')
if holder and holder ~= ARGV[1] and redis.call('EXISTS', ARGV[8] .. holder) == 1 then
  return {0, counter}
end
local proposal = tonumber(ARGV[3])
if counter >= proposal then return {2, counter} end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'ticket', ARGV[2], 'token', ARGV[3],
           'cid', ARGV[4], 'value', ARGV[5], 'vseq', ARGV[6])
redis.call('PUBLISH', ARGV[9], 'acquired')
return {1, proposal}
"""

RELEASE = """
-- KEYS: leader; ARGV: ticket, channel -> 1 if it was ours and is deleted, else 0
if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
"""

REGISTER = """
-- KEYS: contenders registry, own session key; ARGV: ticket, entry
-- -> 1 registered; 0 our session is gone here (nothing written: a registration
--    counts only while its session key exists on the same instance)
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

PROCLAIM = """
-- KEYS: leader, own session key; ARGV: ticket, token, value, vseq, channel -> 1 or 0
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'ticket', 'token')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'value', ARGV[3], 'vseq', ARGV[4])
redis.call('PUBLISH', ARGV[5], 'proclaimed')
return 1
"""

GUARDED_WRITE = """
-- KEYS: leader, own session key, data; ARGV: ticket, token, value, seq -> 1 or 0
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'ticket', 'token')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[3], 'value', ARGV[3], 'token', ARGV[2], 'seq', ARGV[4])
return 1
"""

CONTENDERS = """
-- KEYS: contenders registry; ARGV: session key prefix
-- -> {ticket, entry, ...} of the entries whose session is alive here (dead ones deleted)
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local sid = string.match(all[i + 1], '^([^\\n]*)')
  if redis.call('EXISTS', ARGV[1] .. sid) == 1 then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
"""


@dataclass(frozen=True)
class Scripts:
    """The scripts registered on one instance's client: run by EVALSHA, loaded again
    when the instance answers NOSCRIPT (after a restart)."""

    state: Script
    acquire: Script
    release: Script
    register: Script
    proclaim: Script
    guarded_write: Script
    contenders: Script

    @classmethod
    def on(cls, client: Redis) -> Scripts:
        return cls(*(client.register_script(source) for source in (
            STATE, ACQUIRE, RELEASE, REGISTER, PROCLAIM, GUARDED_WRITE, CONTENDERS)))


@dataclass(frozen=True)
class State:
    """One instance's view of an election: the STATE script's reply. A PTTL of -2
    means the key is gone on that instance."""

    counter: int
    own_pttl: int
    holder_pttl: int = -2
    sid: str = ""
    ticket: str = ""
    token: int = 0
    candidate_id: str = ""
    value: bytes = b""
    vseq: int = 0

    @property
    def held(self) -> bool:
        """A leader key whose holder's session is alive on this instance."""
        return bool(self.sid) and self.holder_pttl != -2

    @staticmethod
    def parse(reply: list[Any]) -> State:
        if len(reply) < 3:
            return State(int(reply[0]), int(reply[1]))
        return State(
            int(reply[0]), int(reply[1]), int(reply[2]), reply[3].decode(), reply[4].decode(),
            int(reply[5]), reply[6].decode(), bytes(reply[7]), int(reply[8] or 0),
        )


def holder_expiry(states: Sequence[State]) -> float:
    """Seconds until the first holder session of ``states`` may expire there (inf if
    none), plus 2 ms so that a re-read then finds it gone."""
    return min((s.holder_pttl / 1000 + 0.002 for s in states if s.holder_pttl >= 0),
               default=math.inf)
