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
* ``P contenders:<election>`` -- a hash ``ticket -> sid LF client LF cid LF value``:
  every candidate that enqueued (``client`` names its wake channel);
* ``P queue:<election>`` -- a sorted set ``ticket -> order``: the same candidates in
  arrival order (ties, from concurrent enqueues, by ticket id, as Redis sorts them);
  ``P qseq:<election>`` -- the highest order handed out on this instance (no expiry).
  An entry (hash field and queue member, written and removed together) counts only
  while its session key exists on the same instance; the scripts that walk the queue
  delete the dead entries they meet;
* channel ``P changed:<election>`` -- published on every acquire, release and proclaim
  (for observers);
* channel ``P wake:<client>`` -- one per client; WITHDRAW publishes
  ``<election> <counter>`` there to wake the entry behind the one it removes (its turn
  may have come) and, when it released the leader key, the first live entry of the
  queue. Nobody else is woken. The counter is a hint for the woken one's proposal.

Scripts look up session keys by names read inside the script; that is fine on
standalone instances (the backend does not support Redis Cluster). Arguments to
``redis.call`` are passed as strings, not Lua numbers, where the script has them: Redis
7.0 turns each Lua number argument into text with ``snprintf("%.17g")``, ~0.2 us apiece
(docs/performance.md, the ACQUIRE trace). :class:`Scripts`
registers them on one instance's client; STATE's reply is parsed by :class:`State`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.commands.core import Script

SCAN = """
-- The first entry of queue q (registry r, session key prefix p) strictly after
-- (later = true) or before (later = false) the position (ref, member), starting the
-- range at score `from`; ref = nil: from the head. Live means its session key exists
-- here; dead entries met are deleted. `skip` (a ticket) is passed over while live.
-- -> {ticket, client, session pttl, score} or nil
local function scan(q, r, p, from, ref, member, later, skip)
  local off = 0
  while true do
    local batch
    local at = off == 0 and '0' or string.format('%d', off)  -- text: see the docstring
    if later then
      batch = redis.call('ZRANGEBYSCORE', q, from, '+inf', 'WITHSCORES', 'LIMIT', at, '16')
    else
      batch = redis.call('ZREVRANGEBYSCORE', q, from, '-inf', 'WITHSCORES', 'LIMIT', at, '16')
    end
    local removed = 0
    for i = 1, #batch, 2 do
      local m, s = batch[i], tonumber(batch[i + 1])
      local beyond = ref == nil or s ~= ref
      if not beyond then
        if later then beyond = m > member else beyond = m < member end
      end
      if beyond then
        local entry = redis.call('HGET', r, m)
        local pttl, client = -2, nil
        if entry then
          local sid
          sid, client = string.match(entry, '^([^\\n]*)\\n([^\\n]*)\\n')
          if sid then pttl = redis.call('PTTL', p .. sid) end
        end
        if pttl == -2 then
          redis.call('ZREM', q, m)
          redis.call('HDEL', r, m)
          removed = removed + 1
        elseif m ~= skip then
          return {m, client, pttl, s}
        end
      end
    end
    if #batch < 32 then return nil end
    off = off + 16 - removed
  end
end
"""

OBSERVE = """
-- What STATE and take read first: k = {leader, counter, own session key, queue,
-- registry}; p = session key prefix; ticket = nil for no queue part, else its order
-- (as given) is set as its score where it differs, and `ahead` is the session PTTL of
-- the nearest live entry ahead of it other than the holder (-2 if none).
-- -> counter, own_pttl, leader hash fields {sid, ticket, token, cid, value, vseq}, ahead
local function observe(k, p, ticket, order_arg)
  local counter = tonumber(redis.call('GET', k[2]) or '0')
  local own = redis.call('PTTL', k[3])
  local h = redis.call('HMGET', k[1], 'sid', 'ticket', 'token', 'cid', 'value', 'vseq')
  local ahead = -2
  if ticket then
    local order = tonumber(order_arg)
    local score = redis.call('ZSCORE', k[4], ticket)
    if score and tonumber(score) ~= order then
      redis.call('ZADD', k[4], 'XX', order_arg, ticket)
    end
    local found = scan(k[4], k[5], p, order_arg, order, ticket, false, h[2])
    if found then ahead = found[3] end
  end
  return counter, own, h, ahead
end
"""

STATE = SCAN + OBSERVE + """
-- KEYS: leader, counter, own session key (or a key that never exists), queue, registry
-- ARGV: session key prefix, ticket ('' = no queue part), its order
-- -> {counter, own_pttl, ahead_pttl} or {counter, own_pttl, ahead_pttl, holder_pttl, sid,
--     ticket, token, cid, value, vseq}; ahead_pttl is the session PTTL of the nearest
--     live entry ahead of the ticket other than the leader key's holder, -2 if none.
--     The ticket's own score is set to its order where it differs (an enqueue that
--     agreed on the order after this instance had answered).
local ticket = nil
if ARGV[2] ~= '' then ticket = ARGV[2] end
local counter, own, h, ahead = observe(KEYS, ARGV[1], ticket, ARGV[3])
if not h[1] then return {counter, own, ahead} end
local holder = redis.call('PTTL', ARGV[1] .. h[1])
return {counter, own, ahead, holder, h[1], h[2], h[3], h[4], h[5], h[6]}
"""

TAKE = """
-- take(k, a): the acquisition on this instance. k = {leader, counter, own session key,
-- queue, registry[, data key to read on a win]}; a = {sid, ticket, proposal, cid,
-- value, vseq, ttl_ms, session key prefix, channel, order (0: no queue check), force
-- ('1': take it even behind a live entry)}; proposal 0 = 1 + this instance's counter
-- (only for a single instance: with several, one proposal must go to all).
-- Reads what STATE reads (so a waiter that knows the counter needs no read before it)
-- and takes the key only where this ticket may lead: -> {code, counter, own_pttl,
-- ahead_pttl[, holder_pttl, sid, ticket, token, cid, value, vseq]}, the rest being
-- STATE's reply as it was before the take, with code
--   -1 our session is gone here (never recreated: PEXPIRE only runs on a live key);
--    0 a live session of another client holds the key;
--    3 a live entry other than the holder is ahead of the ticket here (not forced);
--    2 the proposal is not above this instance's counter;
--    1 won: counter = proposal, and no holder is reported; with a data key, the reply
--      is {1, proposal, own, ahead, value, token, seq}: that guarded-write key as
--      ``read`` sees it, read in the same atomic script as the take.
local function take(k, a)
  local ticket = nil
  if tonumber(a[10]) > 0 then ticket = a[2] end
  local counter, own, h, ahead = observe(k, a[8], ticket, a[10])
  local function state(code)
    if not h[1] then return {code, counter, own, ahead} end
    local holder = redis.call('PTTL', a[8] .. h[1])
    return {code, counter, own, ahead, holder, h[1], h[2], h[3], h[4], h[5], h[6]}
  end
  if own == -2 then return state(-1) end
  if h[1] and h[1] ~= a[1] and redis.call('EXISTS', a[8] .. h[1]) == 1 then
    return state(0)
  end
  if ahead ~= -2 and a[11] ~= '1' then return state(3) end
  local proposal, token = tonumber(a[3]), a[3]  -- token: its text (see the docstring)
  if proposal == 0 then
    proposal = counter + 1
    token = string.format('%d', proposal)
  end
  if counter >= proposal then return state(2) end
  redis.call('PEXPIRE', k[3], a[7])
  redis.call('SET', k[2], token)
  -- every field of the leader hash is written here (no DEL first: PROCLAIM only
  -- rewrites value and vseq)
  redis.call('HSET', k[1], 'sid', a[1], 'ticket', a[2], 'token', token,
             'cid', a[4], 'value', a[5], 'vseq', a[6])
  redis.call('PUBLISH', a[9], 'acquired')
  if k[6] then
    local d = redis.call('HMGET', k[6], 'value', 'token', 'seq')
    return {1, proposal, own, ahead, d[1], d[2], d[3]}
  end
  return {1, proposal, own, ahead}
end
"""

ACQUIRE = SCAN + OBSERVE + TAKE + """
-- KEYS, ARGV, reply: take's k and a (TAKE), a proposal above 0.
return take(KEYS, ARGV)
"""

RELEASE = """
-- KEYS: leader; ARGV: ticket, channel -> 1 if it was ours and is deleted, else 0
-- (gives back a partial acquisition; the entry keeps its place in the queue)
if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
"""

REGISTER = SCAN + OBSERVE + TAKE + """
-- KEYS: registry, own session key, queue, qseq, counter, leader[, data key to read on
--       a win]
-- ARGV: ticket, entry[, sid, proposal, cid, value, ttl_ms, session key prefix, channel]
-- -> {order, counter}: the entry's order on this instance (>= 1; 0: our session is gone
--    here, nothing written: an entry counts only while its session key exists on the
--    same instance) and the election's counter (the first ACQUIRE's proposal - 1);
--    with the take's arguments, the entry then also tries to take the leader key as
--    ACQUIRE would with its order (no force): {order, counter, take's reply...}.
local counter = tonumber(redis.call('GET', KEYS[5]) or '0')
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, counter} end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not ARGV[3] then return {seq, counter} end
local r = take({KEYS[6], KEYS[5], KEYS[2], KEYS[3], KEYS[1], KEYS[7]},
               {ARGV[3], ARGV[1], ARGV[4], ARGV[5], ARGV[6], '0', ARGV[7], ARGV[8],
                ARGV[9], tostring(seq), '0'})
table.insert(r, 1, counter)
table.insert(r, 1, seq)
return r
"""

ORDER = """
-- KEYS: queue, qseq; ARGV: ticket, order -> 1
-- The order the instances agreed on (their highest): set it where the entry exists,
-- and never hand out an order at or below it again here.
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
return 1
"""

WITHDRAW = SCAN + """
-- KEYS: leader, registry, queue, counter
-- ARGV: ticket, changed channel, wake channel prefix, session key prefix, election
-- -> 1 if the leader key was ours (deleted), else 0. Removes the entry, then wakes, if
--    the leader key was ours, the first live entry, and the next live entry behind the
--    removed one (one scan when that is the same entry), with the message
--    '<election> <counter>' (the counter spares the woken waiter a read before its
--    acquisition script).
local wake = ARGV[5] .. ' ' .. (redis.call('GET', KEYS[4]) or '0')
local released = 0
if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  released = 1
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if score then redis.call('ZREM', KEYS[3], ARGV[1]) end
local order = tonumber(score)
local woken = nil
if released == 1 then
  local head = scan(KEYS[3], KEYS[2], ARGV[4], '-inf', nil, '', true, nil)
  if not head then return released end  -- nobody live queued, so nobody behind it
  redis.call('PUBLISH', ARGV[3] .. head[2], wake)
  woken = head[1]
  -- A head behind the removed entry is also the first live entry behind it (the
  -- usual case: the leader was the head): no second scan.
  if not score or head[4] > order or (head[4] == order and head[1] > ARGV[1]) then
    return released
  end
end
if score then
  local after = scan(KEYS[3], KEYS[2], ARGV[4], score, order, ARGV[1], true, nil)
  if after and after[1] ~= woken then redis.call('PUBLISH', ARGV[3] .. after[2], wake) end
end
return released
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
-- KEYS: queue, registry; ARGV: session key prefix
-- -> {ticket, order, entry, ...} of the live entries in queue order (dead ones deleted)
local out = {}
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  local entry = redis.call('HGET', KEYS[2], all[i])
  local sid = entry and string.match(entry, '^([^\\n]*)\\n')
  if sid and redis.call('EXISTS', ARGV[1] .. sid) == 1 then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
    out[#out + 1] = entry
  else
    redis.call('ZREM', KEYS[1], all[i])
    redis.call('HDEL', KEYS[2], all[i])
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
    order: Script
    withdraw: Script
    proclaim: Script
    guarded_write: Script
    contenders: Script

    @classmethod
    def on(cls, client: Redis) -> Scripts:
        return cls(*(client.register_script(source) for source in (
            STATE, ACQUIRE, RELEASE, REGISTER, ORDER, WITHDRAW, PROCLAIM, GUARDED_WRITE,
            CONTENDERS)))


@dataclass(frozen=True)
class State:
    """One instance's view of an election: the STATE script's reply. A PTTL of -2
    means the key is gone on that instance; ``ahead_pttl`` is that of the nearest live
    entry ahead of the asking ticket, the leader key's holder aside (-2: none)."""

    counter: int
    own_pttl: int
    ahead_pttl: int = -2
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

    @property
    def behind(self) -> bool:
        """A live entry other than the holder is ahead of the asking ticket here."""
        return self.ahead_pttl != -2

    @staticmethod
    def parse(reply: list[Any]) -> State:
        head = (int(reply[0]), int(reply[1]), int(reply[2]))
        if len(reply) < 4:
            return State(*head)
        return State(
            *head, int(reply[3]), reply[4].decode(), reply[5].decode(), int(reply[6]),
            reply[7].decode(), bytes(reply[8]), int(reply[9] or 0),
        )


def expiry(pttls: Sequence[int]) -> float:
    """Seconds until the first of these session PTTLs (ms) runs out (inf if none is
    counting down), plus 2 ms so that a re-read then finds the key gone."""
    return min((p / 1000 + 0.002 for p in pttls if p >= 0), default=math.inf)


def holder_expiry(states: Sequence[State]) -> float:
    """Seconds until the first holder session of ``states`` may expire there."""
    return expiry([s.holder_pttl for s in states])


def entry(sid: str, client: str, candidate_id: str, value: bytes) -> bytes:
    """A registry entry (see the module docstring)."""
    return f"{sid}\n{client}\n{candidate_id}\n".encode() + value


def parse_entry(raw: bytes) -> tuple[str, bytes]:
    """The candidate id and value of a registry entry."""
    _, _, candidate_id, value = raw.split(b"\n", 3)
    return candidate_id.decode(), value
