"""The WebSocket endpoint (`GET /ws`): the edge between a socket and Pomoc.

Before the upgrade it refuses a disallowed Origin (403), a node that is going away
or full (503), and a client address with too many connections that have not said
hello yet (503; the roster's budgets, `server.chat.connection.Roster`). After it,
two short loops around the connection's sans-I/O session
(`server.protocol.session`, glued to the rest by `server.chat.connection`):

- this coroutine reads: each frame is fed to the session; a valid request is carried
  out — a `hello` authenticated here, at the edge (`server.web.tokens`), then
  handed to `server.chat.hello`, an `auth` (a fresh token) checked here too
  (`server.web.reauth`, which also ends the connection with 4401 when its token
  expires), anything else to `server.chat.dispatch`;
- one task writes: whatever the session has to send, then the close frame.

A bug in a handler costs one request (`unavailable`), never the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.chat import dispatch
from server.chat.adapters import Adapters
from server.chat.connection import Connection
from server.chat.hello import hello
from server.errors import CLOSE_FORBIDDEN, CLOSE_HELLO_TIMEOUT, CLOSE_UNAUTHORIZED, Unauthorized, Unavailable
from server.protocol import frames, views
from server.protocol.codec import negotiate
from server.protocol.session import HELLO, OPEN, Incoming
from server.web import reauth
from server.web.stack import FRAMES, HEARD
from server.web.tokens import authenticate

log = logging.getLogger(__name__)


def _never_heard() -> bool:
    return False


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    if origin is None:
        return True  # bots and integrations send no Origin; they still need a token
    return "*" in allowed or origin.rstrip("/") in allowed


async def websocket_endpoint(websocket: WebSocket) -> None:
    a: Adapters = websocket.app.state.adapters
    if not origin_allowed(websocket.headers.get("origin"), a.settings.allowed_origins):
        await _deny(websocket, 403, "forbidden", "this Origin is not allowed")
        return
    if a.roster.draining:
        await _deny(websocket, 503, "unavailable", "the server is restarting; retry")
        return
    codec, subprotocol = negotiate(websocket.scope.get("subprotocols") or [])
    conn = Connection(a, f"{a.node_id}:{uuid.uuid4().hex[:12]}", codec)
    # The peer, or the client a trusted proxy names (uvicorn's forwarded_allow_ips).
    heard = websocket.scope.get(HEARD) or _never_heard  # only the sans-I/O stack tells
    refused = a.roster.admit(conn, websocket.client.host if websocket.client else "", heard)
    if refused is not None:
        await _deny(websocket, 503, "unavailable", refused)
        return
    try:
        await websocket.accept(subprotocol=subprotocol)
    except BaseException:
        a.roster.discard(conn)
        raise
    # This coroutine reads; one task writes. (Two tasks and an asyncio.wait per
    # connection cost over a kilobyte each of thousands of idle connections.)
    writer = asyncio.ensure_future(_write(websocket, conn))
    session = conn.session
    try:
        await _read(websocket, conn, a)
    finally:
        if not writer.done():
            session.close(session.close_code or 1000)
            # The writer sends what is due and the close frame as soon as the socket
            # takes them; a peer that never reads is cut loose after the grace period.
            try:
                await asyncio.wait_for(writer, a.settings.close_grace.total_seconds())
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
        await conn.finish()
        log.info("ws.closed", extra={"conn_id": session.conn_id, "code": session.close_code})


async def _read(websocket: WebSocket, conn: Connection, a: Adapters) -> None:
    """Feed the session from the socket until either side closes."""
    session = conn.session
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    hello_timeout = a.settings.hello_timeout.total_seconds()
    deadline = loop.time() + hello_timeout
    expiry = reauth.Expiry()
    try:
        while session.close_code is None:
            # Waiting here is what a close interrupts (the connection cancels this task
            # then): the loop never waits for a client that may never send again.
            conn.waiting(task)
            try:
                if session.state == HELLO:
                    # asyncio.timeout, not wait_for: no task of its own for every connection's hello.
                    async with asyncio.timeout_at(deadline):
                        message = await websocket.receive()
                else:
                    message = await websocket.receive()
            except TimeoutError:
                conn.waiting(None)  # closing must not cancel this task: the writer sends the close
                session.close(CLOSE_HELLO_TIMEOUT, "no hello in time")
                return
            except asyncio.CancelledError:
                if session.close_code is None:
                    raise  # cancelled from outside (the server is stopping)
                task.uncancel()
                return
            finally:
                conn.waiting(None)
            if message["type"] == "websocket.disconnect":
                session.close(message.get("code") or 1000)
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None:
                continue
            del message  # not kept alive while the connection idles
            incoming = session.receive(data, loop.time())
            del data
            if incoming is None:
                continue
            try:
                if isinstance(incoming.request, frames.Hello):
                    await _hello(a, conn, incoming)
                    # A hello that failed on a dependency may be said again, in time.
                    deadline = loop.time() + hello_timeout
                    expiry.arm(a, session)
                elif isinstance(incoming.request, frames.Auth):
                    reauth.renew(a, conn, incoming, expiry)
                else:
                    await dispatch.carry_out(a, conn, incoming)
            except Exception:
                # A bug must cost one request, not the connection (never 1011).
                log.exception("ws.handler_failed", extra={"conn_id": session.conn_id})
                session.reply(views.error(Unavailable("internal error; retry")))
            del incoming  # nor the last request (a hello holds its token) while idle
    except WebSocketDisconnect as exc:
        session.close(exc.code)
    finally:
        expiry.cancel()


async def _hello(a: Adapters, conn: Connection, incoming: Incoming) -> None:
    request = incoming.request
    assert isinstance(request, frames.Hello)
    started = time.perf_counter()
    try:
        # Tokens come from other systems on real time: POMOC_CLOCK moves only the support rules.
        principal = authenticate(request.token, a.settings.secret, a.wall.now())
    except Unauthorized as err:
        conn.failed(err, incoming.ref)
        conn.session.close(CLOSE_UNAUTHORIZED, err.message[:100])
        a.metrics.hello_seconds.labels("none", "refused").observe(time.perf_counter() - started)
        return
    a.roster.identified(conn)  # no longer counted against the budgets of connections yet to say hello
    if request.lang is not None:
        principal = replace(principal, lang=request.lang)  # the widget's language wins over the token's
    session = conn.session
    try:
        await hello(a, conn, principal, request, incoming.ref)
    finally:
        # ok: welcomed; refused: closed (a limit, a replay that failed); failed: may say hello again.
        outcome = "ok" if session.state == OPEN else "refused" if session.close_code is not None else "failed"
        a.metrics.hello_seconds.labels(principal.role.value, outcome).observe(time.perf_counter() - started)


async def _write(websocket: WebSocket, conn: Connection) -> None:
    session = conn.session
    binary = session.codec.binary
    # The sans-I/O stack takes what is queued in one message and one write to the socket.
    batched = FRAMES in websocket.scope
    try:
        while True:
            batch = await conn.outgoing()
            if batch is None:
                break
            if batched:
                await websocket.send({"type": "websocket.send", FRAMES: batch, "binary": binary})
            else:
                await _send_all(websocket, batch, binary)
            # Not kept alive while waiting: an idle connection would hold its last
            # frames (the welcome, kilobytes) for as long as it stays open.
            del batch
        if websocket.application_state == WebSocketState.CONNECTED and session.close_code is not None:
            code = session.close_code
            if code in (1000, 1001, 1005, 1006, 1012):
                code = code if code in (1000, 1001, 1012) else 1000
            await websocket.close(code=code, reason=session.close_reason[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        session.close(session.close_code or 1006)


async def _send_all(websocket: WebSocket, batch: list[bytes], binary: bool) -> None:
    # A function of its own: its locals (the last frame sent) die with it.
    for data in batch:
        if binary:
            await websocket.send({"type": "websocket.send", "bytes": data})
        else:
            await websocket.send({"type": "websocket.send", "text": data.decode()})


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=CLOSE_FORBIDDEN)
