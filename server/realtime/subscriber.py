"""The bus's subscriber connection to Redis, without redis-py's layers per message.

Every event a node delivers arrives on this one connection, the ones it published
itself included. redis-py's `PubSub.get_message` costs about 20 µs of Python per
message (a retry wrapper, a read timeout, the parser's asynchronous read, its
handlers' lookup); here the connection is an asyncio protocol whose bytes go to
hiredis's parser as they arrive, and the parsed replies wait in a queue that
`get_message` empties without suspending (≈1.5 µs a message; docs/performance.md).
The bus drives it as it would a redis-py `PubSub` — `ping`, `subscribe`,
`unsubscribe`, `get_message(timeout)`, `aclose` — and gets the same dicts back.

A connection counts as open only once Redis answered a PING on it (after `AUTH`
when the URL names a password), within the connect timeout: a frozen Redis is
not taken for a live one. A lost connection, or bytes that are not RESP, make
`get_message` raise `ConnectionError` (redis-py's), on which the bus reconnects.
Used for `redis://` URLs; TLS and unix sockets keep redis-py's subscriber, and
embedded mode the stand-in's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from server.realtime.resp import Endpoint, keep_alive

Message = dict[str, Any]
_PONG = {"type": "pong", "pattern": None, "channel": None, "data": b""}


def _command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RawSubscriber:
    """Hands out subscriber connections to the Redis at `url` (one per `pubsub()`)."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        self.endpoint = Endpoint.from_url(url)
        self.connect_timeout = connect_timeout

    def pubsub(self) -> RawPubSub:
        return RawPubSub(self)

    async def aclose(self) -> None:
        """Nothing is shared: each `RawPubSub` closes its own connection."""


class _Replies(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.replies: deque[Any] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: str | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        keep_alive(transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                self.replies.append(reply)
        except hiredis.ProtocolError as exc:
            self._lose(f"not RESP from Redis: {exc}")
            assert self.transport is not None
            self.transport.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(f"the subscriber connection closed: {exc!r}" if exc else "the subscriber connection closed")

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, *args: str | bytes) -> None:
        transport = self.transport
        if self.lost is not None or transport is None or transport.is_closing():
            raise RedisConnectionError(self.lost or "the subscriber connection is closed")
        transport.write(_command(*args))

    async def reply(self, wait: float | None) -> Any:
        """The next reply, None after `wait` seconds without one (0: do not wait).
        What arrived before the connection was lost is handed out first."""
        if self.replies:
            return self.replies.popleft()
        if self.lost is not None:
            raise RedisConnectionError(self.lost)
        if wait is not None and wait <= 0:
            return None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait):
                while not self.replies:  # woken by part of a reply, too
                    if self.lost is not None:
                        raise RedisConnectionError(self.lost)
                    self._waiter = loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        except TimeoutError:
            return None
        return self.replies.popleft()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RawPubSub:
    """One subscriber connection, opened by the first call that needs it."""

    def __init__(self, subscriber: RawSubscriber) -> None:
        self._subscriber = subscriber
        self._replies: _Replies | None = None

    async def _open(self) -> _Replies:
        replies = self._replies
        if replies is not None:
            return replies
        s = self._subscriber
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(s.connect_timeout):
            _, replies = await loop.create_connection(_Replies, s.endpoint.host, s.endpoint.port)
            try:
                for command in s.endpoint.opening(select=False):
                    replies.send(*command)
                    _answer(await replies.reply(None))
            except BaseException:
                replies.close()
                raise
        self._replies = replies
        return replies

    async def ping(self) -> None:
        """Sends PING; its answer comes back through `get_message` (as redis-py's)."""
        (await self._open()).send("PING")

    async def subscribe(self, *channels: str) -> None:
        if channels:
            (await self._open()).send("SUBSCRIBE", *channels)

    async def unsubscribe(self, *channels: str) -> None:
        if channels:
            (await self._open()).send("UNSUBSCRIBE", *channels)

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: float | None = 0.0,  # noqa: ASYNC109  (redis-py's PubSub signature)
                          ) -> Message | None:
        replies = await self._open()
        while True:
            reply = await replies.reply(timeout)
            if reply is None:
                return None
            message = _message(reply)
            if message is None or (ignore_subscribe_messages and message["type"] != "message"):
                continue
            return message

    async def aclose(self) -> None:
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.close()


def _answer(reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        raise ResponseError(str(reply))
    return reply


def _message(reply: Any) -> Message | None:
    """A reply as redis-py's PubSub gives it: {"type", "pattern", "channel", "data"}."""
    _answer(reply)
    if isinstance(reply, list) and len(reply) == 3:
        kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return {"type": kind, "pattern": None, "channel": reply[1], "data": reply[2]}
    if reply == b"PONG" or (isinstance(reply, list) and reply and reply[0] == b"pong"):
        return dict(_PONG)
    return None  # nothing the bus asked for
