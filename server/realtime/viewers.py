"""Who has a ticket open in a console: per-ticket viewer sets in Redis, with expiry.

Each console connection that follows a ticket is a field of the ticket's hash
(`Keys.viewers`) holding the agent, its name and the instant the entry expires; the
node refreshes its own entries on every heartbeat, so the entries of a node killed
with SIGKILL expire and any node's sweep removes them. The tickets that have viewers
are a set (`Keys.viewed_tickets`) for the sweep. Every call returns the ticket's
viewers after it (one entry per agent, however many tabs) and whether that set of
agents changed; the change is decided inside the script, so when a sweep removes an
expired viewer exactly one node announces it. A heartbeat refreshes only entries
that exist: a viewer that left while the beat was on its way is not brought back
(and after Redis lost its data, viewers re-form as agents open tickets again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from redis.asyncio import Redis

from server.realtime.keys import Keys

# The agents of a ticket's hash, expired entries removed: a list of {id, name}
# sorted by id, and the ids joined (to compare before and after).
_ROSTER = """
local function roster(hash, now)
  local seen, list = {}, {}
  local fields = redis.call('HGETALL', hash)
  for i = 1, #fields, 2 do
    local entry = cjson.decode(fields[i + 1])
    if tonumber(entry.e) <= now then
      redis.call('HDEL', hash, fields[i])
    elseif not seen[entry.a] then
      seen[entry.a] = true
      table.insert(list, {id = entry.a, name = entry.n})
    end
  end
  table.sort(list, function(x, y) return x.id < y.id end)
  local ids = {}
  for _, v in ipairs(list) do table.insert(ids, v.id) end
  return list, table.concat(ids, '\\n')
end
local function answer(list, changed)
  if #list == 0 then return {changed, '[]'} end
  return {changed, cjson.encode(list)}
end
"""

# KEYS: the ticket's hash, the viewed tickets. ARGV: now, ticket, conn, agent, name, expires, ttl (ms).
_JOIN = _ROSTER + """
local now = tonumber(ARGV[1])
local _, before = roster(KEYS[1], now)
redis.call('HSET', KEYS[1], ARGV[3], cjson.encode({a = ARGV[4], n = ARGV[5], e = tonumber(ARGV[6])}))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
redis.call('SADD', KEYS[2], ARGV[2])
local list, after = roster(KEYS[1], now)
return answer(list, before == after and 0 or 1)
"""

# KEYS: the ticket's hash, the viewed tickets. ARGV: now, ticket, conn.
_LEAVE = _ROSTER + """
local now = tonumber(ARGV[1])
local _, before = roster(KEYS[1], now)
redis.call('HDEL', KEYS[1], ARGV[3])
local list, after = roster(KEYS[1], now)
if #list == 0 then redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[2]) end
return answer(list, before == after and 0 or 1)
"""

# ARGV: prefix, expires, ttl (ms), then per entry: ticket, conn.
_BEAT = """
local prefix, expires, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local hash = prefix .. 'viewers:' .. ARGV[i]
  local current = redis.call('HGET', hash, ARGV[i + 1])
  if current then
    local entry = cjson.decode(current)
    entry.e = expires
    redis.call('HSET', hash, ARGV[i + 1], cjson.encode(entry))
    redis.call('PEXPIRE', hash, ttl)
  end
end
return 0
"""

# ARGV: prefix, now. Returns ticket, viewers, ticket, viewers … for the tickets whose agents changed.
_SWEEP = _ROSTER + """
local prefix, now = ARGV[1], tonumber(ARGV[2])
local out = {}
for _, ticket in ipairs(redis.call('SMEMBERS', prefix .. 'viewing')) do
  local hash = prefix .. 'viewers:' .. ticket
  local all, before = roster(hash, -1)
  local list, after = roster(hash, now)
  if #list == 0 then redis.call('DEL', hash); redis.call('SREM', prefix .. 'viewing', ticket) end
  if before ~= after then
    table.insert(out, ticket)
    table.insert(out, answer(list, 1)[2])
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Viewer:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Seen:
    """A ticket's viewers after a call, and whether the set of agents changed."""

    viewers: tuple[Viewer, ...]
    changed: bool


def _viewers(raw: bytes | str) -> tuple[Viewer, ...]:
    return tuple(Viewer(str(v["id"]), str(v["name"])) for v in orjson.loads(raw) or ())


class Viewers:
    def __init__(self, redis: Redis, keys: Keys, ttl: timedelta) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._join = redis.register_script(_JOIN)
        self._leave = redis.register_script(_LEAVE)
        self._beat = redis.register_script(_BEAT)
        self._sweep = redis.register_script(_SWEEP)

    def _ttl_ms(self) -> int:
        return int(self.ttl.total_seconds() * 1000) + 60_000

    async def join(self, ticket_id: int, conn_id: str, agent_id: str, name: str, now: datetime) -> Seen:
        changed, raw = await self._join(
            keys=[self.keys.viewers(ticket_id), self.keys.viewed_tickets],
            args=[now.timestamp(), ticket_id, conn_id, agent_id, name, (now + self.ttl).timestamp(), self._ttl_ms()])
        return Seen(_viewers(raw), bool(int(changed)))

    async def leave(self, ticket_id: int, conn_id: str, now: datetime) -> Seen:
        changed, raw = await self._leave(keys=[self.keys.viewers(ticket_id), self.keys.viewed_tickets],
                                         args=[now.timestamp(), ticket_id, conn_id])
        return Seen(_viewers(raw), bool(int(changed)))

    async def heartbeat(self, entries: Iterable[tuple[int, str]], now: datetime, chunk: int = 500) -> None:
        head: list[str | float | int] = [self.keys.prefix, (now + self.ttl).timestamp(), self._ttl_ms()]
        args: list[str | float | int] = []
        for ticket_id, conn_id in entries:
            args += [ticket_id, conn_id]
            if len(args) >= 2 * chunk:
                await self._beat(args=head + args)
                args = []
        if args:
            await self._beat(args=head + args)

    async def sweep(self, now: datetime) -> dict[int, tuple[Viewer, ...]]:
        """Expired viewers removed: the tickets whose agents changed, with who is left."""
        raw = await self._sweep(args=[self.keys.prefix, now.timestamp()])
        return {int(raw[i]): _viewers(raw[i + 1]) for i in range(0, len(raw), 2)}
