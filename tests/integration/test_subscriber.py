"""The bus's own subscriber connection (`server.realtime.subscriber`) against real
Redis servers: what redis-py's PubSub would hand the bus, in order, and every way the
connection can fail ending in an error the bus reconnects on, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from server.realtime.resp import usable
from server.realtime.subscriber import RawPubSub, RawSubscriber
from tests.conftest import unique
from tests.private import PrivateRedis, thaw


@pytest.fixture
async def publisher(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def next_of(pubsub: RawPubSub, kind: str, budget: float = 10.0) -> dict:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} within {budget} s")


def test_plain_redis_urls_only() -> None:
    assert usable("redis://127.0.0.1:6379/0") and usable("redis://:secret@h:1/2")
    assert not usable("rediss://h:6380/0") and not usable("unix:///run/redis.sock")


async def test_what_is_published_arrives_in_order_as_redis_py_gives_it(redis_url, publisher) -> None:
    pubsub = RawSubscriber(redis_url, 5.0).pubsub()
    one, two = unique("sub-a"), unique("sub-b")
    try:
        await pubsub.subscribe(one, two)
        first, second = await next_of(pubsub, "subscribe"), await next_of(pubsub, "subscribe")
        assert {first["channel"], second["channel"]} == {one.encode(), two.encode()}
        # Thousands in one pipeline: many replies per read of the socket, split anywhere.
        async with publisher.pipeline(transaction=False) as pipe:
            for n in range(3000):
                pipe.publish(one if n % 2 else two, f"{n}:zażółć".encode() + b"\x00\xff" * (n % 50))
            await pipe.execute()
        got = [await next_of(pubsub, "message") for _ in range(3000)]
        assert [m["data"] for m in got] == [f"{n}:zażółć".encode() + b"\x00\xff" * (n % 50) for n in range(3000)]
        assert [m["channel"] for m in got[:2]] == [two.encode(), one.encode()]
        assert got[0] == {"type": "message", "pattern": None, "channel": two.encode(), "data": got[0]["data"]}
        await pubsub.ping()
        assert (await next_of(pubsub, "pong"))["data"] == b""
        await pubsub.unsubscribe(one)
        assert (await next_of(pubsub, "unsubscribe"))["channel"] == one.encode()
        await publisher.publish(one, b"not any more")
        await publisher.publish(two, b"still")
        assert (await next_of(pubsub, "message"))["data"] == b"still"
        # Nothing waiting: None at once (0) or after the timeout, no error.
        assert await pubsub.get_message(timeout=0) is None
        started = time.monotonic()
        assert await pubsub.get_message(timeout=0.2) is None
        assert time.monotonic() - started >= 0.15
    finally:
        await pubsub.aclose()


async def test_a_password_is_sent_and_a_wrong_one_is_an_error() -> None:
    server = PrivateRedis(password="s3cret").start()
    try:
        good = RawSubscriber(server.url, 5.0).pubsub()
        await good.subscribe("guarded")
        assert (await next_of(good, "subscribe"))["channel"] == b"guarded"
        await good.aclose()
        for url in (server.url.replace("s3cret", "wrong"), server.url.replace(":s3cret@", "")):
            with pytest.raises(ResponseError):
                await RawSubscriber(url, 5.0).pubsub().ping()
    finally:
        server.stop()


async def test_nobody_listening_or_a_frozen_redis_fails_the_opening_in_time() -> None:
    server = PrivateRedis().start()
    try:
        tree = server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await RawSubscriber(server.url, 0.5).pubsub().ping()  # accepted by the kernel, never answered
            assert time.monotonic() - started < 5.0
        finally:
            thaw(tree)
    finally:
        server.stop()
    with pytest.raises(OSError):
        await RawSubscriber(server.url, 0.5).pubsub().ping()  # refused


async def test_what_arrived_before_redis_died_is_handed_out_then_the_loss() -> None:
    server = PrivateRedis().start()
    pubsub = RawSubscriber(server.url, 5.0).pubsub()
    try:
        await pubsub.subscribe("last")
        await next_of(pubsub, "subscribe")
        publisher = aioredis.Redis.from_url(server.url)
        await publisher.publish("last", b"words")
        await publisher.aclose()
        # Redis wrote the message to the subscriber before it answered the publisher: it is
        # in the socket (ahead of the FIN) when Redis dies now.
        server.stop()
        assert (await pubsub.get_message(timeout=5))["data"] == b"words"
        with pytest.raises(RedisConnectionError):
            while True:
                await pubsub.get_message(timeout=5)
        with pytest.raises(RedisConnectionError):
            await pubsub.subscribe("again")  # a lost connection takes no more commands
    finally:
        await pubsub.aclose()
        server.stop()


async def test_bytes_that_are_not_redis_end_the_connection() -> None:
    served = asyncio.get_running_loop().create_future()

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            await reader.read(100)  # until the client closes
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            served.set_result(None)

    fake = await asyncio.start_server(liar, "127.0.0.1", 0)
    port = fake.sockets[0].getsockname()[1]
    try:
        with pytest.raises(RedisConnectionError, match="not RESP"):
            await RawSubscriber(f"redis://127.0.0.1:{port}/0", 5.0).pubsub().ping()
        await asyncio.wait_for(served, 10)  # the fake's side is closed too: nothing left to the collector
    finally:
        fake.close()
        await fake.wait_closed()
