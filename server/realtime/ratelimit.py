"""Rate limits in Redis, shared by every node: a generic cell rate algorithm (GCRA).

Each limit is "N per period" with a burst of N: a bucket that refills continuously.
One Lua call checks (and, if all pass, charges) several buckets at once — e.g. the
user's and the shop's for a message — so a request is either charged everywhere or
nowhere, and answers with how long to wait. If Redis is unreachable, or does not answer
within the deadline, requests pass: availability of the chat beats precision of the
limits. A charge is never made late: the script gets the call's deadline and charges
nothing once Redis's clock is past it, so the calls a hanging Redis carries out when
it wakes (the caller let those requests pass long ago) cannot fill the buckets.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.realtime.health import LATE, RedisHealth
from server.realtime.keys import Keys
from server.rules.limits import Limit, Limits

# KEYS: bucket keys. ARGV: now (ms), deadline (ms, Redis's clock), then per key:
# emission interval (ms), burst tolerance (ms). Returns 0 when allowed (all charged),
# -1 when started past the deadline (nothing charged), else the wait in ms.
_GCRA = LATE + """
if late(ARGV[2]) then return -1 end
local now = tonumber(ARGV[1])
local waits = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i + 1])
  local tolerance = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  -- Allowed while the theoretical arrival time is at most `tolerance` ahead of now.
  local allow_at = tat - tolerance
  if allow_at > now then
    if allow_at - now > waits then waits = allow_at - now end
  end
  tats[i] = tat + interval
end
if waits > 0 then return waits end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tats[i], 'PX', math.ceil(tats[i] - now) + 1000)
end
return 0
"""


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, limits: Limits, health: RedisHealth) -> None:
        self.redis = redis
        self.health = health
        self.keys = keys
        self.limits = limits
        self._gcra = redis.register_script(_GCRA)

    async def check(self, now_ms: int, *buckets: tuple[str, str, Limit | None]) -> float:
        """Charge every (scope, subject, limit) bucket or none; 0.0 when allowed,
        else the seconds to wait."""
        active = [(self.keys.rate(scope, subject), limit) for scope, subject, limit in buckets if limit is not None]
        if not active:
            return 0.0
        args: list[float] = [now_ms, self.health.deadline_ms()]
        for _, limit in active:
            args += [limit.interval_ms, limit.tolerance_ms]
        try:
            wait_ms = int(await self._gcra(keys=[key for key, _ in active], args=args))
        except (RedisError, OSError):
            return 0.0
        if wait_ms < 0:
            self.health.late()
            return 0.0
        return round(wait_ms / 1000, 3)
