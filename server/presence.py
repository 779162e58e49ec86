"""Agent (and customer) presence in Redis, aggregated over connections, with expiry.

Every connection of an agent is a field in the agent's hash holding its status and
the instant it expires; each node refreshes its own connections' fields on every
heartbeat. An agent is `online` if any live connection is online, `away` if all of
them are away, `offline` when none is left — three tabs open means offline only
after the last one closes, and a node killed with SIGKILL stops refreshing, so its
connections expire and any other node's sweep takes those agents offline. The
aggregated status and the set of online agents live in Redis too, and every change
is detected inside one Lua script, so exactly one node announces it.

Customers only count per shop: whether anybody of that shop is connected now. A
customer connection's arrival (admission, the hourly "seen" marker, the shop's
presence) and its leaving are one script each (`Arrivals`).
If Redis restarts empty, presence re-forms from the next heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis

from server.realtime.admission import ADMIT
from server.realtime.keys import Keys

_AGGREGATE = """
local function aggregate(hash, now)
  local best = 'offline'
  local fields = redis.call('HGETALL', hash)
  for i = 1, #fields, 2 do
    local value = fields[i + 1]
    local sep = string.find(value, '|', 1, true)
    local status = string.sub(value, 1, sep - 1)
    local expires = tonumber(string.sub(value, sep + 1))
    if expires <= now then
      redis.call('HDEL', hash, fields[i])
    elseif status == 'online' then
      best = 'online'
    elseif best == 'offline' then
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
"""

# ARGV: prefix, now, agent, conn, status ('' = remove the connection), expires, all (1 = every connection)
_UPDATE = _AGGREGATE + """
local prefix, now, agent, conn, status, expires = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local hash = prefix .. 'presence:agent:' .. agent
if status == '' then
  redis.call('HDEL', hash, conn)
else
  if ARGV[7] == '1' then
    local fields = redis.call('HGETALL', hash)
    for i = 1, #fields, 2 do
      local value = fields[i + 1]
      local sep = string.find(value, '|', 1, true)
      redis.call('HSET', hash, fields[i], status .. string.sub(value, sep))
    end
  end
  redis.call('HSET', hash, conn, status .. '|' .. expires)
  redis.call('PEXPIRE', hash, math.floor((tonumber(expires) - now) * 1000) + 60000)
end
local changes = {}
settle(prefix, agent, now, changes)
table.insert(changes, redis.call('SCARD', prefix .. 'presence:online'))
return changes
"""

# ARGV: prefix, now. Settles every known agent; returns changes and the online count.
_SWEEP = _AGGREGATE + """
local prefix, now = ARGV[1], tonumber(ARGV[2])
local changes = {}
local agents = redis.call('HKEYS', prefix .. 'presence:agents')
for _, agent in ipairs(agents) do settle(prefix, agent, now, changes) end
table.insert(changes, redis.call('SCARD', prefix .. 'presence:online'))
return changes
"""


@dataclass(frozen=True, slots=True)
class Changes:
    statuses: dict[str, str]
    agents_online: int


@dataclass(frozen=True, slots=True)
class Beat:
    """One live connection to refresh."""

    kind: str  # "agent" | "customer"
    owner: str  # agent id or shop id
    conn_id: str
    status: str = "online"


def _changes(raw: list[bytes | str | int]) -> Changes:
    *pairs, count = raw
    texts = [p.decode() if isinstance(p, bytes) else str(p) for p in pairs]
    return Changes(dict(zip(texts[0::2], texts[1::2], strict=True)), int(count))


class Presence:
    def __init__(self, redis: Redis, keys: Keys, ttl: timedelta) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._update = redis.register_script(_UPDATE)
        self._sweep = redis.register_script(_SWEEP)

    def _expires(self, now: datetime) -> float:
        return (now + self.ttl).timestamp()

    async def set_agent(self, agent_id: str, conn_id: str, status: str, now: datetime, *,
                        every_connection: bool = False) -> Changes:
        raw = await self._update(args=[self.keys.prefix, now.timestamp(), agent_id, conn_id, status,
                                       self._expires(now), "1" if every_connection else "0"])
        return _changes(raw)

    async def drop_agent(self, agent_id: str, conn_id: str, now: datetime) -> Changes:
        raw = await self._update(args=[self.keys.prefix, now.timestamp(), agent_id, conn_id, "", 0, "0"])
        return _changes(raw)

    async def heartbeat(self, beats: Iterable[Beat], now: datetime) -> None:
        expires = self._expires(now)
        ttl_ms = int(self.ttl.total_seconds() * 1000) + 60_000
        async with self.redis.pipeline(transaction=False) as pipe:
            any_beat = False
            for beat in beats:
                any_beat = True
                if beat.kind == "agent":
                    key = self.keys.agent_connections(beat.owner)
                    pipe.hset(key, beat.conn_id, f"{beat.status}|{expires}")
                    # Re-registers the agent after Redis lost everything; the sweep settles it.
                    pipe.hsetnx(self.keys.agents_online_status, beat.owner, "offline")
                else:
                    key = self.keys.customer_connections(beat.owner)
                    pipe.hset(key, beat.conn_id, str(expires))
                pipe.pexpire(key, ttl_ms)
            if any_beat:
                await pipe.execute()

    async def sweep(self, now: datetime) -> Changes:
        return _changes(await self._sweep(args=[self.keys.prefix, now.timestamp()]))

    async def agents_online(self) -> int:
        return int(await self.redis.scard(self.keys.agents_online))

    async def customers_online(self, shop_ids: Iterable[str], now: datetime) -> dict[str, bool]:
        ids = list(dict.fromkeys(shop_ids))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for shop_id in ids:
                pipe.hvals(self.keys.customer_connections(shop_id))
            values = await pipe.execute()
        stamp = now.timestamp()
        return {shop_id: any(float(v) > stamp for v in vals) for shop_id, vals in zip(ids, values, strict=True)}


# A customer's arrival in one call: the cool-down and the connection limit (as
# _CONNECT), the hourly "seen" marker (is the customer's row fresh in the database?)
# and the shop's presence, announcing it when this is the shop's first live
# connection. KEYS: connections, penalty, seen, shop presence. ARGV: conn, now,
# expires, limit, seen ttl (s), then the channels and payload of the announcement.
# Returns {admitted count or -wait, first seen (0/1), shop came online (0/1)}.
_ARRIVE = ADMIT + """
local conn, now, expires = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local count = admit(KEYS[1], KEYS[2], conn, now, expires, tonumber(ARGV[4]))
if count < 0 then return {count, 0, 0} end
local first = redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[5])) and 1 or 0
local online = 0
for _, value in ipairs(redis.call('HVALS', KEYS[4])) do
  if tonumber(value) > now then online = 1 break end
end
redis.call('HSET', KEYS[4], conn, expires)
redis.call('PEXPIRE', KEYS[4], math.floor((tonumber(expires) - now) * 1000) + 60000)
if online == 0 then
  for i = 6, #ARGV - 1 do redis.call('PUBLISH', ARGV[i], ARGV[#ARGV]) end
end
return {count, first, 1 - online}
"""

# A customer's connection leaves. KEYS: connections, shop presence. ARGV: conn, now,
# then the channels and payload announcing the shop offline when it was the last.
_LEAVE = """
local conn, now = ARGV[1], tonumber(ARGV[2])
redis.call('HDEL', KEYS[1], conn)
redis.call('HDEL', KEYS[2], conn)
for _, value in ipairs(redis.call('HVALS', KEYS[2])) do
  if tonumber(value) > now then return 0 end
end
for i = 3, #ARGV - 1 do redis.call('PUBLISH', ARGV[i], ARGV[#ARGV]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Arrival:
    wait: float  # 0.0 when admitted, else seconds until the user may try again
    first_seen: bool  # not seen for an hour: record the customer in the database
    shop_online: bool  # the shop's first live connection (announced already)


class Arrivals:
    """A customer's connection arriving and leaving: admission, the hourly "seen"
    marker and the shop's presence in one Redis call each (a reconnect storm costs
    one round trip per hello for all of them)."""

    def __init__(self, redis: Redis, keys: Keys, ttl: timedelta, seen_for: timedelta) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self.seen_for = seen_for
        self._arrive = redis.register_script(_ARRIVE)
        self._leave = redis.register_script(_LEAVE)

    async def arrive(self, reader: str, shop_id: str, conn_id: str, now: datetime, limit: int,
                     announce: tuple[list[str], bytes]) -> Arrival:
        channels, payload = announce
        expires = (now + self.ttl).timestamp()
        count, first, online = await self._arrive(
            keys=[self.keys.connections(reader), self.keys.penalty(reader), self.keys.seen(reader),
                  self.keys.customer_connections(shop_id)],
            args=[conn_id, now.timestamp(), expires, limit, int(self.seen_for.total_seconds()), *channels, payload])
        count = int(count)
        wait = 0.0 if count > 0 else (-count / 1000 if count < -1 else 30.0)
        return Arrival(wait, bool(int(first)), bool(int(online)))

    async def leave(self, reader: str, shop_id: str, conn_id: str, now: datetime,
                    announce: tuple[list[str], bytes]) -> bool:
        """True when the shop has no live connection left (announced already)."""
        channels, payload = announce
        return bool(int(await self._leave(keys=[self.keys.connections(reader), self.keys.customer_connections(shop_id)],
                                          args=[conn_id, now.timestamp(), *channels, payload])))
