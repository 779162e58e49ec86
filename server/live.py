"""Live state of this node's readers and agents: unread counts and presence.

Orchestrates the Redis adapters (`UnreadBook`, `Presence`) with the database and the
bus: counts a new message for every other reader and tells their connections,
answers `read`, builds the unread state a `welcome` shows, heartbeats this node's
connections and announces presence changes. Redis failures here degrade to the
database's numbers (unread) or to silence (presence), never to a failed request:
the message itself is already stored and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from server.auth import Principal
from server.presence import Arrival, Arrivals, Beat, Changes, Connections, Presence
from server.threads import Message
from server.unread import Snapshot, UnreadBook

if TYPE_CHECKING:
    from server.node import Node
    from server.ws import Session

log = logging.getLogger(__name__)
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
ABUSE_COOLDOWN = timedelta(seconds=10)
SEEN_FOR = timedelta(hours=1)  # a customer's row is refreshed at most this often


class LiveState:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.book = UnreadBook(node.redis, node.keys)
        self.presence = Presence(node.redis, node.keys, node.settings.presence_ttl)
        self.connections = Connections(node.redis, node.keys, node.settings.presence_ttl)
        self.arrivals = Arrivals(node.redis, node.keys, node.settings.presence_ttl, SEEN_FOR)
        self._agents_online = 0

    # ---------------------------------------------------------------- unread
    async def snapshot_for(self, principal: Principal, ticket_ids: Iterable[int]) -> dict[int, int]:
        """The reader's unread counts for a welcome, rebuilt from the database into Redis."""
        ids = list(ticket_ids)
        store = self.node.store
        if principal.is_agent:
            # An agent's inbox spans many tickets; its Redis state covers those it read.
            counts = await store.unread(principal, ids)
            try:
                if not await self.book.built(principal.key):
                    tracked = await store.cursor_tickets(principal.key)
                    await self.book.sync(principal.key, await store.unread_state(principal, tracked))
            except _REDIS_DOWN as exc:
                log.warning("unread.redis_unavailable", extra={"error": repr(exc)})
            return counts
        try:
            built, counts = await self.book.read_book(principal.key)
            if built:
                # Kept exact by every message and read since it was built: no database.
                return counts
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": repr(exc)})
        state = await store.unread_state(principal, ids)
        try:
            snapshot = await self.book.sync(principal.key, state, join=True)
            return {t: n for t, n in snapshot.counts.items() if t in state or n}
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": repr(exc)})
            return {t: len(seqs) for t, (_, seqs) in state.items() if seqs}

    async def opened(self, principal: Principal, ticket_id: int, cursor: int) -> None:
        """The opener has seen the first messages of its new ticket."""
        try:
            await self.book.read(principal.key, ticket_id, cursor)
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": repr(exc)})

    async def after_message(self, message: Message, author: str, who: str = "all") -> None:
        """Count a message already published for every other reader (`who`: all,
        customers, agents) and tell their connections."""
        item = ("", b"", message.ticket, message.seq, author, who)
        try:
            grown, rebuild = await self.book.publish_and_count(self.node.node_id, [item])
            if rebuild:
                await self.book.set_readers(await self.node.store.ticket_readers(rebuild))
                grown, _ = await self.book.publish_and_count(self.node.node_id, [item])
        except _REDIS_DOWN as exc:
            log.warning("unread.count_failed", extra={"ticket_id": message.ticket, "error": repr(exc)})
            return
        self.node.dispatch_unread(grown)

    async def after_read(self, principal: Principal, ticket_id: int, *, origin: str | None = None,
                         ref: object = None) -> None:
        """The reader's cursor moved in the database: bring Redis along (the sync raises
        the cursor and trims) and tell all of the reader's connections."""
        reader = principal.key
        try:
            if not await self.book.built(reader):
                await self._rebuild(principal)
            snapshot = await self.book.sync(reader, await self.node.store.unread_state(principal, [ticket_id]),
                                            join=principal.is_agent)
            count = snapshot.counts.get(ticket_id, 0)
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": repr(exc)})
            counts = await self.node.store.unread(principal, await self._reader_tickets(principal))
            count, snapshot = counts.get(ticket_id, 0), Snapshot(counts)
        await self.node.publish_unread(reader, {ticket_id: count}, snapshot.badge, origin=origin, ref=ref)

    async def _reader_tickets(self, principal: Principal) -> list[int]:
        if principal.is_agent:
            return await self.node.store.cursor_tickets(principal.key)
        tickets = await self.node.store.list_for(principal, limit=self.node.settings.welcome_tickets_max)
        return [t.id for t in tickets]

    async def _rebuild(self, principal: Principal) -> Snapshot:
        ids = await self._reader_tickets(principal)
        return await self.book.sync(principal.key, await self.node.store.unread_state(principal, ids),
                                    join=not principal.is_agent)

    async def rebuild_local_readers(self) -> None:
        """Redis lost its data: rebuild the state of every reader connected here and
        tell their connections the numbers (which are what they were)."""
        seen: set[str] = set()
        for session in tuple(self.node.sessions):
            principal = session.principal
            if principal is None or principal.key in seen:
                continue
            seen.add(principal.key)
            try:
                snapshot = await self._rebuild(principal)
            except _REDIS_DOWN as exc:
                log.warning("unread.rebuild_failed", extra={"error": repr(exc)})
                return
            if snapshot.counts or not principal.is_agent:
                await self.node.publish_unread(principal.key, snapshot.counts, snapshot.badge)

    # --------------------------------------------------------------- presence
    @property
    def agents_online(self) -> int:
        return self._agents_online

    async def refresh_agents_online(self) -> int:
        try:
            self._agents_online = await self.presence.agents_online()
        except _REDIS_DOWN:
            pass
        return self._agents_online

    async def admit(self, principal: Principal, conn_id: str) -> float:
        """Count the connection against its user's limit: 0.0, or the seconds to wait
        (fails open without Redis)."""
        try:
            return await self.connections.open(principal.key, conn_id, self.node.now(),
                                               self.node.settings.limits.user_connections)
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": repr(exc)})
            return 0.0

    async def arrive(self, principal: Principal, conn_id: str) -> Arrival:
        """A customer's hello: admitted (or how long to wait), whether its record needs
        a refresh, and the shop's presence, in one round trip (fails open without Redis)."""
        shop = principal.shop or ""
        node = self.node
        try:
            arrival = await self.arrivals.arrive(principal.key, shop, conn_id, node.now(),
                                                 node.settings.limits.user_connections,
                                                 node.customer_presence(shop, True))
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": repr(exc)})
            return Arrival(0.0, first_seen=True, shop_online=False)
        if arrival.shop_online:
            # The shop's first live connection: agents learn the customer is here.
            node.dispatch_customer_presence(shop, True)
        return arrival

    async def penalize(self, principal: Principal) -> None:
        try:
            await self.connections.penalize(principal.key, ABUSE_COOLDOWN)
        except _REDIS_DOWN as exc:
            log.warning("connections.unavailable", extra={"error": repr(exc)})

    async def connected(self, session: Session) -> None:
        principal = session.principal
        if principal is None:
            return
        now = self.node.now()
        try:
            if principal.is_agent and session.counts_as_presence:
                await self._announce(await self.presence.set_agent(principal.id, session.conn_id, "online", now))
        except _REDIS_DOWN as exc:
            log.warning("presence.unavailable", extra={"error": repr(exc)})

    async def disconnected(self, session: Session) -> None:
        principal = session.principal
        if principal is None:
            return
        node = self.node
        try:
            if not principal.is_agent:
                shop = principal.shop or ""
                if await self.arrivals.leave(principal.key, shop, session.conn_id, node.now(),
                                             node.customer_presence(shop, False)):
                    node.dispatch_customer_presence(shop, False)
                return
            if session.admitted:
                await self.connections.close(principal.key, session.conn_id)
            if session.counts_as_presence:
                await self._announce(await self.presence.drop_agent(principal.id, session.conn_id, node.now()))
        except _REDIS_DOWN as exc:
            log.warning("presence.unavailable", extra={"error": repr(exc)})

    async def set_status(self, principal: Principal, conn_id: str, status: str) -> None:
        changes = await self.presence.set_agent(principal.id, conn_id, status, self.node.now(),
                                                every_connection=True)
        await self._announce(changes)

    async def _announce(self, changes: Changes) -> None:
        for agent, status in changes.statuses.items():
            await self.node.publish_presence({"type": "presence", "agent": agent, "status": status})
        if changes.agents_online != self._agents_online:
            self._agents_online = changes.agents_online
            await self.node.publish_presence({"type": "presence", "agents_online": changes.agents_online})

    async def run_heartbeat(self) -> None:
        """Refresh this node's connections, settle expired ones cluster-wide, and
        notice a Redis that lost its data."""
        interval = self.node.settings.heartbeat_interval.total_seconds()
        while True:
            try:
                await self._beat()
            except _REDIS_DOWN as exc:
                log.warning("presence.heartbeat_failed", extra={"error": repr(exc)})
            except Exception:
                log.exception("presence.heartbeat_crashed")
            await asyncio.sleep(interval)

    async def _beat(self) -> None:
        node = self.node
        now = node.now()
        redis = node.redis
        # Each node has its own marker: every node must notice the loss for its readers.
        marker = node.keys.alive(node.node_id)
        lifetime = int(node.settings.presence_ttl.total_seconds() * 10) + 60  # dead nodes' markers go away
        fresh = await redis.set(marker, "1", nx=True, ex=lifetime)
        if not fresh:
            await redis.expire(marker, lifetime)
        beats = []
        for session in tuple(node.sessions):
            principal = session.principal
            if principal is None:
                continue
            if principal.is_agent and session.counts_as_presence:
                beats.append(Beat("agent", principal.id, session.conn_id, session.presence_status))
            elif not principal.is_agent:
                beats.append(Beat("customer", principal.shop or "", session.conn_id))
        await self.presence.heartbeat(beats, now)
        await self.connections.refresh(((s.principal.key, s.conn_id) for s in tuple(node.sessions)
                                        if s.principal is not None and s.admitted), now)
        await self._announce(await self.presence.sweep(now))
        if fresh:
            # The marker was missing: Redis started empty or was flushed.
            log.warning("redis.data_lost", extra={"node_id": node.node_id})
            await self.rebuild_local_readers()
