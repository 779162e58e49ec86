"""A connection's token expiry: the session ends at `exp` unless the client renews it.

Seed 000: access ends when a person's access ends. A token says until when its
holder may act; an open WebSocket is no exception. `Expiry` ends its connection
with 4401 at the token's `exp` (judged on real time, like the token itself: the
wall clock, never POMOC_CLOCK). Before that the client may send `auth` with a fresh
token for the same principal (same role, `sub` and shop): `renew` checks it at the
edge, as the hello's token is checked, and the connection lives on until the new
token's expiry. A token for anyone else is refused with `forbidden` and the old
expiry stands; a bad or expired one gets `unauthorized`, and the old expiry stands
too.

What it does not do: revoke a token before its `exp` (there is no revocation list;
keep agent tokens short-lived and let the login renew them).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import replace

from server.chat.adapters import Adapters
from server.chat.connection import Connection
from server.errors import CLOSE_UNAUTHORIZED, Forbidden, Unauthorized
from server.principal import Principal
from server.protocol import frames, views
from server.protocol.session import OPEN, Incoming, Session
from server.web.tokens import authenticate

log = logging.getLogger(__name__)
# The expiry callback reads no context variable: one shared, empty context instead of a
# copy per connection (each idle connection holds its timer until its token expires).
_TIMER_CONTEXT = contextvars.Context()


def _expired(session: Session) -> None:
    if session.close_code is None:
        log.info("ws.token_expired", extra={"conn_id": session.conn_id})
        session.close(CLOSE_UNAUTHORIZED, "token expired")


def same_principal(old: Principal, new: Principal) -> bool:
    """The same person in the same place: role, id and (for customers) shop."""
    return (old.role, old.id, old.shop) == (new.role, new.id, new.shop)


class Expiry:
    """One connection's timer: closes it with 4401 when its principal's token expires."""

    __slots__ = ("_handle",)

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, a: Adapters, session: Session) -> None:
        """(Re)start the timer for the session's principal, if it has said hello."""
        self.cancel()
        principal = session.principal
        if principal is None or session.state != OPEN or not principal.expires:
            return
        delay = max(0.0, principal.expires - a.wall.now().timestamp())
        self._handle = asyncio.get_running_loop().call_later(delay, _expired, session, context=_TIMER_CONTEXT)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def renew(a: Adapters, conn: Connection, incoming: Incoming, expiry: Expiry) -> None:
    """`auth {token}`: a fresh token for this connection's principal."""
    request = incoming.request
    assert isinstance(request, frames.Auth)
    session = conn.session
    current = session.principal
    if current is None:  # the session answers `auth` before hello itself; never here
        return
    wall_now = a.wall.now()
    try:
        principal = authenticate(request.token, a.settings.secret, wall_now)
    except Unauthorized as err:
        conn.failed(Unauthorized(f"{err.message}; the current token still expires at "
                                 f"{views.expiry(current.expires, wall_now)['expires_at']}"), incoming.ref)
        return
    if not same_principal(current, principal):
        conn.failed(Forbidden("auth needs a token for the same principal (role, sub and shop) as the hello's; "
                              "the current token still expires at "
                              f"{views.expiry(current.expires, wall_now)['expires_at']}"), incoming.ref)
        return
    # The new token's claims (name, plan, departments, lead) hold from now on; the
    # connection's language stays the one its hello chose.
    session.principal = replace(principal, lang=current.lang)
    expiry.arm(a, session)
    session.reply(views.authenticated(principal.expires, wall_now), incoming.ref)
    log.info("ws.authenticated", extra={"conn_id": session.conn_id, "role": principal.role.value})
