"""Canned replies in the database: list, read, create, change, delete, and the facts of a
ticket their placeholders are filled from.

The store only stores: what a reply may hold is checked before it gets here
(`server.rules.canned`, by `server.web.canned_api`). A shortcut is unique within its
scope by the table's constraint (`server.store.canned_schema`), so two agents saving
the same shortcut at once get one reply and one `Conflict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.errors import Conflict, NotFound
from server.rules.canned import TicketFacts
from server.store.canned_schema import SHARED_SCOPE
from server.store.models import canned_replies, customers, shops, tickets


@dataclass(frozen=True, slots=True)
class CannedReply:
    id: int
    department: str | None
    title: str
    shortcut: str
    body: str
    articles: tuple[str, ...]
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CannedDraft:
    """A reply's editable fields, already checked."""

    department: str | None
    title: str
    shortcut: str
    body: str
    articles: tuple[str, ...] = ()


_EDITABLE = ("department", "title", "shortcut", "body", "articles")


class CannedStore:
    def __init__(self, engine: AsyncEngine, table: Table = canned_replies) -> None:
        self.engine = engine
        self.table = table

    async def list(self, department: str | None = None) -> list[CannedReply]:
        """Every reply, or with `department` that department's and the shared ones;
        shared first, then by department and shortcut."""
        t = self.table
        query = select(t).order_by(t.c.scope, t.c.shortcut, t.c.id)
        if department is not None:
            query = query.where(t.c.scope.in_((SHARED_SCOPE, department)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_reply(r) for r in rows]

    async def get(self, reply_id: int) -> CannedReply:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(self.table).where(self.table.c.id == reply_id))).first()
        if row is None:
            raise NotFound(f"canned reply {reply_id} does not exist")
        return _reply(row)

    async def create(self, draft: CannedDraft, author: str, now: datetime) -> CannedReply:
        values = {**_columns(draft), "created_by": author, "created_at": now, "updated_at": now}
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(self.table.insert().values(**values).returning(self.table.c.id))
                reply_id = int(result.scalar_one())
        except IntegrityError:
            raise _taken(draft.shortcut, draft.department) from None
        return await self.get(reply_id)

    async def update(self, reply_id: int, draft: CannedDraft, now: datetime) -> CannedReply:
        t = self.table
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    t.update().where(t.c.id == reply_id).values(**_columns(draft), updated_at=now))
        except IntegrityError:
            raise _taken(draft.shortcut, draft.department) from None
        if result.rowcount == 0:
            raise NotFound(f"canned reply {reply_id} does not exist")
        return await self.get(reply_id)

    async def delete(self, reply_id: int) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(self.table.delete().where(self.table.c.id == reply_id))
        if result.rowcount == 0:
            raise NotFound(f"canned reply {reply_id} does not exist")

    async def ticket_facts(self, ticket_id: int) -> TicketFacts:
        """The ticket's number, title and department, its shop's name and its opener's
        name, in one query."""
        query = (
            select(tickets.c.id, tickets.c.title, tickets.c.department, tickets.c.created_by,
                   shops.c.name.label("shop_name"), customers.c.name.label("customer_name"))
            .select_from(tickets)
            .join(shops, shops.c.id == tickets.c.shop_id, isouter=True)
            .join(customers, and_(customers.c.shop_id == tickets.c.shop_id,
                                  customers.c.user_id == tickets.c.created_by), isouter=True)
            .where(tickets.c.id == ticket_id)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"ticket {ticket_id} does not exist")
        return TicketFacts(ticket_id=int(row.id), title=row.title, department=row.department,
                           shop_name=row.shop_name, customer_name=row.customer_name, customer_id=row.created_by)


def draft_of(reply: CannedReply) -> CannedDraft:
    return CannedDraft(reply.department, reply.title, reply.shortcut, reply.body, reply.articles)


def changed(reply: CannedReply, changes: Mapping[str, Any]) -> CannedDraft:
    """`reply`'s fields with `changes` (a subset of the editable ones) applied."""
    fields = {name: getattr(reply, name) for name in _EDITABLE}
    fields.update({k: v for k, v in changes.items() if k in _EDITABLE})
    return CannedDraft(**fields)


def _columns(draft: CannedDraft) -> dict[str, Any]:
    return {"department": draft.department, "scope": draft.department or SHARED_SCOPE, "title": draft.title,
            "shortcut": draft.shortcut, "body": draft.body, "articles": list(draft.articles)}


def _taken(shortcut: str, department: str | None) -> Conflict:
    where = f"in department {department}" if department else "among the shared replies"
    return Conflict(f"the shortcut {shortcut!r} is already used {where}")


def _reply(row: Row[Any]) -> CannedReply:
    return CannedReply(id=int(row.id), department=row.department, title=row.title, shortcut=row.shortcut,
                       body=row.body, articles=tuple(row.articles or ()), created_by=row.created_by,
                       created_at=row.created_at, updated_at=row.updated_at)

