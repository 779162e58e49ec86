"""Ratings in the database: a customer's answer to "was the problem solved?", stored
with what it does to the ticket in one transaction.

The ticket is claimed with a conditional UPDATE (`status = 'resolved'`), so two
answers at once (two tabs, two users of the shop) change it once: the second finds
it no longer resolved and is refused. What this module does not do: decide (the
rules of `server.rules.satisfaction` hand in the changes), talk to Redis or sockets.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.errors import Conflict
from server.principal import Principal
from server.rules.records import SYSTEM, Message, Ticket
from server.rules.satisfaction import Answer
from server.store.models import ratings, tickets
from server.store.rows import append_message, ticket_row, ticket_select


class RatingStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def answer(self, principal: Principal, ticket_id: int, answer: Answer, changes: Mapping[str, Any],
                     note: str, now: datetime) -> tuple[Ticket, Message]:
        """Store the answer, apply `changes` to the still-resolved ticket and add the
        public system note. Raises Conflict when the ticket stopped being resolved."""
        async with self.engine.begin() as conn:
            claimed = await conn.execute(update(tickets).where(and_(
                tickets.c.id == ticket_id, tickets.c.status == "resolved")).values(**changes, updated_at=now))
            if claimed.rowcount != 1:
                raise Conflict("this ticket is not resolved any more: there is nothing to rate")
            await conn.execute(ratings.insert().values(
                ticket_id=ticket_id, shop_id=principal.shop or "", user_id=principal.id, solved=answer.solved,
                score=answer.score, comment=answer.comment, created_at=now))
            message = await append_message(conn, ticket_id, SYSTEM, note, f"system:{uuid.uuid4().hex}", now, None)
            row = (await conn.execute(ticket_select().where(tickets.c.id == ticket_id))).one()
        return ticket_row(row), message
