"""Whether Redis answers, shared by every Redis user of a process, and the deadline of each call.

A Redis that is down refuses connections at once; a Redis that hangs (stopped,
swapping, a stalled network) accepts connections and bytes and answers nothing,
and when it wakes it carries out everything that queued up meanwhile. So every
Redis call has a deadline (`POMOC_REDIS_TIMEOUT`, `server.realtime.clients` applies
it to each command and pipeline), and past it the caller degrades exactly as when
Redis is down. `RedisHealth` is the shared state that makes that cheap: the first
call that misses its deadline or cannot connect marks Redis down, and from then on
callers skip Redis at once (`RedisDown`) instead of each paying the timeout. A
probe asks Redis for its `TIME` every `probe_every` while it is down; the first
answer in time marks it up again and runs the listeners (`on_up`: what was not
published meanwhile goes out then).

A call that missed its deadline may still be carried out later, when Redis wakes.
Where that would do harm (a rate-limit charge, an admission, a publish whose replay
follows anyway) the Lua script gets the call's deadline on Redis's own clock
(`deadline_ms`; the offset between the clocks is measured by the probes) and
refuses to act once Redis's `TIME` is past it (`LATE`): a late call changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from server.realtime.deadline import Deadline

log = logging.getLogger(__name__)

# Prepended to the scripts that must not act late. ARGV carries the deadline in
# milliseconds on Redis's clock; TIME is allowed before writes since Redis 5 (effects
# replication; the embedded stand-in has it too).
LATE = """
local function late(deadline)
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline)
end
"""

# The share of the timeout a script may still start in: a script that starts later
# refuses, so that its answer, when there is one, reaches the caller before it gives up.
_SCRIPT_SHARE = 0.8
_CHECK_WHILE_UP = 5.0  # seconds between probes while up (they keep the clock offset fresh)

Listener = Callable[[], Awaitable[None]]


class RedisDown(RedisConnectionError):
    """Redis is known to be down (the call was not tried), or a call missed its
    deadline. A `redis.exceptions.RedisError`, so every `except RedisError` that
    degrades on a refused connection degrades on this too."""


class RedisHealth:
    def __init__(self, timeout: float, *, probe_every: float = 0.25,
                 wall: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self.probe_every = probe_every
        self._wall = wall
        self.up = True
        self.downs = 0  # how many times Redis was marked down (for logs and metrics)
        self._down_since = 0.0
        self._offset_ms = 0.0  # Redis's clock minus this process's, as last measured
        self._listeners: list[Listener] = []
        self._woken: asyncio.Event | None = None

    # ------------------------------------------------------------- callers
    def check(self) -> None:
        """Raise `RedisDown` at once while Redis is known to be down."""
        if not self.up:
            raise RedisDown("Redis is not answering (skipped until a probe succeeds)")

    def down(self, why: BaseException | str) -> None:
        """A call failed to connect or missed its deadline: skip Redis until a probe answers."""
        if not self.up:
            return
        self.up = False
        self.downs += 1
        self._down_since = time.monotonic()
        log.warning("redis.down", extra={"error": why if isinstance(why, str) else (str(why) or repr(why)),
                                         "timeout_ms": int(self.timeout * 1000)})
        if self._woken is not None:
            self._woken.set()

    def late(self) -> RedisDown:
        """A script refused to act because it started past its deadline: Redis is slow."""
        self.down("a script started past its deadline")
        return RedisDown("Redis answered past the deadline; nothing was done")

    def deadline_ms(self) -> int:
        """The latest instant, on Redis's clock in milliseconds, a script called now may
        still act at (later it refuses: see `LATE`)."""
        return int(self._wall() * 1000 + self._offset_ms + self.timeout * 1000 * _SCRIPT_SHARE)

    def on_up(self, listener: Listener) -> None:
        """Run `listener` whenever Redis answers again after being marked down."""
        self._listeners.append(listener)

    # ---------------------------------------------------------------- probe
    async def run(self, probe: Callable[[], Awaitable[Any]]) -> None:
        """The probe loop (one per process; runs until cancelled). `probe` asks Redis
        for its TIME without the health check in the way."""
        self._woken = asyncio.Event()
        while True:
            answered = await self._probe(probe)
            if answered and not self.up:
                await self._came_up()
            elif not answered:
                self.down("the probe got no answer in time")
            if self.up:
                # asyncio.timeout, not wait_for: on Python 3.11 a cancel arriving as
                # wait_for times out is swallowed into a TimeoutError, and this loop
                # would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CHECK_WHILE_UP):
                        await self._woken.wait()
                self._woken.clear()
            else:
                await asyncio.sleep(self.probe_every)  # the probe's own pace while Redis is down

    async def _probe(self, probe: Callable[[], Awaitable[Any]]) -> bool:
        sent = self._wall()
        try:
            async with Deadline(self.timeout):
                seconds, micros = await probe()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused, reset, timed out, loading: all say "not now"
            log.debug("redis.probe_failed", extra={"error": str(exc) or repr(exc)})
            return False
        received = self._wall()
        self._offset_ms = (int(seconds) * 1000 + int(micros) / 1000) - (sent + received) / 2 * 1000
        return True

    async def _came_up(self) -> None:
        self.up = True
        log.info("redis.up", extra={"duration_ms": int((time.monotonic() - self._down_since) * 1000)})
        for listener in self._listeners:
            try:
                await listener()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis.on_up_failed")
