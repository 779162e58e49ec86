"""Admission of connections: how many each user has open, and the cool-down after abuse.

Open connections per user are a hash of connection → expiry in Redis, refreshed by
the heartbeat, so a killed node's connections stop counting after the TTL. A user
at its limit, or cooling down after a connection was closed for abuse, is refused
before the hello costs any database work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis

from server.realtime.health import LATE, RedisHealth
from server.realtime.keys import Keys

# Open connections per user: a hash of connection → expiry, refreshed by the heartbeat,
# so a killed node's connections stop counting after the TTL. Admission: refused while
# the user cools down (-milliseconds left) or is at its limit (-1), else counted.
ADMIT = """
local function admit(conns, penalty_key, conn, now, expires, limit)
  local penalty = redis.call('PTTL', penalty_key)
  if penalty > 0 then return -penalty end
  local live = 0
  local fields = redis.call('HGETALL', conns)
  for i = 1, #fields, 2 do
    if tonumber(fields[i + 1]) <= now then redis.call('HDEL', conns, fields[i]) else live = live + 1 end
  end
  if live >= limit then return -1 end
  redis.call('HSET', conns, conn, expires)
  redis.call('PEXPIRE', conns, math.floor((tonumber(expires) - now) * 1000) + 60000)
  return live + 1
end
"""

# KEYS: connections, penalty, agents online, the agent's "seen" marker. ARGV: conn,
# now, expires, limit, deadline (ms, Redis's clock), the token's fingerprint (name and
# departments), the marker's lifetime (s). Returns {the count or -wait, agents online
# (for the welcome), 1 when the agent's record needs writing (not written within the
# marker's lifetime, or the token names it differently)}, or {0, 0, 0} when started
# past the deadline (nothing counted: the caller let the connection in without
# counting it long ago, and its heartbeat counts it).
_CONNECT = LATE + ADMIT + """
if late(ARGV[5]) then return {0, 0, 0} end
local count = admit(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))
local stale = 0
if count > 0 and redis.call('GET', KEYS[4]) ~= ARGV[6] then
  redis.call('SET', KEYS[4], ARGV[6], 'EX', tonumber(ARGV[7]))
  stale = 1
end
return {count, redis.call('SCARD', KEYS[3]), stale}
"""


@dataclass(frozen=True, slots=True)
class Admitted:
    wait: float  # 0.0 when admitted, else seconds until the user may try again
    agents_online: int
    # The agent's record is not known fresh (write it; the marker is set already).
    stale_record: bool = False


class Connections:
    def __init__(self, redis: Redis, keys: Keys, ttl: timedelta, health: RedisHealth) -> None:
        self.redis = redis
        self.health = health
        self.keys = keys
        self.ttl = ttl
        self._connect = redis.register_script(_CONNECT)

    async def open(self, reader: str, conn_id: str, now: datetime, limit: int, *, fingerprint: str = "",
                   seen_for: timedelta = timedelta(hours=1)) -> Admitted:
        """Count a new connection of `reader`: wait 0.0 when admitted, else the seconds
        to wait (the user already has `limit` connections, or is cooling down after
        being closed for abuse); how many agents are online; and whether the record
        `fingerprint` stands for is due to be written (in the same round trip)."""
        expires = (now + self.ttl).timestamp()
        raw, agents, stale = await self._connect(
            keys=[self.keys.connections(reader), self.keys.penalty(reader), self.keys.agents_online,
                  self.keys.seen(reader)],
            args=[conn_id, now.timestamp(), expires, limit, self.health.deadline_ms(), fingerprint,
                  max(1, int(seen_for.total_seconds()))])
        result = int(raw)
        if result == 0:
            raise self.health.late()
        if result > 0:
            return Admitted(0.0, int(agents), bool(int(stale)))
        return Admitted(-result / 1000 if result < -1 else 30.0, int(agents))

    async def forget_seen(self, reader: str) -> None:
        """The record was not written after all (the hello failed): the next hello writes it."""
        await self.redis.delete(self.keys.seen(reader))

    async def penalize(self, reader: str, cooldown: timedelta) -> None:
        """After closing a connection for abuse: refuse the user's hellos for a while,
        before they cost a database query (a flood that reconnects stays cheap)."""
        await self.redis.set(self.keys.penalty(reader), "1", px=int(cooldown.total_seconds() * 1000))

    async def close(self, reader: str, conn_id: str) -> None:
        await self.redis.hdel(self.keys.connections(reader), conn_id)

    async def refresh(self, entries: Iterable[tuple[str, str]], now: datetime, chunk: int = 500) -> None:
        """Every connection of this node counted again, in pipelines of `chunk`: one
        of twenty thousand would hold the event loop (packing it, reading the answers)
        past the deadline of every other Redis call on the node."""
        expires = str((now + self.ttl).timestamp())
        batch = list(entries)
        for start in range(0, len(batch), chunk):
            async with self.redis.pipeline(transaction=False) as pipe:
                for reader, conn_id in batch[start:start + chunk]:
                    pipe.hset(self.keys.connections(reader), conn_id, expires)
                await pipe.execute()
