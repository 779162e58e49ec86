"""Tickets in the database: shops and their users, opening, reading, listing, changing.

Every change is a transaction against the database, the source of truth; opening a
ticket stores it with its first messages, its escalation rows and the opener's read
cursor at once, idempotently on the customer's `client_id`. What this module does
not do: decide (the rules hand in what to store), talk to Redis or sockets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.errors import Forbidden, NotFound
from server.principal import Principal
from server.rules.conduct import CLAIMS, Record
from server.rules.notices import Notice
from server.rules.plans import IDLE_RANK
from server.rules.records import SYSTEM, Author, Message, NewTicket, Opened, Ticket
from server.rules.tickets import check_access, unknown_ticket
from server.store.db import single_statements
from server.store.models import ACTIVE_TICKETS, customers, messages, outbox, shops, tickets
from server.store.notifications import queue_notice
from server.store.rows import (
    MESSAGE_COLUMNS,
    SHOP_TICKETS,
    AttachFn,
    append_message,
    insert_for,
    message_row,
    release_held,
    set_cursor,
    shop_upsert,
    ticket_row,
    ticket_select,
)

CLIENT_ID_CHARS = 200  # messages.client_id


class TicketStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)  # one statement each, its own transaction (see db.single_statements)
        self._insert = insert_for(engine)

    # ------------------------------------------------------------------ shops
    async def touch_customer(self, principal: Principal, now: datetime) -> None:
        """Record the shop and its user (readers of the shop's tickets)."""
        if principal.shop is None:
            return
        if self._insert is postgresql.insert:
            # One statement, its own transaction: one round trip instead of four.
            shop = shop_upsert(self._insert, principal, now).returning(shops.c.id).cte("shop")
            upsert = postgresql.insert(customers).from_select(
                ["shop_id", "user_id", "name", "email", "first_seen_at", "last_seen_at"],
                select(shop.c.id, literal(principal.id, customers.c.user_id.type),
                       literal(principal.name, customers.c.name.type),
                       literal(principal.email, customers.c.email.type),
                       literal(now, customers.c.first_seen_at.type), literal(now, customers.c.last_seen_at.type)))
            async with self.single.connect() as conn:
                await conn.execute(upsert.on_conflict_do_update(
                    index_elements=[customers.c.shop_id, customers.c.user_id],
                    set_={"name": upsert.excluded.name, "email": upsert.excluded.email,
                          "last_seen_at": upsert.excluded.last_seen_at},
                ))
            return
        async with self.engine.begin() as conn:
            await conn.execute(shop_upsert(self._insert, principal, now))
            stmt = self._insert(customers).values(
                shop_id=principal.shop, user_id=principal.id, name=principal.name, email=principal.email,
                first_seen_at=now, last_seen_at=now,
            )
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[customers.c.shop_id, customers.c.user_id],
                set_={"name": principal.name, "email": principal.email, "last_seen_at": now},
            ))

    async def shop_records(self, shop_ids: Iterable[str], since: datetime) -> dict[str, Record]:
        """Each shop's recent critical/major claims and how many agents lowered.
        Claims lowered automatically and not yet reviewed by an agent do not count."""
        ids = list(dict.fromkeys(shop_ids))
        if not ids:
            return {}
        claimed, severity = tickets.c.claimed_severity, tickets.c.severity
        lowered = case((and_(claimed == "critical", severity != "critical"), 1),
                       (and_(claimed == "major", severity.not_in(("critical", "major"))), 1), else_=0)
        query = (select(tickets.c.shop_id, func.count(), func.sum(lowered))
                 .where(tickets.c.shop_id.in_(ids), claimed.in_(CLAIMS), tickets.c.created_at >= since,
                        or_(tickets.c.severity_reviewed, tickets.c.deprioritized.is_(False)))
                 .group_by(tickets.c.shop_id))
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = {r[0]: Record(int(r[1]), int(r[2] or 0)) for r in rows}
        return {shop: found.get(shop, Record(0, 0)) for shop in ids}

    # ---------------------------------------------------------------- reading
    async def get(self, ticket_id: int) -> Ticket:
        async with self.single.connect() as conn:
            row = (await conn.execute(ticket_select().where(tickets.c.id == ticket_id))).first()
        if row is None:
            raise NotFound(f"ticket {ticket_id} does not exist")
        return ticket_row(row)

    async def get_many(self, ticket_ids: Iterable[int]) -> list[Ticket]:
        """The tickets that still exist, in the order asked for."""
        ids = list(ticket_ids)
        if not ids:
            return []
        async with self.single.connect() as conn:
            found = {r[0]: ticket_row(r) for r in await conn.execute(ticket_select().where(tickets.c.id.in_(ids)))}
        return [found[i] for i in ids if i in found]

    async def get_for(self, principal: Principal, ticket_id: int) -> Ticket:
        """The ticket if `principal` may see it; a customer hears the same of one
        that does not exist as of another shop's (`rules.tickets.unknown_ticket`)."""
        async with self.single.connect() as conn:
            row = (await conn.execute(ticket_select().where(tickets.c.id == ticket_id))).first()
        if row is None:
            raise unknown_ticket(principal, ticket_id)
        ticket = ticket_row(row)
        check_access(principal, ticket.shop_id)
        return ticket

    async def list_for(self, principal: Principal, status: str | None = None, limit: int = 500,
                       now: datetime | None = None, department: str | None = None,
                       shop: str | None = None, assignee: str | None = None) -> list[Ticket]:
        """A customer's shop tickets (newest first) or an agent's inbox (by deadline;
        active tickets unless a status is asked for). `status="queued"`: tickets held
        for working hours at `now`. An agent's `shop`: that shop's tickets, newest
        first, whatever their status or department (unless a status is asked for).
        An agent's `assignee`: the tickets assigned to that agent, in inbox order,
        whatever their department (unless one is asked for)."""
        if principal.is_agent and shop is not None:
            query = ticket_select().where(tickets.c.shop_id == shop)
            if status == "queued":
                query = query.where(tickets.c.queued_until.is_not(None))
            elif status is not None:
                query = query.where(tickets.c.status == status)
            async with self.single.connect() as conn:
                rows = (await conn.execute(query.order_by(tickets.c.id.desc()).limit(limit))).all()
            return [ticket_row(r) for r in rows]
        if not principal.is_agent and status is None:
            async with self.single.connect() as conn:
                rows = (await conn.execute(SHOP_TICKETS, {"shop": principal.shop, "limit": limit})).all()
            return [ticket_row(r) for r in rows]
        query = ticket_select()
        if status == "queued":
            query = query.where(tickets.c.queued_until.is_not(None))
            if now is not None:
                query = query.where(tickets.c.queued_until > now)
        elif status is not None:
            query = query.where(tickets.c.status == status)
        if principal.is_agent:
            if status in (None, "queued"):
                query = query.where(ACTIVE_TICKETS)
            if assignee is not None:
                query = query.where(tickets.c.assignee == assignee)
                if department not in (None, "*"):
                    query = query.where(tickets.c.department == department)
            elif department != "*":
                # An agent's departments claim sets the default inbox; "*" shows every department.
                wanted = [department] if department else list(principal.departments)
                if wanted:
                    query = query.where(tickets.c.department.in_(wanted))
            # Tickets with a deadline running by plan rank, then by deadline; then those
            # with none (their rank is IDLE_RANK): the order of ix_tickets_inbox, so a
            # page reads a page.
            query = query.order_by(tickets.c.inbox_rank, tickets.c.sla_due_at, tickets.c.id)
        else:
            query = query.where(tickets.c.shop_id == principal.shop).order_by(tickets.c.id.desc())
        async with self.single.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [ticket_row(r) for r in rows]

    # ---------------------------------------------------------------- writing
    async def open(self, principal: Principal, new: NewTicket, first: Sequence[tuple[Author, str]],
                   now: datetime, attachments: Sequence[str] = (), attach: AttachFn | None = None,
                   notices: Sequence[Notice] = ()) -> Opened:
        """Create a ticket with its first messages (the customer's body, then e.g. the
        acknowledgment) and its mails (the acknowledgment's). Idempotent on the
        customer's `client_id`."""
        if principal.shop is None:
            raise Forbidden("only customers open tickets")
        async with self.engine.begin() as conn:
            existing = (await conn.execute(ticket_select().where(and_(
                tickets.c.shop_id == principal.shop, tickets.c.created_by == principal.id,
                tickets.c.client_id == new.client_id,
            )))).first()
            if existing is None:
                await conn.execute(shop_upsert(self._insert, principal, now))
                ins = self._insert(tickets).values(
                    shop_id=principal.shop, created_by=principal.id, client_id=new.client_id,
                    title=new.title, status="open", severity=new.severity, department=new.department,
                    assignee=None, context=dict(new.context), last_seq=0, created_at=now, updated_at=now,
                    sla_due_at=new.sla_due_at, queued_until=new.queued_until, sla_warning_at=new.sla_warning_at,
                    claimed_severity=new.claimed_severity or new.severity, deprioritized=new.deprioritized,
                    lang=new.lang, plan=new.plan or principal.plan, sla_started_at=now,
                    first_response_due_at=new.sla_due_at, inbox_rank=new.rank if new.sla_due_at else IDLE_RANK,
                    # How long the off-hours queue holds it (shortened if released early).
                    held_s=None if new.queued_until is None else int((new.queued_until - now).total_seconds()),
                ).on_conflict_do_nothing().returning(tickets.c.id)
                ticket_id = (await conn.execute(ins)).scalar()
                if ticket_id is not None:
                    return await self._opened(conn, principal, ticket_id, new, first, now, attachments, attach,
                                              notices)
        # A retried open_ticket: answer with what the first attempt stored.
        async with self.single.connect() as conn:
            row = (await conn.execute(ticket_select().where(and_(
                tickets.c.shop_id == principal.shop, tickets.c.created_by == principal.id,
                tickets.c.client_id == new.client_id,
            )))).one()
            ticket = ticket_row(row)
            first_rows = (await conn.execute(select(*MESSAGE_COLUMNS).where(
                messages.c.ticket_id == ticket.id).order_by(messages.c.seq).limit(max(1, len(first))))).all()
        return Opened(ticket, tuple(message_row(r) for r in first_rows), created=False)

    async def _opened(self, conn: AsyncConnection, principal: Principal, ticket_id: int, new: NewTicket,
                      first: Sequence[tuple[Author, str]], now: datetime, attachments: Sequence[str],
                      attach: AttachFn | None, notices: Sequence[Notice] = ()) -> Opened:
        for event, key, payload in new.events:
            await conn.execute(outbox.insert().values(
                ticket_id=ticket_id, event=event, dedup_key=f"{key}:{ticket_id}",
                payload={**payload, "ticket_id": ticket_id}, created_at=now, next_attempt_at=now, attempts=0))
        out: list[Message] = []
        for i, (author, body) in enumerate(first):
            # The first messages after the description carry its client id with a
            # suffix, cut to fit the column (a client id may be as long as the column).
            suffix = f":{i}"
            client_id = new.client_id if i == 0 else new.client_id[:CLIENT_ID_CHARS - len(suffix)] + suffix
            out.append(await append_message(conn, ticket_id, author, body, client_id, now, new.queued_until))
        if attachments and attach is not None:
            out[0] = replace(out[0], attachments=tuple(await attach(conn, list(attachments), ticket_id, out[0].id)))
        # The opener has seen what the reply to open_ticket shows them.
        await set_cursor(conn, self._insert, ticket_id, principal.key, len(out), now)
        # The opener's address as of now: the worker mails them when they are not here.
        await conn.execute(self._insert(customers).values(
            shop_id=principal.shop, user_id=principal.id, name=principal.name, email=principal.email,
            first_seen_at=now, last_seen_at=now,
        ).on_conflict_do_update(index_elements=[customers.c.shop_id, customers.c.user_id],
                                set_={"email": principal.email, "last_seen_at": now}))
        for notice in notices:
            await queue_notice(conn, self._insert, ticket_id, notice, 0, now)
        row = (await conn.execute(ticket_select().where(tickets.c.id == ticket_id))).one()
        return Opened(ticket_row(row), tuple(out), created=True)

    async def update(self, ticket_id: int, changes: Mapping[str, Any], notes: Iterable[str], now: datetime, *,
                     release: bool = False, events: Iterable[tuple[str, str, dict[str, Any]]] = (),
                     notices: Sequence[Notice] = (), internal_notes: Iterable[str] = ()
                     ) -> tuple[Ticket, list[Message], list[Message]]:
        """Apply field changes, add one system message per note (then one private
        note per internal note), store the change's notifications (escalations and
        mails) and (`release`) hand its held messages to the agents, in one
        transaction. Returns the ticket, the notes and the released messages."""
        async with self.engine.begin() as conn:
            values = dict(changes)
            values["updated_at"] = now
            result = await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**values))
            if result.rowcount == 0:
                raise NotFound(f"ticket {ticket_id} does not exist")
            released = await release_held(conn, ticket_id) if release else []
            for event, key, payload in events:
                # Once per ticket whatever happens later (the dedup key is unique).
                await conn.execute(self._insert(outbox).values(
                    ticket_id=ticket_id, event=event, dedup_key=f"{key}:{ticket_id}", payload=payload,
                    created_at=now, next_attempt_at=now, attempts=0).on_conflict_do_nothing(
                    index_elements=[outbox.c.dedup_key]))
            added = [await append_message(conn, ticket_id, SYSTEM, note, f"system:{uuid.uuid4().hex}", now, None)
                     for note in notes]
            for notice in notices:
                await queue_notice(conn, self._insert, ticket_id, notice, added[-1].seq if added else 0, now)
            added += [await append_message(conn, ticket_id, SYSTEM, note, f"system:{uuid.uuid4().hex}", now, None,
                                           internal=True) for note in internal_notes]
            row = (await conn.execute(ticket_select().where(tickets.c.id == ticket_id))).one()
        return ticket_row(row), added, released
