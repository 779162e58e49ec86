"""Agent (and customer) presence in Redis, aggregated over connections, with expiry.

Every connection of an agent is a field in the agent's hash holding its status and
the instant it expires; each node refreshes its own connections' fields on every
heartbeat. An agent is `online` if any live connection is online, `away` if all of
them are away, `offline` when none is left — three tabs open means offline only
after the last one closes, and a node killed with SIGKILL stops refreshing, so its
connections expire and any other node's sweep takes those agents offline. The
aggregated status, the set of online agents and the last count announced live in
Redis too, and every change is detected inside one Lua script, so exactly one node
announces it. A closed connection leaves a tombstone for one TTL, so a heartbeat
that was already on its way cannot bring it back.

Customers only count per shop: whether anybody of that shop is connected now. A
customer connection's arrival (admission, the hourly "seen" marker, the shop's
presence) and its leaving are one script each (`Arrivals`).
If Redis restarts empty, presence re-forms from the next heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from server.batching import Coalesced
from server.realtime.admission import ADMIT
from server.realtime.clients import run_script_many
from server.realtime.health import LATE, RedisHealth
from server.realtime.keys import Keys

# A connection's field holds "status|expires"; a connection that closed leaves a
# tombstone "gone|expires" for one TTL, so that a heartbeat already on its way (taken
# before the close) cannot bring it back to life.
_AGGREGATE = """
local function aggregate(hash, now)
  local best = 'offline'
  local fields = redis.call('HGETALL', hash)
  for i = 1, #fields, 2 do
    local value = fields[i + 1]
    local sep = string.find(value, '|', 1, true)
    local status = sep and string.sub(value, 1, sep - 1) or 'gone'
    local expires = sep and tonumber(string.sub(value, sep + 1)) or 0
    if expires <= now then
      redis.call('HDEL', hash, fields[i])
    elseif status == 'online' then
      best = 'online'
    elseif status == 'away' and best == 'offline' then
      best = 'away'
    end
  end
  return best
end
local function settle(prefix, agent, now, changes)
  local hash = prefix .. 'presence:agent:' .. agent
  local best = aggregate(hash, now)
  local statuses = prefix .. 'presence:agents'
  local before = redis.call('HGET', statuses, agent) or 'offline'
  if best == 'offline' then
    redis.call('HDEL', statuses, agent)
  else
    redis.call('HSET', statuses, agent, best)
  end
  if best == 'online' then
    redis.call('SADD', prefix .. 'presence:online', agent)
  else
    redis.call('SREM', prefix .. 'presence:online', agent)
  end
  if best ~= before then
    table.insert(changes, agent)
    table.insert(changes, best)
  end
end
-- The number of agents online, and whether it differs from the last one announced
-- (kept in Redis: whichever node sees a change first announces it, once).
local function counted(prefix, changes)
  local count = redis.call('SCARD', prefix .. 'presence:online')
  local key = prefix .. 'presence:announced'
  if tonumber(redis.call('GET', key) or '-1') ~= count then
    redis.call('SET', key, count)
    table.insert(changes, count)
    table.insert(changes, 1)
  else
    table.insert(changes, count)
    table.insert(changes, 0)
  end
  return changes
end
"""

# ARGV: prefix, now, agent, conn, status ('' = the connection closed), expires, all (1 = every connection)
_UPDATE = _AGGREGATE + """
local prefix, now, agent, conn, status, expires = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local hash = prefix .. 'presence:agent:' .. agent
if status == '' then
  redis.call('HSET', hash, conn, 'gone|' .. expires)
else
  if ARGV[7] == '1' then
    local fields = redis.call('HGETALL', hash)
    for i = 1, #fields, 2 do
      local value = fields[i + 1]
      local sep = string.find(value, '|', 1, true)
      if sep and string.sub(value, 1, sep - 1) ~= 'gone' then
        redis.call('HSET', hash, fields[i], status .. string.sub(value, sep))
      end
    end
  end
  redis.call('HSET', hash, conn, status .. '|' .. expires)
end
redis.call('PEXPIRE', hash, math.floor((tonumber(expires) - now) * 1000) + 60000)
local changes = {}
settle(prefix, agent, now, changes)
return counted(prefix, changes)
"""

# ARGV: prefix, now. Settles every known agent; returns changes and the online count.
_SWEEP = _AGGREGATE + """
local prefix, now = ARGV[1], tonumber(ARGV[2])
local changes = {}
local agents = redis.call('HKEYS', prefix .. 'presence:agents')
for _, agent in ipairs(agents) do settle(prefix, agent, now, changes) end
return counted(prefix, changes)
"""

# This node's live connections, refreshed: ARGV: prefix, expires, hash ttl (ms), then
# per connection: kind (a = agent, c = customer), owner (agent or shop id), conn,
# status. A closed connection's tombstone is left alone; after Redis lost its data
# the fields (and the agent's entry among the known agents) are made again.
_BEAT = """
local prefix, expires, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV, 4 do
  local kind, owner, conn, status = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if kind == 'a' then
    local hash = prefix .. 'presence:agent:' .. owner
    local current = redis.call('HGET', hash, conn)
    if not current or string.sub(current, 1, 5) ~= 'gone|' then
      redis.call('HSET', hash, conn, status .. '|' .. expires)
      redis.call('PEXPIRE', hash, ttl)
      redis.call('HSETNX', prefix .. 'presence:agents', owner, 'offline')
    end
  else
    local hash = prefix .. 'presence:shop:' .. owner
    local current = redis.call('HGET', hash, conn)
    if not current or tonumber(current) >= 0 then
      redis.call('HSET', hash, conn, expires)
      redis.call('PEXPIRE', hash, ttl)
    end
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Changes:
    statuses: dict[str, str]
    agents_online: int
    # The count differs from the last one announced (this call is the one to announce it).
    count_changed: bool = False


@dataclass(frozen=True, slots=True)
class Beat:
    """One live connection to refresh."""

    kind: str  # "agent" | "customer"
    owner: str  # agent id or shop id
    conn_id: str
    status: str = "online"


def _changes(raw: list[bytes | str | int]) -> Changes:
    *pairs, count, changed = raw
    texts = [p.decode() if isinstance(p, bytes) else str(p) for p in pairs]
    return Changes(dict(zip(texts[0::2], texts[1::2], strict=True)), int(count), bool(int(changed)))


class Presence:
    def __init__(self, redis: Redis, keys: Keys, ttl: timedelta) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._update = redis.register_script(_UPDATE)
        self._sweep = redis.register_script(_SWEEP)
        self._beat = redis.register_script(_BEAT)

    def _expires(self, now: datetime) -> float:
        return (now + self.ttl).timestamp()

    async def set_agent(self, agent_id: str, conn_id: str, status: str, now: datetime, *,
                        every_connection: bool = False) -> Changes:
        raw = await self._update(args=[self.keys.prefix, now.timestamp(), agent_id, conn_id, status,
                                       self._expires(now), "1" if every_connection else "0"])
        return _changes(raw)

    async def drop_agent(self, agent_id: str, conn_id: str, now: datetime) -> Changes:
        raw = await self._update(args=[self.keys.prefix, now.timestamp(), agent_id, conn_id, "",
                                       self._expires(now), "0"])
        return _changes(raw)

    async def heartbeat(self, beats: Iterable[Beat], now: datetime, chunk: int = 500) -> None:
        """Refresh this node's connections (in calls of `chunk` connections: Redis is
        never blocked long by a big node)."""
        head: list[str | float | int] = [self.keys.prefix, self._expires(now),
                                         int(self.ttl.total_seconds() * 1000) + 60_000]
        args: list[str | float | int] = []
        for beat in beats:
            args += ["a" if beat.kind == "agent" else "c", beat.owner, beat.conn_id, beat.status]
            if len(args) >= 4 * chunk:
                await self._beat(args=head + args)
                args = []
        if args:
            await self._beat(args=head + args)

    async def sweep(self, now: datetime) -> Changes:
        return _changes(await self._sweep(args=[self.keys.prefix, now.timestamp()]))

    async def agents_online(self) -> int:
        return int(await self.redis.scard(self.keys.agents_online))

    async def online_agents(self) -> list[str]:
        """The agents online now ("online", not "away"), sorted: who may be assigned."""
        members = await self.redis.smembers(self.keys.agents_online)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def statuses(self, agent_ids: Iterable[str]) -> dict[str, str]:
        """Each agent's status now: "online", "away" or "offline" (no live connection)."""
        ids = list(dict.fromkeys(agent_ids))
        if not ids:
            return {}
        values = await self.redis.hmget(self.keys.agents_online_status, ids)
        return {agent: (v.decode() if isinstance(v, bytes) else v) or "offline"
                for agent, v in zip(ids, values, strict=True)}

    async def customers_online(self, shop_ids: Iterable[str], now: datetime) -> dict[str, bool]:
        ids = list(dict.fromkeys(shop_ids))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for shop_id in ids:
                pipe.hvals(self.keys.customer_connections(shop_id))
            values = await pipe.execute()
        stamp = now.timestamp()
        # A closed connection's tombstone is negative: never above now.
        return {shop_id: any(float(v) > stamp for v in vals) for shop_id, vals in zip(ids, values, strict=True)}


# A customer's arrival in one call: the cool-down and the connection limit (as in
# `server.realtime.admission`), the hourly "seen" marker (is the customer's row fresh
# in the database?), the shop's presence, announcing it when this is the shop's first
# live connection, and how many agents are online (for the welcome). A shop's field
# per connection holds its expiry; a closed connection leaves its negated expiry as
# a tombstone until then. KEYS: connections, penalty, seen, shop presence, agents
# online. ARGV: conn, now, expires, limit, seen ttl (s), deadline (ms, Redis's
# clock), then the channels and payload of the announcement. Returns {admitted count
# or -wait, first seen (0/1), shop came online (0/1), agents online}; {0, 0, 0, 0}
# when started past the deadline (nothing done: the caller went on without it).
_ARRIVE = LATE + ADMIT + """
if late(ARGV[6]) then return {0, 0, 0, 0} end
local conn, now, expires = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local count = admit(KEYS[1], KEYS[2], conn, now, expires, tonumber(ARGV[4]))
if count < 0 then return {count, 0, 0, 0} end
local first = redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[5])) and 1 or 0
local online = 0
local fields = redis.call('HGETALL', KEYS[4])
for i = 1, #fields, 2 do
  local value = tonumber(fields[i + 1])
  if value > now then online = 1 elseif math.abs(value) <= now then redis.call('HDEL', KEYS[4], fields[i]) end
end
redis.call('HSET', KEYS[4], conn, expires)
redis.call('PEXPIRE', KEYS[4], math.floor((tonumber(expires) - now) * 1000) + 60000)
if online == 0 then
  for i = 7, #ARGV - 1 do redis.call('PUBLISH', ARGV[i], ARGV[#ARGV]) end
end
return {count, first, 1 - online, redis.call('SCARD', KEYS[5])}
"""

# A customer's connection leaves. KEYS: connections, shop presence. ARGV: conn, now,
# its tombstone (the negated expiry), then the channels and payload announcing the
# shop offline when it was the last.
_LEAVE = """
local conn, now = ARGV[1], tonumber(ARGV[2])
redis.call('HDEL', KEYS[1], conn)
redis.call('HSET', KEYS[2], conn, ARGV[3])
for _, value in ipairs(redis.call('HVALS', KEYS[2])) do
  if tonumber(value) > now then return 0 end
end
for i = 4, #ARGV - 1 do redis.call('PUBLISH', ARGV[i], ARGV[#ARGV]) end
return 1
"""


_LEAVE_BATCH = 500  # leavings one pipeline carries at most
_ARRIVE_BATCH = 500  # arrivals one pipeline carries at most


@dataclass(frozen=True, slots=True)
class _Arriving:
    keys: tuple[str, ...]
    args: tuple[str | float | int | bytes, ...]  # the connection's id first: every arrival is its own


@dataclass(frozen=True, slots=True)
class _Leaving:
    connections: str  # the user's connections key
    shop: str  # the shop's connections key
    conn_id: str
    at: float
    tombstone: float
    channels: tuple[str, ...]
    payload: bytes

    @property
    def args(self) -> list[str | float | bytes]:
        return [self.conn_id, self.at, self.tombstone, *self.channels, self.payload]


@dataclass(frozen=True, slots=True)
class Arrival:
    wait: float  # 0.0 when admitted, else seconds until the user may try again
    first_seen: bool  # not seen for an hour: record the customer in the database
    shop_online: bool  # the shop's first live connection (announced already)
    agents_online: int | None = None  # how many agents are online now (None: unknown)


class Arrivals:
    """A customer's connection arriving and leaving: admission, the hourly "seen"
    marker and the shop's presence in one script each; the arrivals (and leavings)
    of many connections at once go to Redis in one pipeline, so a reconnect storm
    costs a round trip per few hundred hellos, not one per hello."""

    def __init__(self, redis: Redis, keys: Keys, ttl: timedelta, seen_for: timedelta, health: RedisHealth) -> None:
        self.redis = redis
        self.health = health
        self.keys = keys
        self.ttl = ttl
        self.seen_for = seen_for
        self._arrive = redis.register_script(_ARRIVE)
        self._leave = redis.register_script(_LEAVE)
        self._leavings: Coalesced[_Leaving, bool] = Coalesced(self._leave_many, bool, max_batch=_LEAVE_BATCH)
        self._arrivals: Coalesced[_Arriving, list[Any]] = Coalesced(self._arrive_many, list, max_batch=_ARRIVE_BATCH)

    async def arrive(self, reader: str, shop_id: str, conn_id: str, now: datetime, limit: int,
                     announce: tuple[list[str], bytes]) -> Arrival:
        channels, payload = announce
        expires = (now + self.ttl).timestamp()
        answer = await self._arrivals.get(_Arriving(
            (self.keys.connections(reader), self.keys.penalty(reader), self.keys.seen(reader),
             self.keys.customer_connections(shop_id), self.keys.agents_online),
            (conn_id, now.timestamp(), expires, limit, int(self.seen_for.total_seconds()),
             self.health.deadline_ms(), *channels, payload)))
        count, first, online, agents = answer
        count = int(count)
        if count == 0:
            raise self.health.late()
        wait = 0.0 if count > 0 else (-count / 1000 if count < -1 else 30.0)
        return Arrival(wait, bool(int(first)), bool(int(online)), int(agents))

    async def leave(self, reader: str, shop_id: str, conn_id: str, now: datetime,
                    announce: tuple[list[str], bytes]) -> bool:
        """True when the shop has no live connection left (announced already).

        Leavings at once (a network cut, a node's clients all closing) go to Redis
        in one pipeline: ten thousand scripts sent one by one would wait on each
        other past the deadline of every Redis call on the node."""
        channels, payload = announce
        tombstone = -(now + self.ttl).timestamp()
        return await self._leavings.get(_Leaving(self.keys.connections(reader), self.keys.customer_connections(shop_id),
                                                 conn_id, now.timestamp(), tombstone, tuple(channels), payload))

    async def _arrive_many(self, arrivals: list[_Arriving]) -> dict[_Arriving, list[Any]]:
        answers = await run_script_many(self.redis, self._arrive, [(list(a.keys), list(a.args)) for a in arrivals])
        return dict(zip(arrivals, answers, strict=True))

    async def _leave_many(self, leavings: list[_Leaving]) -> dict[_Leaving, bool]:
        answers = await run_script_many(self.redis, self._leave,
                                        [([one.connections, one.shop], one.args) for one in leavings])
        return {one: bool(int(answer)) for one, answer in zip(leavings, answers, strict=True)}
