"""A small protocol client for tests: a real WebSocket, frames buffered, waits with timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


class Client:
    def __init__(self, ws: ClientConnection, binary: bool = False) -> None:
        self.ws = ws
        self.binary = binary
        self.frames: list[Frame] = []
        self._cursor = 0
        self._arrived = asyncio.Event()
        self.closed: int | None = None
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, *, msgpack_codec: bool = False, origin: str | None = None,
                      subprotocols: list[str] | None = None) -> Client:
        protocols = subprotocols if subprotocols is not None else (
            ["pomoc.v1.msgpack"] if msgpack_codec else ["pomoc.v1.json"])
        headers = {"Origin": origin} if origin else None
        ws = await connect(url, subprotocols=protocols or None, additional_headers=headers,  # type: ignore[arg-type]
                           max_size=None, open_timeout=10, close_timeout=2)
        return cls(ws, binary=msgpack_codec)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else json.loads(raw)
                self.frames.append(frame)
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            # The code the server sent (1006 when the connection just dropped).
            self.closed = self.ws.close_code if self.ws.close_code is not None else 1006
            self._arrived.set()

    async def send(self, frame: Frame | bytes | str) -> None:
        if isinstance(frame, dict):
            await self.ws.send(msgpack.packb(frame) if self.binary else json.dumps(frame))
        else:
            await self.ws.send(frame)

    async def expect(self, kind: str, where: Callable[[Frame], bool] | None = None, timeout: float = 10.0,
                     **fields: Any) -> Frame:
        """The next not-yet-consumed frame of `kind` matching `fields` and `where`."""
        def matches(f: Frame) -> bool:
            return (f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())
                    and (where is None or where(f)))

        async def wait() -> Frame:
            while True:
                for i in range(self._cursor, len(self.frames)):
                    if matches(self.frames[i]):
                        frame = self.frames.pop(i)
                        return frame
                if self.closed is not None:
                    raise AssertionError(f"connection closed ({self.close_code}) while waiting for {kind} {fields}")
                self._arrived.clear()
                await self._arrived.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            seen = [f.get("type") for f in self.frames][-20:]
            raise AssertionError(f"no {kind} {fields} within {timeout} s; unconsumed: {seen}") from None

    async def request(self, frame: Frame, reply: str, timeout: float = 10.0) -> Frame:
        ref = f"r{id(frame)}-{len(self.frames)}"
        await self.send({**frame, "ref": ref})

        def answered(f: Frame) -> bool:
            return f.get("ref") == ref and f.get("type") in (reply, "error")

        async def wait() -> Frame:
            while True:
                for i, f in enumerate(self.frames):
                    if answered(f):
                        return self.frames.pop(i)
                if self.closed is not None:
                    raise AssertionError(f"connection closed ({self.close_code}) while waiting for {reply}")
                self._arrived.clear()
                await self._arrived.wait()

        try:
            got = await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no reply {reply} to {frame.get('type')} within {timeout} s") from None
        return got

    async def hello(self, token: str, **extra: Any) -> Frame:
        welcome = await self.request({"type": "hello", "token": token, **extra}, "welcome")
        assert welcome["type"] == "welcome", welcome
        return welcome

    def drop(self, kind: str | None = None) -> None:
        """Forget buffered frames (of one kind)."""
        self.frames = [f for f in self.frames if kind is not None and f.get("type") != kind]

    def pending(self, kind: str) -> list[Frame]:
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        async def wait() -> None:
            while self.closed is None:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.close_code

    @property
    def close_code(self) -> int | None:
        return self.closed

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def join(node: Any, opened: list[Client], token: str, **hello: Any) -> tuple[Client, Frame]:
    """Connect to a server process, say hello, and remember the client for teardown."""
    client = await Client.connect(node.url)
    opened.append(client)
    return client, await client.hello(token, **hello)
