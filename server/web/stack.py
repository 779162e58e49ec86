"""The server stack under the app: uvicorn's protocols, bounded, and their configuration.

uvicorn answers a request only once its head is complete, and neither of its HTTP
parsers bounds how long that may take: a socket that sends half a request line and
stalls, or a header line that never ends, holds its file descriptor for as long as
the peer likes (httptools has no size limit at all; h11 answers 400 past its buffer;
a WebSocket upgrade's 431 from `websockets` is written only once the head is
complete). `BoundedHttpToolsProtocol` and `BoundedH11Protocol` put a bound on every
request head before their parser sees it, counted by the sans-I/O `RequestHead`: a
head not complete within `POMOC_HANDSHAKE_TIMEOUT` is answered 408, a request line
over 8 KiB 414, a header line over 8 KiB, more than 100 header lines or a head over
64 KiB 431, each actually written before the socket is closed (after a short
linger that drains what the peer is still sending, so a reset does not destroy the
answer). Bodies are not counted here (the upload endpoints bound them).

`BoundedWebSocketsSansIOProtocol` closes a connection whose text frame is not UTF-8
with 1007 and one log line, where uvicorn logs a traceback for it, and marks in the
scope (`Heard`, under `HEARD`) the moment the client first sends bytes after the
upgrade, before the app has read them: the roster makes room by closing silent
sockets before one whose hello is on its way. It also takes a batch of frames in one
ASGI message (`{"type": "websocket.send", FRAMES: [bytes, ...], "binary": bool}`, offered
under `FRAMES` in the scope): the frames are framed straight from the app's encoded
bytes (no decoding to `str` and back) and leave in one write to the socket, not one
each.

`uvicorn_config` is the one place the server's uvicorn options are set; which HTTP
and WebSocket implementations run is a setting (`POMOC_UVICORN_HTTP`,
`POMOC_UVICORN_WS`), measured in docs/performance.md ("Server stack").
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from server.logs import Tally
from server.settings import Settings

log = logging.getLogger(__name__)
LINGER = 1.0  # seconds an answered socket keeps draining the peer's bytes before it is closed
PING_INTERVAL = 20.0  # WebSocket keepalive pings; a peer that does not answer within PING_TIMEOUT is dropped
PING_TIMEOUT = 20.0
KEEP_ALIVE = 5.0  # seconds an idle HTTP keep-alive connection is kept
CONCURRENCY_HEADROOM = 500  # HTTP requests beyond the connection budgets before uvicorn answers 503


@dataclass(frozen=True)
class HeadLimits:
    timeout: float = 5.0
    line_bytes: int = 8 * 1024
    head_bytes: int = 64 * 1024
    lines: int = 100


class RequestHead:
    """Counts one request head as its bytes arrive; no socket, no clock.

    `feed(data)` returns None while the head is within its limits (`done` turns True
    at the empty line that ends it; later bytes are the body and are not looked at),
    or the status to answer: 414 (request line too long) or 431 (a header line too
    long, too many lines, the head too large). A line that is too long is caught as
    soon as it is, not when it ends. Empty lines before the request line are skipped,
    as RFC 9112 allows, within the head's size."""

    __slots__ = ("limits", "done", "_line", "_cr", "_total", "_lines")

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.done = False
        self._line = 0  # bytes of the current line so far (its CR included)
        self._cr = False  # the last byte seen was a CR
        self._total = 0
        self._lines = 0  # complete lines so far, the request line included

    def feed(self, data: bytes) -> int | None:
        limits = self.limits
        pos, size = 0, len(data)
        while not self.done and pos < size:
            end = data.find(b"\n", pos)
            if end < 0:
                self._line += size - pos
                self._total += size - pos
                self._cr = data[-1] == 0x0D
                break
            length = self._line + end - pos
            if length and (data[end - 1] == 0x0D if end > pos else self._cr):
                length -= 1  # the CR of CRLF
            self._total += end + 1 - pos
            pos = end + 1
            self._line, self._cr = 0, False
            if self._total > limits.head_bytes:
                return 431  # checked per line: a chunk of empty or tiny lines costs no more than one
            if length == 0:
                if self._lines:
                    self.done = True
                continue
            self._lines += 1
            if length > limits.line_bytes:
                return 414 if self._lines == 1 else 431
            if self._lines > limits.lines + 1:  # the request line and `lines` header lines
                return 431
        if self.done:
            return None
        if self._line > limits.line_bytes + self._cr:  # a CR at the end may be the CRLF's
            return 414 if self._lines == 0 else 431
        if self._total > limits.head_bytes:
            return 431
        return None


_ANSWERS = {
    408: (b"408 Request Timeout", b"the request head did not arrive in time\n"),
    414: (b"414 URI Too Long", b"the request line is too long\n"),
    431: (b"431 Request Header Fields Too Large", b"a header line, or the request head, is too large\n"),
}


def answer(status: int) -> bytes:
    reason, body = _ANSWERS[status]
    return (b"HTTP/1.1 " + reason + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class HeadGuard:
    """One connection's bound on its request heads: the timer and the counting.

    `begin()` when a request head may start (the connection is made; the first byte
    after a complete response); `feed(data)` before the parser sees it: False when
    the guard has answered and the parser must not see anything more."""

    __slots__ = ("limits", "refused", "loop", "transport", "head", "_timer", "_closing", "_linger")

    def __init__(self, limits: HeadLimits, refused: Tally, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.refused = refused
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.head: RequestHead | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._linger: asyncio.TimerHandle | None = None

    @property
    def reading(self) -> bool:
        """A head is being read (its bytes go through `feed`)."""
        return self.head is not None or self._closing

    def begin(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head = RequestHead(self.limits)
        self._timer = self.loop.call_later(self.limits.timeout, self._expired)

    def feed(self, data: bytes) -> bool:
        if self._closing:
            return False  # answered: what the peer still sends is drained, unread
        head = self.head
        if head is None:
            return True
        status = head.feed(data)
        if status is not None:
            self._answer(status)
            return False
        if head.done:
            self.head = None
            self._cancel_timer()
        return True

    def stop(self) -> None:
        """The connection is gone."""
        self._cancel_timer()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.head = None

    def eof(self) -> None:
        if self._closing and self.transport is not None:
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.head is not None:
            self._answer(408)

    def _answer(self, status: int) -> None:
        transport = self.transport
        self.head = None
        self._cancel_timer()
        self._closing = True
        if transport is None or transport.is_closing():
            return
        self.refused.add(str(status))
        transport.write(answer(status))
        # Closing with unread bytes in the kernel's buffer would send a reset that can
        # destroy the answer before the peer reads it: half-close, drain, then close.
        if transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()
            self._linger = self.loop.call_later(LINGER, transport.close)
        else:
            transport.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class _BoundedHeads:
    """What both HTTP implementations share: every request head bounded (`HeadGuard`).
    Mixed in before uvicorn's protocol class; `_between_requests` says when the next
    bytes start a new request on a keep-alive connection."""

    limits: ClassVar[HeadLimits] = HeadLimits()
    refused: ClassVar[Tally] = Tally(log, "http.refused")
    guard: HeadGuard
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = HeadGuard(self.limits, self.refused, self.loop)

    def _between_requests(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))  # type: ignore[misc]
        self.guard.begin(self.transport)

    def data_received(self, data: bytes) -> None:
        guard = self.guard
        if not guard.reading and self._between_requests():
            guard.begin(self.transport)  # the next request on a keep-alive connection
        if guard.feed(data):
            super().data_received(data)  # type: ignore[misc]

    def eof_received(self) -> None:
        self.guard.eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.stop()
        super().connection_lost(exc)  # type: ignore[misc]


class BoundedHttpToolsProtocol(_BoundedHeads, HttpToolsProtocol):
    """uvicorn's httptools protocol with every request head bounded."""

    def _between_requests(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and not self.pipeline


class BoundedH11Protocol(_BoundedHeads, H11Protocol):
    """uvicorn's h11 protocol with every request head bounded."""

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete


HEARD = "pomoc.heard"  # the scope key of a connection's `Heard`
FRAMES = "pomoc.frames"  # scope key (the protocol takes batches) and message key (the batch)


class Heard:
    """Whether the client has sent anything since the upgrade; the protocol sets it
    as the bytes arrive, the app only reads it."""

    __slots__ = ("yes",)

    def __init__(self) -> None:
        self.yes = False

    def __call__(self) -> bool:
        return self.yes


class BoundedWebSocketsSansIOProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O `websockets` protocol; a text frame that is not UTF-8 is a
    client's mistake: close 1007 and one log line (uvicorn logs it as an error with a
    traceback). Bytes after the upgrade mark the connection's `Heard`."""

    heard: Heard | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # A mutable marker, so that any copy of the scope the app makes still sees it.
        self.heard = Heard()
        self.scope[HEARD] = self.heard  # type: ignore[literal-required]
        self.scope[FRAMES] = True  # type: ignore[literal-required]

    async def send(self, message: Any) -> None:
        frames = message.get(FRAMES) if message["type"] == "websocket.send" else None
        if frames is None or not self.handshake_complete or self.close_sent or self.initial_response is not None:
            await super().send(message)  # everything else, and every misuse, as uvicorn answers it
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        frame = self.conn.send_binary if message.get("binary") else self.conn.send_text
        try:
            for data in frames:
                frame(data)
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))

    def data_received(self, data: bytes) -> None:
        heard = self.heard
        if heard is not None and not heard.yes and self.handshake_complete:
            heard.yes = True
        super().data_received(data)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text":
            super().send_receive_event_to_app()
            return
        # As uvicorn's own, but the text decoded once and its failure answered quietly.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            log.info("ws.invalid_text", extra={"client": _peer(self.transport), "code": 1007})
            self.conn.send_close(1007, "text frame is not UTF-8")
            self.handle_parser_exception()
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The HTTP protocol class for uvicorn, bounded with the settings' limits."""
    base: type[BoundedHttpToolsProtocol] | type[BoundedH11Protocol] = (
        BoundedH11Protocol if settings.uvicorn_http == "h11" else BoundedHttpToolsProtocol)
    limits = HeadLimits(timeout=settings.handshake_timeout.total_seconds())
    # One line per 10 s while sockets are refused, with the counts by answer (408, 414, 431).
    refused = Tally(log, "http.refused")
    return cast(type[asyncio.Protocol], type(base.__name__, (base,), {"limits": limits, "refused": refused}))


def ws_protocol(settings: Settings) -> str | type[asyncio.Protocol]:
    """The WebSocket protocol for uvicorn: the bounded sans-I/O one, or uvicorn's own by name."""
    if settings.uvicorn_ws == "websockets-sansio":
        return BoundedWebSocketsSansIOProtocol
    if settings.uvicorn_ws == "wsproto":
        importlib.import_module("wsproto")  # fails at startup, not at the first upgrade
    return settings.uvicorn_ws


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """Every uvicorn option the server runs with, in one place."""
    return uvicorn.Config(
        app, host=settings.host, port=settings.port,
        http=http_protocol(settings), ws=ws_protocol(settings),
        log_level="debug" if settings.log_level == "DEBUG" else "warning",
        ws_max_size=settings.max_frame_bytes, ws_ping_interval=PING_INTERVAL, ws_ping_timeout=PING_TIMEOUT,
        # Used only by h11; the guard answers first (431) anyway.
        h11_max_incomplete_event_size=HeadLimits.head_bytes,
        timeout_keep_alive=int(KEEP_ALIVE), timeout_graceful_shutdown=10,
        # A backstop for plain HTTP: the WebSocket budgets (roster) come first.
        limit_concurrency=settings.max_connections + settings.max_pending + CONCURRENCY_HEADROOM,
        lifespan="on", access_log=False, log_config=None,
        proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips, server_header=False,
    )
