"""A Redis call's deadline that a stall of this process's own loop does not turn into
a miss.

A node's event loop stops now and then for longer than a Redis deadline: a full pass
of the garbage collector over 20,000 connections' objects takes 0.4–1.2 s
(docs/performance.md, "Third pass"). Redis has answered meanwhile, and the answer
is in the socket; but the loop, when it runs again, handles the expired timer in the
same turn as the answer's bytes and would cancel the call that just got its answer,
mark Redis down, and (for the subscriber) reconnect and make every connection catch
up from the database. So a deadline that fires late by more than `STALL` — the loop
itself was stopped, not Redis — waits `grace` once more, and any deadline expires
only at the turn after it fires, after whatever arrived with it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

# A timer this late means the loop was stopped (a healthy loop runs its timers within
# milliseconds, a busy one within tens of them).
STALL = 0.2


class Deadline:
    """`async with Deadline(seconds):` — asyncio.timeout(seconds), patient with stalls."""

    __slots__ = ("_seconds", "_timeout", "_handle", "_due", "_waited")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._timeout = asyncio.timeout(None)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._waited = False

    async def __aenter__(self) -> Deadline:
        await self._timeout.__aenter__()
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self._seconds
        self._handle = loop.call_at(self._due, self._fire)
        return self

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._waited and now - self._due > STALL:
            self._waited = True  # once: a hung Redis during a stall still costs a deadline and a bit
            self._due = now + min(self._seconds, 0.25)
            self._handle = loop.call_at(self._due, self._fire)
            return
        self._timeout.reschedule(now)  # cancels at the next turn, after what arrived with it

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
        await self._timeout.__aexit__(kind, exc, tb)
