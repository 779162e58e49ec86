"""Coalesced reads: concurrent callers share a flight; nothing lost, nothing mixed up."""

from __future__ import annotations

import asyncio
import gc

import pytest

from server.batching import Coalesced


class Reads:
    """A read whose flights the test lands by hand."""

    def __init__(self) -> None:
        self.flights: list[list[int]] = []
        self.gates: list[asyncio.Event] = []
        self.fail: BaseException | None = None
        self.started = asyncio.Event()

    async def run(self, keys: list[int]) -> dict[int, list[int]]:
        self.flights.append(keys)
        gate = asyncio.Event()
        self.gates.append(gate)
        self.started.set()
        await gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: [k, k * 10] for k in keys if k % 7}  # multiples of 7 are "not found"


async def flown(reads: Reads, n: int) -> None:
    """Until the n-th flight has started (the loop turns; nothing else runs in this test)."""
    async with asyncio.timeout(5):
        while len(reads.gates) < n:
            reads.started.clear()
            await reads.started.wait()


async def landed(reads: Reads, n: int) -> None:
    await flown(reads, n)
    reads.gates[n - 1].set()


async def test_a_lone_read_flies_at_once_and_the_ones_asked_meanwhile_share_the_next() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list)
    first = asyncio.ensure_future(batched.get(1))
    await flown(reads, 1)
    assert reads.flights == [[1]]  # no waiting for company on a quiet node
    rest = [asyncio.ensure_future(batched.get(k)) for k in (2, 3, 2, 14)]
    await landed(reads, 1)
    assert await first == [1, 10]
    await landed(reads, 2)
    assert reads.flights == [[1], [2, 3, 14]]  # one key once, however many asked
    assert [await r for r in rest] == [[2, 20], [3, 30], [2, 20], []]  # not found: the empty value


async def test_callers_of_one_key_get_their_own_copies() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list)
    blocker = asyncio.ensure_future(batched.get(5))
    await flown(reads, 1)
    a, b = asyncio.ensure_future(batched.get(4)), asyncio.ensure_future(batched.get(4))
    await landed(reads, 1)
    await landed(reads, 2)
    await blocker
    one, two = await a, await b
    one.append(99)
    assert two == [4, 40]


async def test_a_failed_flight_fails_its_callers_and_the_next_flight_still_goes() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list)
    reads.fail = ConnectionError("database gone")
    doomed = [asyncio.ensure_future(batched.get(k)) for k in (1, 2)]
    await flown(reads, 1)
    later = asyncio.ensure_future(batched.get(3))
    await landed(reads, 1)
    for d in doomed[:1]:
        with pytest.raises(ConnectionError):
            await d
    reads.fail = None
    await landed(reads, 2)
    assert reads.flights == [[1], [2, 3]]
    assert await doomed[1] == [2, 20] and await later == [3, 30]


async def test_a_caller_that_gave_up_is_skipped_and_not_read_for() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list)
    blocker = asyncio.ensure_future(batched.get(1))
    await flown(reads, 1)
    gone = asyncio.ensure_future(batched.get(2))
    kept = asyncio.ensure_future(batched.get(3))
    await asyncio.sleep(0)  # one turn of the loop: both tasks, scheduled first, have asked
    assert batched.waiting == 2
    gone.cancel()
    await landed(reads, 1)
    await blocker
    await landed(reads, 2)
    assert reads.flights[1] == [3]  # the abandoned key is not read
    assert await kept == [3, 30]
    assert gone.cancelled()


async def test_a_batch_holds_at_most_max_batch_keys() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list, max_batch=2)
    calls = [asyncio.ensure_future(batched.get(k)) for k in range(1, 6)]
    for n in (1, 2, 3):
        await landed(reads, n)
    assert reads.flights == [[1], [2, 3], [4, 5]]
    assert [await c for c in calls] == [[k, k * 10] for k in range(1, 6)]


async def test_many_keys_of_one_caller_fly_together_and_come_back_in_order() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list)
    many = asyncio.ensure_future(batched.get_many([3, 1, 7, 3]))
    await landed(reads, 1)
    assert reads.flights == [[3, 1, 7]]  # one flight, each key once
    assert await many == [[3, 30], [1, 10], [], [3, 30]]
    assert await batched.get_many([]) == []
    assert reads.flights == [[3, 1, 7]]  # nothing asked: nothing read


async def test_many_keys_past_max_batch_take_the_next_flights_too() -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list, max_batch=2)
    many = asyncio.ensure_future(batched.get_many([1, 2, 3, 4, 5]))
    for n in (1, 2, 3):
        await landed(reads, n)
    assert reads.flights == [[1, 2], [3, 4], [5]]
    assert await many == [[k, k * 10] for k in range(1, 6)]


async def test_a_failure_of_many_keys_raises_once_and_leaves_the_rest_unread(
        caplog: pytest.LogCaptureFixture) -> None:
    reads = Reads()
    batched: Coalesced[int, list[int]] = Coalesced(reads.run, list, max_batch=2)
    reads.fail = ConnectionError("database gone")
    many = asyncio.ensure_future(batched.get_many([1, 2, 3]))
    await landed(reads, 1)
    with pytest.raises(ConnectionError):
        await many
    reads.fail = None
    later = asyncio.ensure_future(batched.get(4))
    await landed(reads, 2)
    assert await later == [4, 40]
    assert reads.flights == [[1, 2], [4]]  # key 3, given up with its caller, is never read
    del many
    gc.collect()
    assert "exception was never retrieved" not in caplog.text  # the second failure is seen too
