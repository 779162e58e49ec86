"""Redis deadlines (`server.realtime.deadline`) against real Redis: a stall of the
node's own loop (a full garbage collection over 20,000 connections takes a second)
is not taken for a Redis that missed its deadline; a Redis that does not answer
still fails the call in time."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from server.realtime.clients import GuardedRedis
from server.realtime.commands import DirectCommands
from server.realtime.deadline import Deadline
from server.realtime.health import RedisDown, RedisHealth
from tests.private import PrivateRedis, thaw

ECHO = "return ARGV[1]"


def guarded(url: str, timeout: float, direct: bool) -> GuardedRedis:
    return GuardedRedis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, timeout=timeout),
                        health=RedisHealth(timeout), direct=DirectCommands(url, timeout) if direct else None)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "redis-py"])
async def test_a_stalled_loop_gets_the_answer_redis_gave_meanwhile(redis_url: str, direct: bool) -> None:
    client = guarded(redis_url, 0.5, direct)
    echo = client.register_script(ECHO)
    try:
        assert await echo(keys=[], args=["warm"]) == b"warm"  # connected, script loaded
        for n in range(3):
            call = asyncio.ensure_future(echo(keys=[], args=[f"during-{n}"]))
            # The call is written first; then the loop stops for longer than the
            # deadline, while Redis answers into the socket.
            asyncio.get_running_loop().call_soon(time.sleep, 0.9)
            assert await call == f"during-{n}".encode()
        assert client.health.up and client.health.downs == 0
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()


async def test_a_deadline_still_expires_on_time_without_a_stall() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Deadline(0.3):
            await never
    took = time.monotonic() - started
    assert 0.29 <= took < 0.3 + 0.5


async def test_a_frozen_redis_during_a_stall_costs_a_deadline_and_a_bit() -> None:
    server = PrivateRedis().start()
    client = guarded(server.url, 0.5, True)
    echo = client.register_script(ECHO)
    try:
        assert await echo(keys=[], args=["warm"]) == b"warm"
        tree = server.freeze()
        try:
            started = time.monotonic()
            call = asyncio.ensure_future(echo(keys=[], args=["never"]))
            asyncio.get_running_loop().call_soon(time.sleep, 0.9)
            with pytest.raises(RedisDown):
                await call
            took = time.monotonic() - started
        finally:
            thaw(tree)
        assert 0.9 <= took < 0.9 + 0.25 + 1.0 and not client.health.up
    finally:
        server.stop()
        await client.aclose()
        await client.connection_pool.disconnect()
