"""Stopping the process's background tasks: bounded even when a task swallows its cancel."""

from __future__ import annotations

import asyncio
import time

from server.chat.runtime import Background


async def test_a_task_that_swallows_its_first_cancel_is_cancelled_again() -> None:
    background = Background()
    swallowed = asyncio.Event()

    async def stubborn_once() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # As a library may do: the cancel comes out as its own timeout, handled as a failure.
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            swallowed.set()
        await asyncio.sleep(3600)

    background.start("stubborn", stubborn_once())
    await asyncio.sleep(0)
    started = time.monotonic()
    await background.stop(rounds=5, wait=0.2)
    assert swallowed.is_set() and background.tasks == set()
    assert time.monotonic() - started < 2


async def test_a_task_that_never_stops_is_given_up_on_not_waited_for_for_ever(caplog) -> None:
    background = Background()
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()

    background.start("immortal", immortal())
    task = next(iter(background.tasks))
    await asyncio.sleep(0)
    started = time.monotonic()
    await background.stop(rounds=3, wait=0.1)
    assert time.monotonic() - started < 2
    assert any(r.msg == "task.not_stopping" and r.tasks == ["immortal"] for r in caplog.records)
    release.set()  # the test's own loop must be able to end
    await asyncio.wait_for(task, 5)


async def test_stopping_with_no_tasks_or_only_finished_ones_returns_at_once() -> None:
    await Background().stop()
    background = Background()

    async def quick() -> None:
        return None

    background.start("quick", quick())
    await asyncio.sleep(0.01)
    await background.stop()
    assert background.tasks == set()
