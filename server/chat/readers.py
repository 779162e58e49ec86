"""Each reader's unread state: what a welcome shows, what a `read` changes, and
rebuilding it when Redis lost it.

Orchestrates the Redis book (`server.realtime.unread`) with the database's read
cursors (`server.store.reads`): the database is the truth, Redis the fast copy.
Redis failures degrade to the database's numbers, never to a failed request.
(Counting new messages is the announce path's, `server.chat.announce`.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from redis.exceptions import RedisError

from server.chat.announce import Announcer
from server.principal import Principal
from server.protocol import views
from server.realtime.unread import UnreadBook
from server.store.reads import ReadStore
from server.store.tickets import TicketStore

log = logging.getLogger(__name__)
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
# Reads a reader's unread state {ticket: (cursor, unread seqs)} from the database.
UnreadStateOf = Callable[[Principal, list[int]], Awaitable[dict[int, tuple[int, list[int]]]]]


class Readers:
    def __init__(self, book: UnreadBook, reads: ReadStore, tickets: TicketStore, announce: Announcer,
                 list_max: int, unread_state: UnreadStateOf | None = None) -> None:
        self.book = book
        self.reads = reads
        # A new customer reader's state from the database (the hellos' batched read).
        self.unread_state = unread_state or reads.unread_state
        self.tickets = tickets
        self.announce = announce
        self.list_max = list_max

    async def snapshot_for(self, principal: Principal, ticket_ids: Iterable[int]) -> dict[int, int]:
        """The reader's unread counts for a welcome, rebuilt from the database into Redis."""
        ids = list(ticket_ids)
        if principal.is_agent:
            # An agent's inbox spans many tickets; its Redis state covers those it read.
            counts = await self.reads.unread(principal, ids)
            try:
                if not await self.book.built(principal.key):
                    tracked = await self.reads.cursor_tickets(principal.key)
                    await self.book.sync(principal.key, await self.reads.unread_state(principal, tracked))
            except _REDIS_DOWN as exc:
                log.warning("unread.redis_unavailable", extra={"error": str(exc) or repr(exc)})
            return counts
        try:
            built, counts = await self.book.read_book(principal.key)
            if built:
                # Kept exact by every message and read since it was built: no database.
                return counts
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": str(exc) or repr(exc)})
        state = await self.unread_state(principal, ids)
        try:
            snapshot = await self.book.sync(principal.key, state, join=True)
            return {t: n for t, n in snapshot.counts.items() if t in state or n}
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": str(exc) or repr(exc)})
            return {t: len(seqs) for t, (_, seqs) in state.items() if seqs}

    async def opened(self, principal: Principal, ticket_id: int, cursor: int) -> None:
        """The opener has seen the first messages of its new ticket."""
        try:
            await self.book.read(principal.key, ticket_id, cursor)
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": str(exc) or repr(exc)})

    async def after_read(self, principal: Principal, ticket_id: int, *, origin: str | None = None,
                         ref: object = None) -> None:
        """The reader's cursor moved in the database: bring Redis along (the sync raises
        the cursor and trims) and tell all of the reader's connections."""
        reader = principal.key
        try:
            if not await self.book.built(reader):
                await self.rebuild(principal)
            snapshot = await self.book.sync(reader, await self.reads.unread_state(principal, [ticket_id]),
                                            join=principal.is_agent)
            count, badge = snapshot.counts.get(ticket_id, 0), snapshot.badge
        except _REDIS_DOWN as exc:
            log.warning("unread.redis_unavailable", extra={"error": str(exc) or repr(exc)})
            counts = await self.reads.unread(principal, await self._reader_tickets(principal))
            count, badge = counts.get(ticket_id, 0), views.badge(counts.values())
        await self.announce.unread(reader, {ticket_id: count}, badge, origin=origin, ref=ref)

    async def _reader_tickets(self, principal: Principal) -> list[int]:
        if principal.is_agent:
            return await self.reads.cursor_tickets(principal.key)
        return [t.id for t in await self.tickets.list_for(principal, limit=self.list_max)]

    async def rebuild(self, principal: Principal) -> dict[int, int]:
        ids = await self._reader_tickets(principal)
        snapshot = await self.book.sync(principal.key, await self.reads.unread_state(principal, ids),
                                        join=not principal.is_agent)
        return snapshot.counts

    async def rebuild_all(self, principals: Iterable[Principal]) -> None:
        """Redis lost its data: rebuild the state of these readers (this node's) and
        tell their connections the numbers (which are what they were)."""
        seen: set[str] = set()
        for principal in principals:
            if principal.key in seen:
                continue
            seen.add(principal.key)
            try:
                counts = await self.rebuild(principal)
            except _REDIS_DOWN as exc:
                log.warning("unread.rebuild_failed", extra={"error": str(exc) or repr(exc)})
                return
            if counts or not principal.is_agent:
                await self.announce.unread(principal.key, counts, views.badge(counts.values()))

    async def forget_tickets(self, readers_by_ticket: dict[int, set[str]]) -> None:
        """Every Redis key about purged tickets goes; a reader whose badge pointed at
        one of them hears its new state."""
        pointed = await self.book.forget_tickets(readers_by_ticket)
        for reader, gone in pointed.items():
            snapshot = await self.book.snapshot(reader)
            await self.announce.unread(reader, dict.fromkeys(gone, 0), snapshot.badge)
