"""The shared Redis health: down on the first failure, skipped meanwhile, up on a probe's answer."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from server.realtime.health import RedisDown, RedisHealth


class Probe:
    """Redis's TIME as the test hands it out: each probe waits for the next answer."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[tuple[int, int] | Exception] = asyncio.Queue()
        self.answered = asyncio.Event()

    async def __call__(self) -> tuple[int, int]:
        answer = await self.answers.get()
        if isinstance(answer, Exception):
            raise answer
        self.answered.set()  # the health reads the answer before the test runs again
        return answer


async def test_down_until_a_probe_answers_then_the_listeners_run() -> None:
    probe = Probe()
    health = RedisHealth(1.0, probe_every=0, wall=lambda: 1000.0)
    came_up = asyncio.Event()
    seen: list[bool] = []

    async def listener() -> None:
        seen.append(health.up)
        came_up.set()

    health.on_up(listener)
    task = asyncio.ensure_future(health.run(probe))
    try:
        # The first probe (at start) measures Redis's clock: half a second ahead.
        await probe.answers.put((1000, 500_000))
        await asyncio.wait_for(probe.answered.wait(), 5)
        assert health.up and health.deadline_ms() == 1000 * 1000 + 500 + 800

        health.down(TimeoutError())
        with pytest.raises(RedisDown):
            health.check()
        await probe.answers.put(ConnectionRefusedError())  # still down
        await probe.answers.put((1001, 0))
        await asyncio.wait_for(came_up.wait(), 5)
        assert seen == [True] and health.downs == 1
        health.check()  # up: calls go to Redis again
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_late_script_marks_redis_down() -> None:
    health = RedisHealth(0.5)
    err = health.late()
    assert isinstance(err, RedisDown) and not health.up
    health.down("again")  # already down: counted once
    assert health.downs == 1
