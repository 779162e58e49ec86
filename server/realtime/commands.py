"""The command client's own connection for its hottest commands, without redis-py's
layers per call.

A node's Lua scripts (arrivals, leavings, the unread books, publishing) and its
`PUBLISH`es are most of its Redis traffic; through redis-py each call checks a
connection out of the pool, packs, sends, waits in the pool's parser and checks the
connection back in, and a pipeline of scripts first asks `SCRIPT EXISTS` — a round
trip of its own. Here they share one connection: a call writes its packed command
and waits for its reply in order (Redis answers a connection's commands in the
order they came), hiredis parses what arrives, a script unknown to Redis
(`NOSCRIPT`, e.g. after a restart) is loaded and its call sent again.

Only commands whose replies redis-py hands out as they are (no response callback)
come here (`DIRECT`); `server.realtime.clients.GuardedRedis` sends everything else,
and keeps the deadline and the health check for both. The connection opens on
first use (AUTH and SELECT as the URL says, then PING, within the connect timeout);
when it is lost, or a call's deadline passed with its reply still due, every call
waiting on it fails with redis-py's `ConnectionError` and the next call opens a new
one. Used for `redis://` URLs; TLS and unix sockets, and embedded mode, keep
redis-py for everything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from server.realtime.resp import Endpoint, keep_alive

# Commands whose replies redis-py returns unchanged (no response callback), by name.
DIRECT = frozenset({"EVALSHA", "PUBLISH"})

Command = Sequence[Any]


def name_of(command: Command) -> str:
    first = command[0] if command else ""
    return (first.decode(errors="replace") if isinstance(first, bytes) else str(first)).upper()


def _error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)


class _Link(asyncio.Protocol):
    """One connection: replies handed to the waiting calls in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        keep_alive(transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                if not self.waiting:
                    self.drop("a reply nobody asked for")
                    return
                future, _ = self.waiting.popleft()
                if not future.done():  # (a call whose deadline passed is cancelled)
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.drop(f"not RESP from Redis: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.drop(f"the command connection closed: {exc!r}" if exc else "the command connection closed")

    def drop(self, why: str) -> None:
        """Lost: every call still waiting fails (redis-py's ConnectionError)."""
        if self.lost is None:
            self.lost = why
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(why))

    def send(self, packed: bytes, count: int) -> list[asyncio.Future[Any]]:
        transport = self.transport
        if self.lost is not None or transport is None or transport.is_closing():
            raise RedisConnectionError(self.lost or "the command connection is closed")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = [loop.create_future() for _ in range(count)]
        self.waiting.extend((future, now) for future in futures)
        transport.write(packed)
        return futures

    def overdue(self, timeout: float) -> bool:
        """Whether a reply has been due for longer than `timeout` (a stuck connection)."""
        return bool(self.waiting) and time.monotonic() - self.waiting[0][1] > timeout


class DirectCommands:
    """The shared connection to the Redis at `url` for `DIRECT` commands and scripts."""

    def __init__(self, url: str, timeout: float) -> None:
        self.endpoint = Endpoint.from_url(url)
        self.timeout = timeout
        self._link: _Link | None = None
        self._opening: asyncio.Future[_Link] | None = None
        # Script sources by sha, to load one Redis does not know (NOSCRIPT).
        self.scripts: dict[str, str | bytes] = {}

    async def call_many(self, commands: Sequence[Command], raise_on_error: bool = True) -> list[Any]:
        """The replies of commands sent together (one write, one round trip), in
        order; error replies raised (the first) or left in place as exceptions."""
        link = await self._open()
        futures = link.send(b"".join(_pack(*c) for c in commands), len(commands))
        replies: list[Any] = [await futures[0]] if len(futures) == 1 else list(await asyncio.gather(*futures))
        unknown = [i for i, r in enumerate(replies) if isinstance(r, hiredis.ReplyError)
                   and str(r).startswith("NOSCRIPT") and name_of(commands[i]) == "EVALSHA"]
        if unknown:
            replies = await self._again(commands, replies, unknown)
        out: list[Any] = [_error(r) if isinstance(r, hiredis.ReplyError) else r for r in replies]
        if raise_on_error:
            for reply in out:
                if isinstance(reply, ResponseError):
                    raise reply
        return out

    async def _again(self, commands: Sequence[Command], replies: list[Any], unknown: list[int]) -> list[Any]:
        """Load the scripts Redis did not know and send their calls again."""
        shas = list(dict.fromkeys(_text(commands[i][1]) for i in unknown))
        known = [sha for sha in shas if sha in self.scripts]
        link = await self._open()
        if known:
            loads = link.send(b"".join(_pack(b"SCRIPT", b"LOAD", _bytes(self.scripts[sha]))
                                       for sha in known),
                              len(known))
            for reply in await asyncio.gather(*loads):
                if isinstance(reply, hiredis.ReplyError):
                    raise _error(reply)
        retry = [i for i in unknown if _text(commands[i][1]) in self.scripts]
        if retry:
            futures = link.send(b"".join(_pack(*commands[i]) for i in retry), len(retry))
            for i, reply in zip(retry, await asyncio.gather(*futures), strict=True):
                replies[i] = reply
        return replies

    def stuck(self) -> None:
        """A call missed its deadline: a connection whose replies are that late is
        given up (its waiting calls fail; the next call opens a new one)."""
        link = self._link
        if link is not None and link.overdue(self.timeout):
            link.drop("no reply within the deadline")

    async def _open(self) -> _Link:
        link = self._link
        if link is not None and link.lost is None:
            return link
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done():
                self._opening = None

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            _, link = await loop.create_connection(_Link, self.endpoint.host, self.endpoint.port)
            try:
                setup = self.endpoint.opening(select=True)
                answers = link.send(b"".join(_pack(*c) for c in setup), len(setup))
                for reply in await asyncio.gather(*answers):
                    if isinstance(reply, hiredis.ReplyError):
                        raise _error(reply)
            except BaseException:
                link.drop("could not set the connection up")
                raise
        self._link = link
        return link

    async def aclose(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.drop("closed")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _pack(*args: Any) -> bytes:
    packed: bytes = hiredis.pack_command(args)
    return packed
