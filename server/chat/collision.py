"""Collision: which agents have a ticket open, told to the other agents following it.

A console connection (an agent with the inbox feed; bots do not count) that
follows a ticket becomes one of its viewers (`server.realtime.viewers`); it stops
being one with `unfollow`, when its connection closes, or — its node gone — when
its entry expires unrefreshed by the heartbeat. Whenever the set of agents changes,
`viewers {ticket, agents}` goes to every agent following the ticket, on every node
(the inbox channel; customers never listen there and the delivery predicate takes
agents only); the viewer who joined gets the current set in answer. Without Redis
this is silent: the chat works, nobody is shown as viewing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis.exceptions import RedisError

from server.chat.announce import Announcer
from server.clock import Clock
from server.protocol import views
from server.protocol.events import Event
from server.protocol.session import Session
from server.realtime.viewers import Seen, Viewer, Viewers

log = logging.getLogger(__name__)
_REDIS_DOWN = (RedisError, OSError, TimeoutError)


def _pairs(viewers: Iterable[Viewer]) -> list[tuple[str, str]]:
    return [(v.id, v.name) for v in viewers]


class Collision:
    def __init__(self, viewers: Viewers, announce: Announcer, wall: Clock) -> None:
        self.viewers = viewers
        self.announce = announce
        self.wall = wall

    async def opened(self, session: Session, ticket_id: int) -> None:
        """The session follows the ticket: a console's agent is now among its viewers."""
        principal = session.principal
        follow = session.follows.get(ticket_id)
        if principal is None or follow is None or not session.counts_as_presence:
            return
        follow.viewing = True
        try:
            seen = await self.viewers.join(ticket_id, session.conn_id, principal.id, principal.name, self.wall.now())
        except _REDIS_DOWN as exc:
            log.warning("viewers.unavailable", extra={"conn_id": session.conn_id, "error": str(exc) or repr(exc)})
            return
        session.reply(views.viewers(ticket_id, _pairs(seen.viewers)))
        await self._changed(ticket_id, seen, origin=session.conn_id)

    async def closed(self, session: Session, ticket_ids: Iterable[int]) -> None:
        """The session no longer shows these tickets (unfollowed, or the connection ended)."""
        for ticket_id in ticket_ids:
            try:
                seen = await self.viewers.leave(ticket_id, session.conn_id, self.wall.now())
            except _REDIS_DOWN as exc:
                # The entry expires after one TTL without refresh: the others learn then.
                log.warning("viewers.unavailable", extra={"conn_id": session.conn_id, "error": str(exc) or repr(exc)})
                return
            await self._changed(ticket_id, seen)

    async def beat(self, sessions: Iterable[Session]) -> None:
        """The heartbeat: this node's viewers refreshed, everyone's expired ones settled."""
        now = self.wall.now()
        await self.viewers.heartbeat(((t, s.conn_id) for s in sessions for t in s.viewing()), now)
        for ticket_id, left in (await self.viewers.sweep(now)).items():
            await self._changed(ticket_id, Seen(left, True))

    async def _changed(self, ticket_id: int, seen: Seen, origin: str | None = None) -> None:
        if seen.changed:
            await self.announce.viewers(Event("viewers", views.viewers(ticket_id, _pairs(seen.viewers)), origin))
