"""Reads of concurrent callers run together: one statement for many.

The group commit (`server.store.writer`) stores concurrent sends in one transaction;
this does the same for reads that many connections make at once — the hellos of a
reconnect storm each read their shop's tickets and their missed messages. A read
asked for while none is in flight starts at once (a quiet node adds no delay); the
ones asked for while a flight is out wait for it to land and then go together, up
to `max_batch` a statement. A flight's failure fails every caller in it (each
caller's own error handling applies); a caller that gave up (cancelled: a hello
abandoned on its deadline) is skipped when the answer comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Run = Callable[[list[K]], Awaitable[Mapping[K, V]]]


class Coalesced(Generic[K, V]):
    """`await get(key)`: the value of `key`, read with every key asked for meanwhile.

    `run(keys)` reads distinct keys at once and returns what it found; a key it
    leaves out gets `missing()`."""

    __slots__ = ("_flights", "_flying", "_max_batch", "_missing", "_run", "_tasks", "_waiting")

    def __init__(self, run: Run[K, V], missing: Callable[[], V], *, max_batch: int = 500,
                 flights: int = 1) -> None:
        self._run = run
        self._missing = missing
        self._max_batch = max_batch
        self._flights = flights
        self._flying = 0
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Keys asked for that wait for the next flight."""
        return len(self._waiting)

    async def get(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._flying < self._flights:
            self._launch()
        return await future

    async def get_many(self, keys: Iterable[K]) -> list[V]:
        """`get` of several keys, in one flight where they fit (no task per key)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[V]] = []
        for key in keys:
            future: asyncio.Future[V] = loop.create_future()
            self._waiting.setdefault(key, []).append(future)
            futures.append(future)
        if futures and self._flying < self._flights:
            self._launch()
        try:
            return [await future for future in futures]
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # given up (failed or cancelled): a later flight skips it
                elif not future.cancelled():
                    future.exception()  # seen: the first failure is the one raised

    def _launch(self) -> None:
        keys = list(self._waiting)[:self._max_batch]
        futures = {k: self._waiting.pop(k) for k in keys}
        self._flying += 1
        task = asyncio.get_running_loop().create_task(self._fly(futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fly(self, futures: dict[K, list[asyncio.Future[V]]]) -> None:
        try:
            wanted = [k for k, fs in futures.items() if not all(f.done() for f in fs)]
            found = await self._run(wanted) if wanted else {}
        except BaseException as exc:
            for fs in futures.values():
                for f in fs:
                    if not f.done():
                        f.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
        else:
            for key, fs in futures.items():
                for f in fs:
                    if not f.done():
                        # Each caller gets its own copy of a list it may change.
                        value = found.get(key)
                        f.set_result(self._missing() if value is None else _own(value))
        finally:
            self._flying -= 1
            if self._waiting and self._flying < self._flights:
                self._launch()


def _own(value: V) -> V:
    return list(value) if isinstance(value, list) else value  # type: ignore[return-value]
