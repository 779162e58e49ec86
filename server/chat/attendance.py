"""Who is here: admitting connections, agents' and customers' presence, the heartbeat.

A hello is admitted against its user's connection limit (and cool-down after
abuse) before it costs database work; a customer's arrival also records whether
its shop just came online. Agents' presence (online/away/offline, aggregated over
their connections) and the count of agents online are kept in Redis
(`server.presence`) and every change is announced. The heartbeat refreshes this
node's connections, settles expired ones cluster-wide and notices a Redis that lost
its data (each node keeps a marker key; when it vanishes the readers connected here
are rebuilt from the database). Without Redis everything here fails open: the chat
works, presence is silent.

Liveness is measured on the real time (the `wall` clock), never on the support
rules' clock: nodes started at different moments with the same `POMOC_CLOCK` would
otherwise disagree by seconds about whether each other's connections have expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.chat.announce import Announcer
from server.chat.readers import Readers
from server.clock import Clock
from server.presence import Arrival, Arrivals, Beat, Changes, Presence
from server.principal import Principal
from server.protocol import views
from server.protocol.session import Session
from server.realtime.admission import Connections
from server.realtime.keys import Keys
from server.settings import Settings

if TYPE_CHECKING:
    from server.chat.collision import Collision
    from server.chat.connection import Roster

log = logging.getLogger(__name__)
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
ABUSE_COOLDOWN = timedelta(seconds=10)
SEEN_FOR = timedelta(hours=1)  # a customer's row is refreshed at most this often


def agent_fingerprint(principal: Principal) -> str:
    """What the agent's record says of it (a change writes the record at once)."""
    raw = "\x1f".join((principal.name, *principal.departments))
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:16]


def _why(exc: BaseException) -> str:
    return str(exc) or repr(exc)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Attendance:
    def __init__(self, *, redis: Redis, keys: Keys, node_id: str, settings: Settings, wall: Clock,
                 presence: Presence, arrivals: Arrivals, connections: Connections, announce: Announcer,
                 readers: Readers, roster: Roster, user_connections: int, collision: Collision | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.settings = settings
        self.wall = wall
        self.presence = presence
        self.arrivals = arrivals
        self.connections = connections
        self.announce = announce
        self.readers = readers
        self.roster = roster
        self.user_connections = user_connections
        self.collision = collision
        self._agents_online = 0
        self._marked = False  # this node's marker key has been set once

    # ------------------------------------------------------------- admission
    @property
    def agents_online(self) -> int:
        return self._agents_online

    async def refresh_agents_online(self) -> int:
        try:
            self._agents_online = await self.presence.agents_online()
        except _REDIS_DOWN:
            pass
        return self._agents_online

    async def admit(self, principal: Principal, conn_id: str) -> Arrival:
        """Count an agent's connection against its user's limit (0.0, or the seconds
        to wait), and whether its record needs writing (`first_seen`), in one round
        trip; fails open without Redis (then the record is written, to be safe)."""
        try:
            admitted = await self.connections.open(principal.key, conn_id, self.wall.now(), self.user_connections,
                                                   fingerprint=agent_fingerprint(principal), seen_for=SEEN_FOR)
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": _why(exc)})
            return Arrival(0.0, first_seen=True, shop_online=False)
        self._agents_online = admitted.agents_online
        return Arrival(admitted.wait, first_seen=admitted.stale_record, shop_online=False)

    async def arrive(self, principal: Principal, conn_id: str) -> Arrival:
        """A customer's hello: admitted (or how long to wait), whether its record needs
        a refresh, and the shop's presence, in one round trip (fails open without Redis)."""
        shop = principal.shop or ""
        try:
            arrival = await self.arrivals.arrive(principal.key, shop, conn_id, self.wall.now(),
                                                 self.user_connections, self.announce.customer_presence(shop, True))
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": _why(exc)})
            return Arrival(0.0, first_seen=True, shop_online=False)
        if arrival.agents_online is not None:
            self._agents_online = arrival.agents_online
        if arrival.shop_online:
            # The shop's first live connection: agents learn the customer is here.
            self.announce.customer_presence_here(shop, True)
        return arrival

    async def release(self, principal: Principal, conn_id: str, *, unseen: bool = False) -> None:
        """Undo an admission (the hello did not complete; `unseen`: nor did the write
        of the agent's record, so the next hello writes it)."""
        try:
            await self.connections.close(principal.key, conn_id)
            if unseen:
                await self.connections.forget_seen(principal.key)
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": _why(exc)})

    async def penalize(self, principal: Principal) -> None:
        try:
            await self.connections.penalize(principal.key, ABUSE_COOLDOWN)
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": _why(exc)})

    # -------------------------------------------------------------- presence
    async def connected(self, session: Session) -> None:
        principal = session.principal
        if principal is None or not session.counts_as_presence:
            return
        try:
            await self._changed(await self.presence.set_agent(principal.id, session.conn_id, "online",
                                                              self.wall.now()))
        except _REDIS_DOWN as exc:
            log.warning("presence.unavailable", extra={"error": _why(exc)})

    async def disconnected(self, session: Session) -> None:
        principal = session.principal
        if principal is None:
            return
        now = self.wall.now()
        try:
            if not principal.is_agent:
                shop = principal.shop or ""
                if await self.arrivals.leave(principal.key, shop, session.conn_id, now,
                                             self.announce.customer_presence(shop, False)):
                    self.announce.customer_presence_here(shop, False)
                return
            if session.admitted:
                await self.connections.close(principal.key, session.conn_id)
            if session.counts_as_presence:
                await self._changed(await self.presence.drop_agent(principal.id, session.conn_id, now))
        except _REDIS_DOWN as exc:
            log.warning("presence.unavailable", extra={"error": _why(exc)})

    async def set_status(self, principal: Principal, conn_id: str, status: str) -> None:
        try:
            changes = await self.presence.set_agent(principal.id, conn_id, status, self.wall.now(),
                                                    every_connection=True)
        except _REDIS_DOWN as exc:
            # Best effort, like every presence change without Redis: the connection
            # keeps its status and the next heartbeat carries it once Redis answers.
            log.warning("presence.unavailable", extra={"error": _why(exc)})
            return
        await self._changed(changes)

    async def _changed(self, changes: Changes) -> None:
        for agent, status in changes.statuses.items():
            await self.announce.presence_changed(views.agent_presence(agent, status))
        self._agents_online = changes.agents_online
        if changes.count_changed:  # Redis says this node is the first to see the new count
            await self.announce.presence_changed(views.agents_online(changes.agents_online))

    # ------------------------------------------------------------- heartbeat
    async def run_heartbeat(self) -> None:
        """Refresh this node's connections, settle expired ones cluster-wide, and
        notice a Redis that lost its data."""
        interval = self.settings.heartbeat_interval.total_seconds()
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.beat()
            except _REDIS_DOWN as exc:
                log.warning("presence.heartbeat_failed", extra={"error": _why(exc)})
            except Exception:
                log.exception("presence.heartbeat_crashed")
            if _cancelling():
                # A cancel that arrived inside a Redis call may come out of the client
                # as its timeout: stop anyway.
                raise asyncio.CancelledError
            # Every `interval` from start to start: a slow beat does not stretch the period
            # (a connection expires after the TTL without a refresh).
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def beat(self) -> None:
        now = self.wall.now()
        # Each node has its own marker: every node must notice the loss for its readers.
        marker = self.keys.alive(self.node_id)
        lifetime = int(self.settings.presence_ttl.total_seconds() * 10) + 60  # dead nodes' markers go away
        fresh = await self.redis.set(marker, "1", nx=True, ex=lifetime)
        if not fresh:
            await self.redis.expire(marker, lifetime)
        sessions = self.roster.sessions()
        beats = []
        for session in sessions:
            principal = session.principal
            if principal is None:
                continue
            if session.counts_as_presence:
                beats.append(Beat("agent", principal.id, session.conn_id, session.presence_status))
            elif not principal.is_agent:
                beats.append(Beat("customer", principal.shop or "", session.conn_id))
        await self.presence.heartbeat(beats, now)
        await self.connections.refresh(((s.principal.key, s.conn_id) for s in sessions
                                        if s.principal is not None and s.admitted), now)
        await self._changed(await self.presence.sweep(now))
        if self.collision is not None:  # who has which ticket open: refreshed and settled the same way
            await self.collision.beat(sessions)
        first, self._marked = not self._marked, True
        if fresh and not first:
            # The marker was there and is gone: Redis restarted empty or was flushed.
            log.warning("redis.data_lost", extra={"node_id": self.node_id})
            await self.readers.rebuild_all(s.principal for s in sessions if s.principal is not None)
