"""Read state in the database: each reader's cursor per ticket, and what it has not read.

The cursors are the truth the unread counts in Redis are rebuilt from
(`server.realtime.unread`): a reader's unread messages in a ticket are those after
its cursor that someone else wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.principal import Principal, customer_key
from server.rules.records import Author
from server.rules.tickets import check_access, unknown_ticket
from server.store.db import single_statements
from server.store.models import customers, messages, read_cursors, tickets
from server.store.rows import CURSORS, UNREAD_SEQS_FOR_AGENTS, UNREAD_SEQS_FOR_CUSTOMERS, insert_for, set_cursor


class ReadStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self._insert = insert_for(engine)

    async def read(self, principal: Principal, ticket_id: int, seq: int, now: datetime) -> int:
        """Move the reader's cursor forward (never back, never past the last message)."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(tickets.c.shop_id, tickets.c.last_seq)
                                      .where(tickets.c.id == ticket_id))).first()
            if row is None:
                raise unknown_ticket(principal, ticket_id)
            check_access(principal, row[0])
            return await set_cursor(conn, self._insert, ticket_id, principal.key, min(seq, row[1]), now)

    async def unread_state(self, principal: Principal, ticket_ids: Iterable[int]
                           ) -> dict[int, tuple[int, list[int]]]:
        """Per ticket: the reader's cursor and the seqs after it that others wrote."""
        ids = list(ticket_ids)
        if not ids:
            return {}
        author = Author.of(principal)
        async with self.single.connect() as conn:
            cursors = {r[0]: r[1] for r in await conn.execute(CURSORS, {"reader": principal.key, "ids": ids})}
            statement = UNREAD_SEQS_FOR_AGENTS if principal.is_agent else UNREAD_SEQS_FOR_CUSTOMERS
            rows = await conn.execute(statement, {"reader": principal.key, "ids": ids, "kind": author.kind,
                                                  "author": author.id})
            state: dict[int, tuple[int, list[int]]] = {t: (cursors.get(t, 0), []) for t in ids}
            for ticket_id, seq in rows:
                state[ticket_id][1].append(seq)
        return state

    async def unread(self, principal: Principal, ticket_ids: Iterable[int]) -> dict[int, int]:
        """Messages after the reader's cursor that someone else wrote, per ticket."""
        ids = list(ticket_ids)
        if not ids:
            return {}
        author = Author.of(principal)
        cursor = read_cursors.alias("c")
        query = (
            select(messages.c.ticket_id, func.count())
            .select_from(messages.outerjoin(cursor, and_(
                cursor.c.ticket_id == messages.c.ticket_id, cursor.c.reader == principal.key)))
            .where(messages.c.ticket_id.in_(ids))
            .where(messages.c.seq > func.coalesce(cursor.c.seq, 0))
            .where(or_(messages.c.author_kind != author.kind, messages.c.author_id != author.id))
            .group_by(messages.c.ticket_id)
        )
        if principal.is_agent:
            query = query.where(messages.c.author_kind != "system")  # Pomoc's own notes are not news to support
        else:
            query = query.where(messages.c.internal == false())  # private notes never reach the shop
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: int(r[1]) for r in rows}

    async def ticket_readers(self, ticket_ids: Iterable[int]) -> dict[int, list[str]]:
        """Who keeps unread state for each ticket: the shop's users and the agents
        who read it (three queries, however many tickets)."""
        ids = sorted(set(ticket_ids))
        if not ids:
            return {}
        async with self.single.connect() as conn:
            shops = dict((await conn.execute(select(tickets.c.id, tickets.c.shop_id)
                                             .where(tickets.c.id.in_(ids)))).all())
            users: dict[str, list[str]] = {}
            for shop_id, user_id in await conn.execute(select(customers.c.shop_id, customers.c.user_id)
                                                       .where(customers.c.shop_id.in_(set(shops.values())))):
                users.setdefault(shop_id, []).append(customer_key(shop_id, user_id))
            agents: dict[int, list[str]] = {}
            for ticket_id, reader in await conn.execute(select(read_cursors.c.ticket_id, read_cursors.c.reader)
                                                        .where(read_cursors.c.ticket_id.in_(ids))
                                                        .where(read_cursors.c.reader.like("a:%"))):
                agents.setdefault(ticket_id, []).append(reader)
        return {t: users.get(shop, []) + agents.get(t, []) for t, shop in shops.items()}

    async def cursor_tickets(self, reader: str, limit: int = 1000) -> list[int]:
        async with self.single.connect() as conn:
            rows = await conn.execute(select(read_cursors.c.ticket_id).where(read_cursors.c.reader == reader)
                                      .order_by(read_cursors.c.updated_at.desc()).limit(limit))
            return [r[0] for r in rows]
