"""Carrying out a client's request: the table of use cases, and what a failure costs.

Every request type but `hello` (which the edge authenticates first, see `server.ws`)
maps to one use case. A `PomocError` becomes the protocol's `error` frame; a
dependency that fails becomes `unavailable` (retry) — never a closed connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from server import threads
from server.chat import search
from server.chat.adapters import Adapters
from server.chat.connection import Connection
from server.errors import PomocError, Unavailable
from server.protocol import frames
from server.protocol.session import Incoming
from server.store.db import DATABASE_DOWN, describe

log = logging.getLogger(__name__)

Handler = Callable[[Adapters, Connection, Any, object], Awaitable[None]]

HANDLERS: Mapping[type, Handler] = {
    frames.OpenTicket: threads.open_ticket,
    frames.Send: threads.send,
    frames.Read: threads.read,
    frames.Typing: threads.typing,
    frames.History: threads.history,
    frames.ListTickets: threads.list_tickets,
    frames.Follow: threads.follow,
    frames.Unfollow: threads.unfollow,
    frames.UpdateTicket: threads.update_ticket,
    frames.Presence: threads.presence,
    frames.Ping: threads.ping,
    frames.Search: search.search,
    frames.Rate: threads.rate,
}


async def carry_out(a: Adapters, conn: Connection, incoming: Incoming) -> None:
    ref = incoming.ref
    try:
        await HANDLERS[type(incoming.request)](a, conn, incoming.request, ref)
    except PomocError as err:
        conn.failed(err, ref)
    except DATABASE_DOWN as exc:
        log.warning("ws.dependency_failed", extra={"conn_id": conn.session.conn_id, "error": describe(exc)})
        conn.failed(Unavailable("the database is unavailable; retry"), ref)
