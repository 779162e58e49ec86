"""Per-ticket threads: open, post, history, read cursors, listing and status changes.

Everything here is a transaction against the database, the source of truth. A
message gets its per-ticket `seq` from the ticket row (`UPDATE … SET last_seq =
last_seq + 1 … RETURNING`), which locks the row until commit: concurrent writers
into one ticket, on any number of processes, queue up on that lock, so `seq` is
unique and gapless (a rolled-back insert rolls the counter back too). Sends are
idempotent through the `(ticket, author, client_id)` unique constraint.

What this module does not do: decide time rules (callers pass `queued_until`,
`sla_due_at`), talk to Redis or sockets.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.auth import Principal
from server.conduct import CLAIMS, Record
from server.db import single_statements
from server.errors import ClosedTicket, Forbidden, NotFound
from server.models import ACTIVE_TICKETS, customers, messages, outbox, read_cursors, shops, tickets
from server.retention import REOPENED_TEXT

STATUSES = ("open", "waiting_on_customer", "resolved", "closed")


@dataclass(frozen=True, slots=True)
class Author:
    kind: str  # "customer" | "agent" | "system"
    id: str
    name: str

    @classmethod
    def of(cls, principal: Principal) -> Author:
        return cls(principal.role.value, principal.id, principal.name)

    def public(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "name": self.name}

    def key(self, shop_id: str) -> str:
        """The reader key of this author (see Principal.key)."""
        if self.kind == "agent":
            return f"a:{self.id}"
        return f"c:{shop_id}:{self.id}" if self.kind == "customer" else "system"


SYSTEM = Author("system", "pomoc", "Pomoc")


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


@dataclass(frozen=True, slots=True)
class Message:
    ticket: int
    seq: int
    id: int
    author: Author
    body: str
    created_at: datetime
    client_id: str
    queued_until: datetime | None = None
    attachments: tuple[dict[str, Any], ...] = ()

    def frame(self) -> dict[str, Any]:
        out = {
            "type": "message",
            "ticket": self.ticket,
            "seq": self.seq,
            "id": self.id,
            "author": self.author.public(),
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "client_id": self.client_id,
            "queued_until": iso(self.queued_until),
        }
        if self.attachments:
            out["attachments"] = list(self.attachments)
        return out


# Binds uploads to a stored message inside its transaction: (conn, ids, ticket, message id) → entries.
AttachFn = Callable[[AsyncConnection, list[str], int, int], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    shop_id: str
    created_by: str
    title: str
    status: str
    severity: str
    department: str | None
    assignee: str | None
    context: Mapping[str, Any]
    last_seq: int
    created_at: datetime
    updated_at: datetime
    sla_due_at: datetime | None
    queued_until: datetime | None
    closed_at: datetime | None
    shop_name: str | None = None
    plan: str | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    waiting_since: datetime | None = None
    reminders_sent: int = 0
    claimed_severity: str | None = None
    deprioritized: bool = False

    def public(self, unread: int = 0, *, for_agent: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "severity": self.severity,
            "department": self.department,
            "assignee": self.assignee,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "sla_due_at": iso(self.sla_due_at),
            "queued_until": iso(self.queued_until),
            "closed_at": iso(self.closed_at),
            "last_seq": self.last_seq,
            "unread": unread,
            "shop": self.shop_id,
        }
        if for_agent:
            out["shop_name"] = self.shop_name
            out["plan"] = self.plan
            out["created_by"] = self.created_by
            out["context"] = dict(self.context)
            out["first_response_at"] = iso(self.first_response_at)
            out["resolved_at"] = iso(self.resolved_at)
            out["waiting_since"] = iso(self.waiting_since)
            out["reminders_sent"] = self.reminders_sent
            out["claimed_severity"] = self.claimed_severity
            out["deprioritized"] = self.deprioritized
        return out


@dataclass(frozen=True, slots=True)
class NewTicket:
    title: str
    body: str
    severity: str
    context: Mapping[str, Any]
    client_id: str
    sla_due_at: datetime | None = None
    queued_until: datetime | None = None
    department: str | None = None
    sla_warning_at: datetime | None = None
    claimed_severity: str | None = None
    deprioritized: bool = False
    # Durable notifications stored with the ticket: (event, dedup key, payload).
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class Posted:
    message: Message
    shop_id: str
    new: bool
    # System messages the post caused (the ticket reopened), stored with it.
    notes: tuple[Message, ...] = ()
    # Already told to everyone (the group-commit writer publishes whole batches).
    published: bool = False


@dataclass(slots=True)
class Opened:
    ticket: Ticket
    messages: list[Message] = field(default_factory=list)
    created: bool = True


_TICKET_COLUMNS = (
    tickets.c.id, tickets.c.shop_id, tickets.c.created_by, tickets.c.title, tickets.c.status,
    tickets.c.severity, tickets.c.department, tickets.c.assignee, tickets.c.context, tickets.c.last_seq,
    tickets.c.created_at, tickets.c.updated_at, tickets.c.sla_due_at, tickets.c.queued_until,
    tickets.c.closed_at, shops.c.name, shops.c.plan, tickets.c.first_response_at, tickets.c.resolved_at,
    tickets.c.waiting_since, tickets.c.reminders_sent, tickets.c.claimed_severity, tickets.c.deprioritized,
)
_MESSAGE_COLUMNS = (
    messages.c.ticket_id, messages.c.seq, messages.c.id, messages.c.author_kind, messages.c.author_id,
    messages.c.author_name, messages.c.body, messages.c.created_at, messages.c.client_id,
    messages.c.queued_until,
)


def _ticket(row: Any) -> Ticket:
    return Ticket(
        id=row[0], shop_id=row[1], created_by=row[2], title=row[3], status=row[4], severity=row[5],
        department=row[6], assignee=row[7], context=row[8] or {}, last_seq=row[9], created_at=row[10],
        updated_at=row[11], sla_due_at=row[12], queued_until=row[13], closed_at=row[14],
        shop_name=row[15], plan=row[16], first_response_at=row[17], resolved_at=row[18], waiting_since=row[19],
        reminders_sent=row[20], claimed_severity=row[21], deprioritized=bool(row[22]),
    )


def _message(row: Any) -> Message:
    return Message(
        ticket=row[0], seq=row[1], id=row[2], author=Author(row[3], row[4], row[5]), body=row[6],
        created_at=row[7], client_id=row[8], queued_until=row[9],
    )


def _ticket_select() -> Any:
    return select(*_TICKET_COLUMNS).select_from(tickets.join(shops, shops.c.id == tickets.c.shop_id))


# The reads every hello makes, built once: SQLAlchemy then neither rebuilds the
# statement nor recomputes its cache key per call (the bulk of a small query's cost).
_SHOP_TICKETS = (_ticket_select().where(tickets.c.shop_id == bindparam("shop"))
                 .order_by(tickets.c.id.desc()).limit(bindparam("limit")))
_MISSED = (select(*_MESSAGE_COLUMNS)
           .where(messages.c.ticket_id == bindparam("ticket"), messages.c.seq > bindparam("after"))
           .order_by(messages.c.seq.desc()).limit(bindparam("limit")))
_LAST_SEQS = select(tickets.c.id, tickets.c.last_seq).where(tickets.c.id.in_(bindparam("ids", expanding=True)))
_CURSORS = (select(read_cursors.c.ticket_id, read_cursors.c.seq)
            .where(read_cursors.c.reader == bindparam("reader"),
                   read_cursors.c.ticket_id.in_(bindparam("ids", expanding=True))))
_cursor = read_cursors.alias("c")
_UNREAD_SEQS = (select(messages.c.ticket_id, messages.c.seq)
                .select_from(messages.outerjoin(_cursor, and_(_cursor.c.ticket_id == messages.c.ticket_id,
                                                              _cursor.c.reader == bindparam("reader"))))
                .where(messages.c.ticket_id.in_(bindparam("ids", expanding=True)))
                .where(messages.c.seq > func.coalesce(_cursor.c.seq, 0))
                .where(or_(messages.c.author_kind != bindparam("kind"), messages.c.author_id != bindparam("author"))))


class ThreadStore:
    """Transactions on tickets and messages; one instance per process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)  # one statement each, its own transaction (see db.single_statements)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # ------------------------------------------------------------------ shops
    async def touch_customer(self, principal: Principal, now: datetime) -> None:
        """Record the shop and its user (readers of the shop's tickets)."""
        if principal.shop is None:
            return
        if self._insert is postgresql.insert:
            # One statement, its own transaction: one round trip instead of four.
            shop = self._shop_upsert(principal, now).returning(shops.c.id).cte("shop")
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
            await self._upsert_shop(conn, principal, now)
            stmt = self._insert(customers).values(
                shop_id=principal.shop, user_id=principal.id, name=principal.name, email=principal.email,
                first_seen_at=now, last_seen_at=now,
            )
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[customers.c.shop_id, customers.c.user_id],
                set_={"name": principal.name, "email": principal.email, "last_seen_at": now},
            ))

    async def _upsert_shop(self, conn: AsyncConnection, principal: Principal, now: datetime) -> None:
        await conn.execute(self._shop_upsert(principal, now))

    def _shop_upsert(self, principal: Principal, now: datetime) -> Any:
        stmt = self._insert(shops).values(
            id=principal.shop, name=principal.shop_name or principal.shop, plan=principal.plan or "standard",
            created_at=now, updated_at=now,
        )
        return stmt.on_conflict_do_update(
            index_elements=[shops.c.id],
            set_={"name": principal.shop_name or principal.shop, "plan": principal.plan or "standard",
                  "updated_at": now},
        )

    # ---------------------------------------------------------------- tickets
    async def get(self, ticket_id: int) -> Ticket:
        async with self.single.connect() as conn:
            row = (await conn.execute(_ticket_select().where(tickets.c.id == ticket_id))).first()
        if row is None:
            raise NotFound(f"ticket {ticket_id} does not exist")
        return _ticket(row)

    async def get_many(self, ticket_ids: Iterable[int]) -> list[Ticket]:
        """The tickets that still exist, in the order asked for."""
        ids = list(ticket_ids)
        if not ids:
            return []
        async with self.single.connect() as conn:
            found = {r[0]: _ticket(r) for r in await conn.execute(_ticket_select().where(tickets.c.id.in_(ids)))}
        return [found[i] for i in ids if i in found]

    async def get_for(self, principal: Principal, ticket_id: int) -> Ticket:
        ticket = await self.get(ticket_id)
        check_access(principal, ticket.shop_id)
        return ticket

    async def open(self, principal: Principal, new: NewTicket, first: Sequence[tuple[Author, str]],
                   now: datetime, attachments: Sequence[str] = (), attach: AttachFn | None = None) -> Opened:
        """Create a ticket with its first messages (the customer's body, then e.g. the
        acknowledgment). Idempotent on the customer's `client_id`."""
        if principal.shop is None:
            raise Forbidden("only customers open tickets")
        async with self.engine.begin() as conn:
            existing = (await conn.execute(_ticket_select().where(and_(
                tickets.c.shop_id == principal.shop, tickets.c.created_by == principal.id,
                tickets.c.client_id == new.client_id,
            )))).first()
            if existing is None:
                await self._upsert_shop(conn, principal, now)
                ins = self._insert(tickets).values(
                    shop_id=principal.shop, created_by=principal.id, client_id=new.client_id,
                    title=new.title, status="open", severity=new.severity, department=new.department,
                    assignee=None, context=dict(new.context), last_seq=0, created_at=now, updated_at=now,
                    sla_due_at=new.sla_due_at, queued_until=new.queued_until, sla_warning_at=new.sla_warning_at,
                    claimed_severity=new.claimed_severity or new.severity, deprioritized=new.deprioritized,
                ).on_conflict_do_nothing().returning(tickets.c.id)
                ticket_id = (await conn.execute(ins)).scalar()
                if ticket_id is not None:
                    for event, key, payload in new.events:
                        await conn.execute(outbox.insert().values(
                            ticket_id=ticket_id, event=event, dedup_key=f"{key}:{ticket_id}",
                            payload={**payload, "ticket_id": ticket_id}, created_at=now, next_attempt_at=now,
                            attempts=0))
                    out: list[Message] = []
                    for i, (author, body) in enumerate(first):
                        client_id = new.client_id if i == 0 else f"{new.client_id}:{i}"
                        out.append(await self._append(conn, ticket_id, author, body, client_id, now,
                                                      new.queued_until))
                    if attachments and attach is not None:
                        out[0] = replace(out[0], attachments=tuple(await attach(conn, list(attachments), ticket_id,
                                                                                out[0].id)))
                    # The opener has seen what the reply to open_ticket shows them.
                    await self._set_cursor(conn, ticket_id, principal.key, len(out), now)
                    row = (await conn.execute(_ticket_select().where(tickets.c.id == ticket_id))).one()
                    return Opened(_ticket(row), out, created=True)
        # A retried open_ticket: answer with what the first attempt stored.
        async with self.single.connect() as conn:
            row = (await conn.execute(_ticket_select().where(and_(
                tickets.c.shop_id == principal.shop, tickets.c.created_by == principal.id,
                tickets.c.client_id == new.client_id,
            )))).one()
            ticket = _ticket(row)
            first_rows = (await conn.execute(select(*_MESSAGE_COLUMNS).where(
                messages.c.ticket_id == ticket.id).order_by(messages.c.seq).limit(max(1, len(first))))).all()
        return Opened(ticket, [_message(r) for r in first_rows], created=False)

    async def _append(self, conn: AsyncConnection, ticket_id: int, author: Author, body: str, client_id: str,
                      now: datetime, queued_until: datetime | None) -> Message:
        seq = (await conn.execute(
            update(tickets).where(tickets.c.id == ticket_id)
            .values(last_seq=tickets.c.last_seq + 1, last_message_at=now, updated_at=now)
            .returning(tickets.c.last_seq)
        )).scalar_one()
        msg_id = (await conn.execute(messages.insert().values(
            ticket_id=ticket_id, seq=seq, author_kind=author.kind, author_id=author.id,
            author_name=author.name, body=body, client_id=client_id, created_at=now, queued_until=queued_until,
        ).returning(messages.c.id))).scalar_one()
        return Message(ticket_id, seq, msg_id, author, body, now, client_id, queued_until)

    async def post(self, principal: Principal, ticket_id: int, body: str, client_id: str, now: datetime,
                   hold: Callable[[str], datetime | None] | None = None, attachments: Sequence[str] = (),
                   attach: AttachFn | None = None) -> Posted:
        """Store a message; `Posted.new` is False for a retried send (same client_id).

        `hold(severity)` says until when a customer's message waits for working hours."""
        author = Author.of(principal)
        values: dict[str, Any] = {"last_seq": tickets.c.last_seq + 1, "last_message_at": now, "updated_at": now}
        if principal.is_agent:
            values["first_response_at"] = func.coalesce(tickets.c.first_response_at, now)
        async with self.engine.begin() as conn:
            # Locks the ticket row until commit: this is what makes seq gapless.
            row = (await conn.execute(
                update(tickets).where(tickets.c.id == ticket_id).values(**values)
                .returning(tickets.c.last_seq, tickets.c.shop_id, tickets.c.status, tickets.c.severity,
                           tickets.c.queued_until)
            )).first()
            if row is None:
                raise NotFound(f"ticket {ticket_id} does not exist")
            seq, shop_id, status, severity, ticket_held = row
            check_access(principal, shop_id)
            if status == "closed":
                raise ClosedTicket("this ticket is closed; open a new ticket for a new problem")
            queued_until = None
            if not principal.is_agent and hold is not None:
                queued_until = hold(severity)
                if ticket_held is not None and ticket_held > now:
                    queued_until = max(queued_until or ticket_held, ticket_held)
            ins = self._insert(messages).values(
                ticket_id=ticket_id, seq=seq, author_kind=author.kind, author_id=author.id,
                author_name=author.name, body=body, client_id=client_id, created_at=now,
                queued_until=queued_until,
            ).on_conflict_do_nothing(
                index_elements=[messages.c.ticket_id, messages.c.author_kind, messages.c.author_id,
                                messages.c.client_id],
            ).returning(messages.c.id)
            msg_id = (await conn.execute(ins)).scalar()
            if msg_id is not None:
                message = Message(ticket_id, seq, msg_id, author, body, now, client_id, queued_until)
                if attachments and attach is not None:
                    message = replace(message, attachments=tuple(await attach(conn, list(attachments), ticket_id,
                                                                              msg_id)))
                notes: list[Message] = []
                if author.kind == "customer" and status in ("waiting_on_customer", "resolved"):
                    # The customer wrote back: the ticket returns to support, the
                    # silent-customer chain stops.
                    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
                        status="open", waiting_since=None, reminders_sent=0, resolved_at=None))
                    notes.append(await self._append(conn, ticket_id, SYSTEM, REOPENED_TEXT,
                                                    f"system:{uuid.uuid4().hex}", now, queued_until))
                return Posted(message, shop_id, new=True, notes=tuple(notes))
            await conn.rollback()
        # The same client_id again: the first attempt's message, unchanged.
        async with self.single.connect() as conn:
            found = (await conn.execute(select(*_MESSAGE_COLUMNS).where(and_(
                messages.c.ticket_id == ticket_id, messages.c.author_kind == author.kind,
                messages.c.author_id == author.id, messages.c.client_id == client_id,
            )))).one()
        return Posted(_message(found), shop_id, new=False)

    async def update(self, ticket_id: int, changes: Mapping[str, Any], notes: Iterable[str],
                     now: datetime) -> tuple[Ticket, list[Message]]:
        """Apply field changes and add one system message per note, in one transaction."""
        async with self.engine.begin() as conn:
            values = dict(changes)
            values["updated_at"] = now
            result = await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**values))
            if result.rowcount == 0:
                raise NotFound(f"ticket {ticket_id} does not exist")
            added = [await self._append(conn, ticket_id, SYSTEM, note, f"system:{uuid.uuid4().hex}", now, None)
                     for note in notes]
            row = (await conn.execute(_ticket_select().where(tickets.c.id == ticket_id))).one()
        return _ticket(row), added

    async def list_for(self, principal: Principal, status: str | None = None, limit: int = 500,
                       now: datetime | None = None, department: str | None = None) -> list[Ticket]:
        """A customer's shop tickets (newest first) or an agent's inbox (by deadline;
        active tickets unless a status is asked for). `status="queued"`: tickets held
        for working hours at `now`."""
        if not principal.is_agent and status is None:
            async with self.single.connect() as conn:
                rows = (await conn.execute(_SHOP_TICKETS, {"shop": principal.shop, "limit": limit})).all()
            return [_ticket(r) for r in rows]
        query = _ticket_select()
        if status == "queued":
            query = query.where(tickets.c.queued_until.is_not(None))
            if now is not None:
                query = query.where(tickets.c.queued_until > now)
        elif status is not None:
            query = query.where(tickets.c.status == status)
        if principal.is_agent:
            if status in (None, "queued"):
                query = query.where(ACTIVE_TICKETS)
            if department != "*":
                # An agent's departments claim sets the default inbox; "*" shows every department.
                wanted = [department] if department else list(principal.departments)
                if wanted:
                    query = query.where(tickets.c.department.in_(wanted))
            # Deadline order, none last: the order of ix_tickets_inbox, so a page reads a page.
            query = query.order_by(tickets.c.sla_due_at.asc().nulls_last(), tickets.c.id)
        else:
            query = query.where(tickets.c.shop_id == principal.shop).order_by(tickets.c.id.desc())
        async with self.single.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_ticket(r) for r in rows]

    # --------------------------------------------------------------- messages
    async def history(self, ticket_id: int, *, before_seq: int | None = None, after_seq: int | None = None,
                      limit: int = 50) -> tuple[list[Message], bool]:
        query = select(*_MESSAGE_COLUMNS).where(messages.c.ticket_id == ticket_id)
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq).order_by(messages.c.seq)
        else:
            if before_seq is not None:
                query = query.where(messages.c.seq < before_seq)
            query = query.order_by(messages.c.seq.desc())
        async with self.single.connect() as conn:
            rows = (await conn.execute(query.limit(limit + 1))).all()
        more = len(rows) > limit
        out = [_message(r) for r in rows[:limit]]
        if after_seq is None:
            out.reverse()
        return out, more

    async def between(self, ticket_id: int, after_seq: int, upto_seq: int) -> list[Message]:
        """Messages with after_seq < seq <= upto_seq, oldest first (gap fills)."""
        async with self.single.connect() as conn:
            rows = (await conn.execute(select(*_MESSAGE_COLUMNS).where(and_(
                messages.c.ticket_id == ticket_id, messages.c.seq > after_seq, messages.c.seq <= upto_seq,
            )).order_by(messages.c.seq))).all()
        return [_message(r) for r in rows]

    async def missed(self, resume: Mapping[int, int], max_per_ticket: int
                     ) -> tuple[dict[int, list[Message]], set[int]]:
        """For each ticket, the newest `max_per_ticket` messages after the client's seq,
        oldest first, and the tickets where more were missed than that."""
        out: dict[int, list[Message]] = {}
        incomplete: set[int] = set()
        async with self.single.connect() as conn:
            for ticket_id, last in resume.items():
                rows = (await conn.execute(_MISSED, {"ticket": ticket_id, "after": last,
                                                     "limit": max_per_ticket + 1})).all()
                if len(rows) > max_per_ticket:
                    incomplete.add(ticket_id)
                    rows = rows[:max_per_ticket]
                if rows:
                    out[ticket_id] = [_message(r) for r in reversed(rows)]
        return out, incomplete

    async def last_seqs(self, ticket_ids: Iterable[int]) -> dict[int, int]:
        ids = list(ticket_ids)
        if not ids:
            return {}
        async with self.single.connect() as conn:
            rows = await conn.execute(_LAST_SEQS, {"ids": ids})
            return {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------ read state
    async def read(self, principal: Principal, ticket_id: int, seq: int, now: datetime) -> int:
        """Move the reader's cursor forward (never back, never past the last message)."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(tickets.c.shop_id, tickets.c.last_seq)
                                      .where(tickets.c.id == ticket_id))).first()
            if row is None:
                raise NotFound(f"ticket {ticket_id} does not exist")
            check_access(principal, row[0])
            return await self._set_cursor(conn, ticket_id, principal.key, min(seq, row[1]), now)

    async def _set_cursor(self, conn: AsyncConnection, ticket_id: int, reader: str, seq: int,
                          now: datetime) -> int:
        stmt = self._insert(read_cursors).values(ticket_id=ticket_id, reader=reader, seq=seq, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[read_cursors.c.ticket_id, read_cursors.c.reader],
            set_={"seq": func.max(read_cursors.c.seq, stmt.excluded.seq) if self._insert is sqlite.insert
                  else func.greatest(read_cursors.c.seq, stmt.excluded.seq),
                  "updated_at": now},
        )
        await conn.execute(stmt)
        return int((await conn.execute(select(read_cursors.c.seq).where(and_(
            read_cursors.c.ticket_id == ticket_id, read_cursors.c.reader == reader)))).scalar_one())

    async def unread_state(self, principal: Principal, ticket_ids: Iterable[int]
                           ) -> dict[int, tuple[int, list[int]]]:
        """Per ticket: the reader's cursor and the seqs after it that others wrote."""
        ids = list(ticket_ids)
        if not ids:
            return {}
        author = Author.of(principal)
        async with self.single.connect() as conn:
            cursors = {r[0]: r[1] for r in await conn.execute(_CURSORS, {"reader": principal.key, "ids": ids})}
            rows = await conn.execute(_UNREAD_SEQS, {"reader": principal.key, "ids": ids, "kind": author.kind,
                                                     "author": author.id})
            state: dict[int, tuple[int, list[int]]] = {t: (cursors.get(t, 0), []) for t in ids}
            for ticket_id, seq in rows:
                state[ticket_id][1].append(seq)
        return state

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
                users.setdefault(shop_id, []).append(f"c:{shop_id}:{user_id}")
            agents: dict[int, list[str]] = {}
            for ticket_id, reader in await conn.execute(select(read_cursors.c.ticket_id, read_cursors.c.reader)
                                                        .where(read_cursors.c.ticket_id.in_(ids))
                                                        .where(read_cursors.c.reader.like("a:%"))):
                agents.setdefault(ticket_id, []).append(reader)
        return {t: users.get(shop, []) + agents.get(t, []) for t, shop in shops.items()}

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

    async def cursor_tickets(self, reader: str, limit: int = 1000) -> list[int]:
        async with self.single.connect() as conn:
            rows = await conn.execute(select(read_cursors.c.ticket_id).where(read_cursors.c.reader == reader)
                                      .order_by(read_cursors.c.updated_at.desc()).limit(limit))
            return [r[0] for r in rows]

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
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: int(r[1]) for r in rows}


def check_access(principal: Principal, shop_id: str) -> None:
    if not principal.is_agent and principal.shop != shop_id:
        raise Forbidden("this ticket belongs to another shop")
