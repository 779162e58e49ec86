"""Unread books built by many hellos at once share one pipeline, on real Redis and on
the embedded stand-in: each reader's book is exactly what building it alone gives."""

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
