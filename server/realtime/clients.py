"""The Redis clients of a process: one for commands, one for the subscriber.

The command pool blocks (up to 10 s) for a free connection instead of failing
under load, and commands time out after 10 s; the subscriber has no read timeout
(it is idle by nature) and no retries of its own, because the bus owns the
reconnect and must know when it happened. Embedded mode uses the in-process
stand-in (fakeredis, with Lua) for both.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.driver_info import DriverInfo
from redis.retry import Retry

from server.settings import Settings


def open_redis(settings: Settings) -> tuple[Redis, Redis]:
    """A command client and a separate subscriber client."""
    if settings.embedded_redis:
        import fakeredis

        server = fakeredis.FakeServer()
        return fakeredis.FakeAsyncRedis(server=server), fakeredis.FakeAsyncRedis(server=server)
    # One DriverInfo for every connection: without it redis-py looks its own version up
    # in the installed packages' metadata for each new connection (milliseconds each,
    # a tenth of a node's CPU while a reconnect storm grows the pool).
    driver = DriverInfo()
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=64, timeout=10, socket_timeout=10, socket_connect_timeout=2,
        socket_keepalive=True, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), driver_info=driver,
    )
    subscriber = Redis.from_url(settings.redis_url, socket_timeout=None, socket_connect_timeout=2,
                                socket_keepalive=True, retry=Retry(NoBackoff(), 0), driver_info=driver)
    return Redis(connection_pool=pool), subscriber
