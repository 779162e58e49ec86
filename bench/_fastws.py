"""A small WebSocket client for many connections from one process (storm, idle).

The `websockets` client in `_common.Client` costs ~0.75 ms of this process's CPU
per connect + hello (handshake objects, a reader task, asyncio streams); for 10,000
reconnects that is seconds of CPU taken from the two cores the server under test
runs on. This one is a bare `asyncio.Protocol`: the HTTP upgrade written by hand,
RFC 6455 frames parsed in `data_received`, no task per connection. It speaks only
what the tools need: text frames out (masked, as a client must), text/binary
frames in, ping -> pong, close. No compression, no extensions.

Source addresses: `connect(..., source="127.0.0.7")` binds the socket to that
loopback address before connecting, with IP_BIND_ADDRESS_NO_PORT so that the port
is chosen at connect time per destination (bind(port 0) alone would reserve a
port against every destination). The whole 127/8 is local on Linux, so spreading
connections over several 127.0.0.x multiplies the ephemeral ports available
towards one server port (~28,000 per source with the default port range).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson

try:  # the C helper that the websockets package ships
    from websockets.speedups import apply_mask as _apply_mask  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    def _apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")

SUBPROTOCOL = "pomoc.v1.json"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Closed(Exception):
    pass


def sources(k: int) -> list[str]:
    """k loopback source addresses 127.0.0.2 … (never 127.0.0.1, the servers' own)."""
    return [f"127.0.{(i + 2) // 256}.{(i + 2) % 256}" for i in range(max(1, k))]


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + (_apply_mask(payload, mask) if n else b"")


class _Proto(asyncio.Protocol):
    __slots__ = ("owner", "transport", "buf", "upgraded", "frag")

    def __init__(self, owner: FastClient) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.frag: bytearray | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[:end + 4]
            status = head.split(b"\r\n", 1)[0]
            if not status.startswith(b"HTTP/1.1 101"):
                self.owner._fail(Closed(f"upgrade refused: {status.decode(errors='replace')}"))
                if self.transport is not None:
                    self.transport.close()
                return
            self.upgraded = True
            self.owner._upgraded()
        owner = self.owner
        t = time.perf_counter()
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = int.from_bytes(buf[2:4], "big")
                hl = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = int.from_bytes(buf[2:10], "big")
                hl = 10
            mask = None
            if b1 & 0x80:  # servers do not mask; tolerate it anyway
                if len(buf) < hl + 4:
                    return
                mask = bytes(buf[hl:hl + 4])
                hl += 4
            if len(buf) < hl + n:
                return
            payload = bytes(buf[hl:hl + n])
            del buf[:hl + n]
            if mask is not None:
                payload = _apply_mask(payload, mask)
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in (1, 2, 0):
                if not fin:
                    self.frag = (self.frag or bytearray()) + payload
                    continue
                if self.frag is not None:
                    payload = bytes(self.frag + payload)
                    self.frag = None
                owner._message(payload, t)
            elif opcode == 9:  # ping
                self.write(_frame(10, payload))
            elif opcode == 8:  # close
                owner.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not owner._closing:
                    owner._closing = True
                    self.write(_frame(8, payload[:2]))
                if self.transport is not None:
                    self.transport.close()
                return

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.owner._lost()


class FastClient:
    """One connection speaking pomoc.v1.json, the same surface as `_common.Client`
    (connect/request/send/close, `closed` event, `welcome_at`, `on_frame`)."""

    __slots__ = ("url", "host", "port", "path", "on_frame", "on_close", "proto", "closed", "close_code",
                 "welcome", "welcome_at", "_waiting", "_refs", "_open", "_closing")

    def __init__(self, url: str, on_frame: Callable[[dict[str, Any], float], None] | None = None,
                 on_close: Callable[[FastClient], None] | None = None) -> None:
        rest = url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        self.url, self.host, self.port, self.path = url, host, int(port), "/" + path
        self.on_frame = on_frame
        self.on_close = on_close
        self.proto: _Proto | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.welcome: dict[str, Any] | None = None
        self.welcome_at: float | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = 0
        self._open: asyncio.Future[None] | None = None
        self._closing = False

    async def connect(self, token: str, *, resume: dict[int, int] | None = None, feed: bool | None = None,
                      timeout: float = 30.0,  # noqa: ASYNC109
                      source: str | None = None,
                      on_connected: Callable[[], None] | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if source:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), timeout)
        except BaseException:
            sock.close()
            raise
        self._open = loop.create_future()
        self.proto = _Proto(self)
        await loop.create_connection(lambda: self.proto, sock=sock)  # type: ignore[arg-type, return-value]
        key = base64.b64encode(os.urandom(16)).decode()
        self.proto.write((f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n").encode())
        try:
            await asyncio.wait_for(self._open, max(0.001, deadline - loop.time()))
        except BaseException:
            self.abort()
            raise
        if on_connected is not None:
            on_connected()
        hello: dict[str, Any] = {"type": "hello", "token": token, "ref": "hello"}
        if resume:
            hello["resume"] = {str(k): v for k, v in resume.items()}
        if feed is not None:
            hello["feed"] = feed
        fut = self._expect("hello")
        self.send_nowait(hello)
        try:
            self.welcome = await asyncio.wait_for(fut, max(0.001, deadline - loop.time()))
        except BaseException:
            self.abort()
            raise
        return self.welcome

    # ---- protocol callbacks
    def _upgraded(self) -> None:
        if self._open is not None and not self._open.done():
            self._open.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self._open is not None and not self._open.done():
            self._open.set_exception(exc)

    def _message(self, raw: bytes, t: float) -> None:
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "welcome" and self.welcome_at is None:
            self.welcome_at = t
        elif kind == "ping":
            self.send_nowait({"type": "pong", "ref": frame.get("ref")})
            return
        if self.on_frame is not None:
            self.on_frame(frame, t)
        ref = frame.get("ref")
        if ref is not None:
            fut = self._waiting.pop(str(ref), None)
            if fut is not None and not fut.done():
                if kind == "error":
                    fut.set_exception(RuntimeError(f"error {frame.get('code')}: {frame.get('message')}"))
                else:
                    fut.set_result(frame)

    def _lost(self) -> None:
        self._fail(Closed(f"connection lost before the upgrade ({self.close_code})"))
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(Closed(f"closed ({self.close_code})"))
        self._waiting.clear()
        self.closed.set()
        if self.on_close is not None:
            self.on_close(self)

    # ---- API
    def _expect(self, ref: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = fut
        return fut

    def send_nowait(self, frame: dict[str, Any]) -> None:
        if self.proto is None or self.proto.transport is None:
            raise Closed(f"closed ({self.close_code})")
        self.proto.write(_frame(1, orjson.dumps(frame)))

    async def send(self, frame: dict[str, Any]) -> None:
        self.send_nowait(frame)

    async def request(self, frame: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        self._refs += 1
        ref = f"r{self._refs}"
        fut = self._expect(ref)
        self.send_nowait({**frame, "ref": ref})
        return await asyncio.wait_for(fut, timeout)

    def abort(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.abort()

    async def close(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Close handshake (1000), then wait for the server to close the TCP connection."""
        proto = self.proto
        if proto is None or proto.transport is None:
            return
        if not self._closing:
            self._closing = True
            proto.write(_frame(8, (1000).to_bytes(2, "big")))
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            self.abort()
