"""Redis work done for many connections at once, in pipelines, on real Redis and on
the embedded stand-in: unread books built by many hellos at once are each exactly
what building it alone gives; the heartbeat's refresh of every connection, chunked,
leaves none out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio as aioredis

from server.realtime.health import RedisHealth
from server.realtime.keys import Keys
from server.realtime.unread import UnreadBook
from tests import services
from tests.conftest import unique


@pytest.fixture(params=["redis", "embedded"])
async def book(request: pytest.FixtureRequest) -> AsyncIterator[UnreadBook]:
    if request.param == "redis":
        client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    else:
        client = fakeredis.FakeAsyncRedis()
    yield UnreadBook(client, Keys(f"{services.REDIS_PREFIX}{unique('books')}:"), RedisHealth(5.0))
    await client.aclose()


def state_of(n: int) -> dict[int, tuple[int, list[int]]]:
    """Reader n: tickets n and n+1000, cursor 2, unread seqs 3..(3+n%4)."""
    return {n: (2, list(range(3, 3 + n % 4))), n + 1000: (0, [1] if n % 2 else [])}


async def test_books_built_at_once_are_each_their_own(book: UnreadBook) -> None:
    readers = [f"c:shop-{n}:u" for n in range(60)]
    snapshots = await asyncio.gather(*(book.sync(r, state_of(n), join=True) for n, r in enumerate(readers)))
    for n, (reader, snapshot) in enumerate(zip(readers, snapshots, strict=True)):
        expected = {t: len(seqs) for t, (_, seqs) in state_of(n).items() if seqs}
        assert {t: c for t, c in snapshot.counts.items() if c} == expected, reader
        built, counts = await book.read_book(reader)
        assert built and {t: c for t, c in counts.items() if c} == expected


async def test_one_reader_built_twice_at_once_keeps_both_views(book: UnreadBook) -> None:
    reader = "c:shop-x:u"
    first, second, again = await asyncio.gather(book.sync(reader, {7: (0, [1, 2])}),
                                                book.sync(reader, {7: (0, [2, 3])}),
                                                book.sync(reader, {7: (0, [1, 2])}))
    _, counts = await book.read_book(reader)
    assert counts[7] == 3  # the union of both views: no message counted twice or lost
    # In the order asked: the first alone, then the other two in one pipeline.
    assert (first.counts[7], second.counts[7], again.counts[7]) == (2, 3, 3)


@pytest.fixture(params=["redis", "embedded"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    client = (aioredis.Redis.from_url(request.getfixturevalue("redis_url")) if request.param == "redis"
              else fakeredis.FakeAsyncRedis())
    yield client
    await client.aclose()


async def test_the_heartbeat_counts_every_connection_again_in_chunks(redis_client: aioredis.Redis) -> None:
    """Twenty thousand connections are refreshed in pipelines of a few hundred; every
    one of them gets its new expiry, none is left out at a chunk's edge."""
    from datetime import UTC, datetime, timedelta

    from server.realtime.admission import Connections

    keys = Keys(f"{services.REDIS_PREFIX}{unique('refresh')}:")
    connections = Connections(redis_client, keys, timedelta(seconds=30), RedisHealth(5.0))
    entries = [(f"c:shop-{n % 97}:u{n % 13}", f"node:conn-{n}") for n in range(1_201)]
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    await connections.refresh(entries, now, chunk=500)
    expires = str((now + timedelta(seconds=30)).timestamp()).encode()
    stored: dict[str, dict[bytes, bytes]] = {}
    for reader in {r for r, _ in entries}:
        stored[reader] = await redis_client.hgetall(keys.connections(reader))
    assert sum(len(fields) for fields in stored.values()) == len(entries)
    for reader, conn_id in entries:
        assert stored[reader][conn_id.encode()] == expires
