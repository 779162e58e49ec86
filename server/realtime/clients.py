"""The Redis clients of a process: one for commands, one for the subscriber, and the probe.

Every command and pipeline of the command client has a deadline
(`POMOC_REDIS_TIMEOUT`: the pool's wait for a free connection, connecting, and the
answer, all within it) and consults the process's `RedisHealth` first: while Redis
is known to be down a call fails at once with `RedisDown`, and a call that cannot
connect or misses its deadline marks it down (`server.realtime.health`). A broken
connection (Redis restarted) is retried once on a fresh one, a timeout never: a
hanging Redis costs one deadline, not three. The subscriber has no read timeout
(it is idle by nature) and no retries of its own, because the bus owns the
reconnect, its pings and their deadlines (on `redis://` it is the bus's own
connection, `server.realtime.subscriber`). The probe shares the command pool but
not the health check. Embedded mode uses the in-process stand-in (fakeredis, with
Lua) behind the same deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.realtime.health import RedisDown, RedisHealth
from server.realtime.subscriber import RawSubscriber
from server.realtime.subscriber import usable as raw_subscriber_usable
from server.settings import Settings

# What says "Redis is not answering" (as opposed to an error answer such as NOSCRIPT).
_NOT_ANSWERING = (RedisConnectionError, RedisTimeoutError, OSError)


# Tells the process's metrics about a failed call: (command, error kind).
ErrorSink = Callable[[str, str], None]


def _ignore(operation: str, error: str) -> None:
    pass


def _name(operation: object) -> str:
    return operation.decode(errors="replace") if isinstance(operation, bytes) else str(operation)


async def _within(health: RedisHealth, call: Callable[[], Awaitable[Any]], operation: object = "other",
                  errors: ErrorSink = _ignore) -> Any:
    # `operation` (the command's name, often bytes) is made a string only on failure.
    if not health.up:
        errors(_name(operation), "skipped")
        health.check()
    try:
        async with asyncio.timeout(health.timeout):
            return await call()
    except RedisDown:
        errors(_name(operation), "skipped")
        raise
    except _NOT_ANSWERING as exc:  # builtin TimeoutError (the deadline) is an OSError
        errors(_name(operation), "timeout" if isinstance(exc, TimeoutError | RedisTimeoutError) else "connection")
        health.down(exc)
        raise RedisDown(f"Redis did not answer within {health.timeout:g} s: {str(exc) or type(exc).__name__}") \
            from exc


class GuardedRedis(Redis):
    """A command client whose every command and pipeline has the deadline and skips
    Redis while it is known to be down."""

    def __init__(self, *, health: RedisHealth, errors: ErrorSink = _ignore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.health = health
        self.errors = errors

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        run = super().execute_command
        return await _within(self.health, lambda: run(*args, **options),  # type: ignore[no-untyped-call]
                             args[0] if args else "other", self.errors)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return GuardedPipeline(self.health, self.errors, self.connection_pool, self.response_callbacks,
                               transaction, shard_hint)


class GuardedPipeline(Pipeline):
    def __init__(self, health: RedisHealth, errors: ErrorSink, *args: Any) -> None:
        super().__init__(*args)
        self.health = health
        self.errors = errors

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        run = super().execute
        try:
            result: list[Any] = await _within(self.health, lambda: run(raise_on_error), "pipeline", self.errors)
        finally:
            await self.reset()  # type: ignore[no-untyped-call]  # skipped or cut short: nothing stays queued for a next use
        return result


async def run_script_many(redis: Redis, script: AsyncScript, calls: Sequence[tuple[list[Any], list[Any]]]
                          ) -> list[Any]:
    """`script` once per (keys, args), in order: a lone call as it is, several in one
    pipeline (the callers of a `server.batching.Coalesced` flight: one round trip)."""
    if len(calls) == 1:
        keys, args = calls[0]
        return [await script(keys=keys, args=args)]
    async with redis.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            await script(keys=keys, args=args, client=pipe)
        answers: list[Any] = await pipe.execute()
    return answers


def open_redis(settings: Settings, health: RedisHealth, errors: ErrorSink = _ignore
               ) -> tuple[GuardedRedis, Redis | RawSubscriber, Redis]:
    """The command client, a separate subscriber client, and the probe's client;
    `errors` hears of every command that fails to get an answer (or is skipped)."""
    timeout = settings.redis_timeout.total_seconds()
    if settings.embedded_redis:
        import fakeredis

        server = fakeredis.FakeServer()
        pool = fakeredis.FakeAsyncRedis(server=server).connection_pool
        return (GuardedRedis(connection_pool=pool, health=health, errors=errors),
                fakeredis.FakeAsyncRedis(server=server), Redis(connection_pool=pool))
    # One DriverInfo for every connection: without it redis-py looks its own version up
    # in the installed packages' metadata for each new connection (milliseconds each,
    # a tenth of a node's CPU while a reconnect storm grows the pool).
    driver = DriverInfo()
    blocking = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=64, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=timeout, socket_keepalive=True, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1, supported_errors=(RedisConnectionError,)),
        driver_info=driver,
    )
    subscriber: Redis | RawSubscriber
    if raw_subscriber_usable(settings.redis_url):
        # Every event a node delivers comes through the subscriber: no redis-py layers per message.
        subscriber = RawSubscriber(settings.redis_url, timeout)
    else:
        subscriber = Redis.from_url(settings.redis_url, socket_timeout=None, socket_connect_timeout=timeout,
                                    socket_keepalive=True, retry=Retry(NoBackoff(), 0), driver_info=driver)
    return (GuardedRedis(connection_pool=blocking, health=health, errors=errors), subscriber,
            Redis(connection_pool=blocking))
