"""The command client's own connection for scripts and publishes
(`server.realtime.commands`, behind `GuardedRedis`) against real Redis servers: the
same answers redis-py gives, in order under concurrency, scripts Redis does not know
loaded on the way, and every failure ending in an error within the deadline, never a
hang and never a reply handed to the wrong caller."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from server.realtime.clients import GuardedRedis, run_script_many
from server.realtime.commands import DirectCommands
from server.realtime.health import RedisDown, RedisHealth
from tests.conftest import unique
from tests.private import PrivateRedis, thaw

# Every kind of reply a script can give: integer, bulk, nil, nested array, status.
MIXED = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
return {n, ARGV[2], false, {1, {ARGV[2]}}, redis.status_reply('FINE')}
"""
ECHO = "return ARGV[1]"
FAILS = "return redis.error_reply('WRONG things happened')"


def guarded(url: str, timeout: float = 5.0, direct: bool = True) -> GuardedRedis:
    health = RedisHealth(timeout)
    return GuardedRedis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, timeout=timeout),
                        health=health, direct=DirectCommands(url, timeout) if direct else None)


async def close(client: GuardedRedis) -> None:
    await client.aclose()  # its direct connection too
    await client.connection_pool.disconnect()


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[GuardedRedis, GuardedRedis]]:
    fast, plain = guarded(redis_url), guarded(redis_url, direct=False)
    yield fast, plain
    for client in (fast, plain):
        await close(client)


async def test_scripts_answer_as_through_redis_py(clients) -> None:
    fast, plain = clients
    key = unique("direct-mixed")
    try:
        ours, theirs = fast.register_script(MIXED), plain.register_script(MIXED)
        first = await ours(keys=[key], args=[5, "zażółć"])
        second = await theirs(keys=[key], args=[5, "zażółć"])
        assert first == [5, "zażółć".encode(), None, [1, ["zażółć".encode()]], b"FINE"]
        assert second == [10, *first[1:]]
        # Several in one pipeline (one round trip), in order; and a lone publish.
        answers = await run_script_many(fast, ours, [([key], [1, "a"]), ([key], [2, "b"]), ([key], [3, "c"])])
        assert [a[0] for a in answers] == [11, 13, 16] and [a[1] for a in answers] == [b"a", b"b", b"c"]
        assert await fast.publish(unique("direct-nobody"), b"x") == 0
    finally:
        await plain.delete(key)


async def test_closing_the_client_closes_its_direct_connection(redis_url: str) -> None:
    fast = guarded(redis_url)
    assert await fast.register_script(ECHO)(keys=[], args=["open"]) == b"open"
    assert fast.direct is not None
    link = fast.direct._link
    assert link is not None and link.lost is None
    await close(fast)
    assert link.lost is not None and fast.direct._link is None


async def test_many_callers_at_once_each_get_their_own_reply(clients) -> None:
    fast, _ = clients
    echo = fast.register_script(ECHO)
    lone = [echo(keys=[], args=[f"one-{n}"]) for n in range(500)]
    batches = [run_script_many(fast, echo, [([], [f"b{n}-{k}"]) for k in range(7)]) for n in range(100)]
    got = await asyncio.gather(*lone, *batches)
    assert got[:500] == [f"one-{n}".encode() for n in range(500)]
    assert got[500:] == [[f"b{n}-{k}".encode() for k in range(7)] for n in range(100)]


async def test_a_script_redis_does_not_know_is_loaded_on_the_way(clients) -> None:
    fast, plain = clients
    # A body no one has loaded (its sha is new to this Redis).
    body = f"return '{uuid.uuid4().hex}' .. ARGV[1]"
    script = fast.register_script(body)
    assert await plain.script_exists(script.sha) == [False]
    answers = await run_script_many(fast, script, [([], ["1"]), ([], ["2"])])
    assert [a[-1:] for a in answers] == [b"1", b"2"]
    assert await plain.script_exists(script.sha) == [True]
    assert (await script(keys=[], args=["3"]))[-1:] == b"3"


async def test_an_error_reply_is_raised_or_left_in_place(clients) -> None:
    fast, _ = clients
    fails, echo = fast.register_script(FAILS), fast.register_script(ECHO)
    with pytest.raises(ResponseError, match="WRONG things"):
        await fails(keys=[], args=[])
    async with fast.pipeline(transaction=False) as pipe:
        await echo(keys=[], args=["before"], client=pipe)
        await fails(keys=[], args=[], client=pipe)
        await echo(keys=[], args=["after"], client=pipe)
        answers = await pipe.execute(raise_on_error=False)
    assert answers[0] == b"before" and answers[2] == b"after"
    assert isinstance(answers[1], ResponseError)
    # The connection is fine afterwards, and the health check never heard of it.
    assert await echo(keys=[], args=["still"]) == b"still" and fast.health.up


async def test_the_database_and_password_in_the_url_are_used() -> None:
    server = PrivateRedis(password="s3cret").start()
    try:
        url = server.url.rsplit("/", 1)[0] + "/3"
        fast = guarded(url)
        await fast.register_script("return redis.call('SET', KEYS[1], ARGV[1])")(keys=["in-three"], args=["yes"])
        reader = aioredis.Redis.from_url(url)
        assert await reader.get("in-three") == b"yes"
        await reader.aclose()
        other = aioredis.Redis.from_url(server.url)
        assert await other.get("in-three") is None
        await other.aclose()
        await close(fast)
        wrong = guarded(server.url.replace("s3cret", "wrong"))
        with pytest.raises(ResponseError):
            await wrong.register_script(ECHO)(keys=[], args=["x"])
        await close(wrong)
    finally:
        server.stop()


async def until(check, budget: float = 15.0) -> None:
    deadline = time.monotonic() + budget
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)  # polling a condition, bounded by the budget


@contextlib.asynccontextmanager
async def private_redis(timeout: float) -> AsyncIterator[tuple[PrivateRedis, GuardedRedis, Any]]:
    """A private Redis this test may freeze or kill, a client of it with its direct
    connection and the echo script, and the process's health probe (as the node runs
    it, on a client of its own)."""
    server = PrivateRedis().start()
    fast = guarded(server.url, timeout=timeout)
    prober = aioredis.Redis.from_url(server.url, socket_timeout=1)
    probe = asyncio.ensure_future(fast.health.run(prober.time))
    try:
        yield server, fast, fast.register_script(ECHO)
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        await prober.aclose()
        server.stop()
        await close(fast)


async def test_a_frozen_redis_costs_one_deadline_then_a_new_connection() -> None:
    async with private_redis(0.5) as (server, fast, echo):
        assert await echo(keys=[], args=["warm"]) == b"warm"
        assert fast.direct is not None
        before = fast.direct._link
        tree = server.freeze()
        try:
            started = time.monotonic()
            calls = await asyncio.gather(*(echo(keys=[], args=[str(n)]) for n in range(20)),
                                         return_exceptions=True)
            took = time.monotonic() - started
        finally:
            thaw(tree)
        assert all(isinstance(c, RedisDown) for c in calls), calls
        assert took < 0.5 + 2.0
        assert before is not None and before.lost is not None  # given up: a dead one would hold every call
        # Thawed: Redis answers the old connection late, to nobody (it was given up);
        # once the probe sees Redis again, a new connection answers, in order.
        await until(lambda: fast.health.up)
        assert await asyncio.gather(*(echo(keys=[], args=[f"after-{n}"]) for n in range(20))) == \
            [f"after-{n}".encode() for n in range(20)]


async def test_redis_going_away_fails_the_waiting_calls_and_the_next_one_reconnects() -> None:
    async with private_redis(5.0) as (server, fast, echo):
        assert await echo(keys=[], args=["up"]) == b"up"
        tree = server.freeze()
        waiting = asyncio.ensure_future(echo(keys=[], args=["lost"]))
        assert fast.direct is not None
        link = fast.direct._link
        await until(lambda: link is not None and len(link.waiting) == 1)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)  # killed frozen, while the call waits for its reply
        server.proc.wait()
        thaw(tree)
        started = time.monotonic()
        with pytest.raises(RedisDown):
            await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 5.0  # the loss, not the deadline
        server.start()
        await until(lambda: fast.health.up)
        assert await echo(keys=[], args=["back"]) == b"back"
