"""The Redis clients of a process: one for commands, one for the subscriber, and the probe.

Every command and pipeline of the command client has a deadline
(`POMOC_REDIS_TIMEOUT`: the pool's wait for a free connection, connecting, and the
answer, all within it; a stall of the process's own loop is not taken for a late
Redis: `server.realtime.deadline`) and consults the process's `RedisHealth` first: while Redis
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

from server.realtime.commands import DIRECT, DirectCommands, name_of
from server.realtime.deadline import Deadline
from server.realtime.health import RedisDown, RedisHealth
from server.realtime.resp import usable
from server.realtime.subscriber import RawSubscriber
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
        async with Deadline(health.timeout):
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
    Redis while it is known to be down. Scripts and publishes (and pipelines of
    nothing else) go over `direct` when there is one (`server.realtime.commands`)."""

    def __init__(self, *, health: RedisHealth, errors: ErrorSink = _ignore, direct: DirectCommands | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.health = health
        self.errors = errors
        self.direct = direct

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.direct is not None:
            await self.direct.aclose()
        await super().aclose(close_connection_pool)

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        if self.direct is not None:
            self.direct.scripts[_sha(registered.sha)] = _source(registered.script)
        return registered

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        direct = self.direct
        if direct is not None and args and name_of(args) in DIRECT:
            return (await _direct(self.health, direct, [args], True, self.errors))[0]
        run = super().execute_command
        return await _within(self.health, lambda: run(*args, **options),  # type: ignore[no-untyped-call]
                             args[0] if args else "other", self.errors)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return GuardedPipeline(self.health, self.errors, self.direct, self.connection_pool, self.response_callbacks,
                               transaction, shard_hint)


class GuardedPipeline(Pipeline):
    def __init__(self, health: RedisHealth, errors: ErrorSink, direct: DirectCommands | None, *args: Any) -> None:
        super().__init__(*args)
        self.health = health
        self.errors = errors
        self.direct = direct

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        direct = self.direct
        try:
            stack = self.command_stack
            if (direct is not None and stack and not self.is_transaction and not self.explicit_transaction
                    and all(name_of(args) in DIRECT for args, _ in stack)):
                # No SCRIPT EXISTS first: a script Redis does not know is loaded on NOSCRIPT.
                for script in self.scripts:
                    direct.scripts.setdefault(_sha(script.sha), _source(script.script))
                return await _direct(self.health, direct, [args for args, _ in stack], raise_on_error, self.errors)
            run = super().execute
            result: list[Any] = await _within(self.health, lambda: run(raise_on_error), "pipeline", self.errors)
        finally:
            await self.reset()  # type: ignore[no-untyped-call]  # skipped or cut short: nothing stays queued for a next use
        return result


async def _direct(health: RedisHealth, direct: DirectCommands, commands: list[Any], raise_on_error: bool,
                  errors: ErrorSink) -> list[Any]:
    operation = commands[0][0] if len(commands) == 1 else "pipeline"
    try:
        replies: list[Any] = await _within(health, lambda: direct.call_many(commands, raise_on_error), operation,
                                           errors)
        return replies
    except RedisDown:
        direct.stuck()  # replies that late: the connection is given up, the next call opens another
        raise


def _sha(sha: str | bytes) -> str:
    return sha.decode() if isinstance(sha, bytes) else sha


def _source(script: str | bytes | memoryview) -> str | bytes:
    return bytes(script) if isinstance(script, memoryview) else script


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
    if usable(settings.redis_url):
        # Every event a node delivers comes through the subscriber: no redis-py layers per message.
        subscriber = RawSubscriber(settings.redis_url, timeout)
    else:
        subscriber = Redis.from_url(settings.redis_url, socket_timeout=None, socket_connect_timeout=timeout,
                                    socket_keepalive=True, retry=Retry(NoBackoff(), 0), driver_info=driver)
    # Scripts and publishes, most of a node's calls, over a connection of their own.
    direct = DirectCommands(settings.redis_url, timeout) if usable(settings.redis_url) else None
    return (GuardedRedis(connection_pool=blocking, health=health, errors=errors, direct=direct), subscriber,
            Redis(connection_pool=blocking))
