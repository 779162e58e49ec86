"""Shared pieces of the thread tables' SQL: the columns read, rows to records, and the
few statements several stores run inside their own transactions (appending a
message, moving a read cursor, recording a shop).

A message gets its per-ticket `seq` from the ticket row (`UPDATE … SET last_seq =
last_seq + 1 … RETURNING`), which locks the row until commit: concurrent writers
into one ticket, on any number of processes, queue up on that lock, so `seq` is
unique and gapless (a rolled-back insert rolls the counter back too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.principal import Principal
from server.rules.deadlines import Answered
from server.rules.records import Author, Message, Ticket
from server.store.models import messages, read_cursors, shops, tickets

# Binds uploads to a stored message inside its transaction: (conn, ids, ticket, message id) → entries.
AttachFn = Callable[[AsyncConnection, list[str], int, int], Awaitable[list[dict[str, Any]]]]

TICKET_COLUMNS = (
    tickets.c.id, tickets.c.shop_id, tickets.c.created_by, tickets.c.title, tickets.c.status,
    tickets.c.severity, tickets.c.department, tickets.c.assignee, tickets.c.context, tickets.c.last_seq,
    tickets.c.created_at, tickets.c.updated_at, tickets.c.sla_due_at, tickets.c.queued_until,
    tickets.c.closed_at, shops.c.name, func.coalesce(tickets.c.plan, shops.c.plan).label("plan"),
    tickets.c.first_response_at, tickets.c.resolved_at,
    tickets.c.waiting_since, tickets.c.reminders_sent, tickets.c.claimed_severity, tickets.c.deprioritized,
    tickets.c.live_until, tickets.c.lang, tickets.c.last_public_seq, tickets.c.sla_started_at,
    tickets.c.first_response_due_at, tickets.c.inbox_rank, tickets.c.resolution_s,
)
MESSAGE_COLUMNS = (
    messages.c.ticket_id, messages.c.seq, messages.c.id, messages.c.author_kind, messages.c.author_id,
    messages.c.author_name, messages.c.body, messages.c.created_at, messages.c.client_id,
    messages.c.queued_until, messages.c.internal,
)


def ticket_row(row: Any) -> Ticket:
    return Ticket(
        id=row[0], shop_id=row[1], created_by=row[2], title=row[3], status=row[4], severity=row[5],
        department=row[6], assignee=row[7], context=row[8] or {}, last_seq=row[9], created_at=row[10],
        updated_at=row[11], sla_due_at=row[12], queued_until=row[13], closed_at=row[14],
        shop_name=row[15], plan=row[16], first_response_at=row[17], resolved_at=row[18], waiting_since=row[19],
        reminders_sent=row[20], claimed_severity=row[21], deprioritized=bool(row[22]), live_until=row[23],
        lang=row[24] or "pl", last_public_seq=row[25], sla_started_at=row[26], first_response_due_at=row[27],
        inbox_rank=row[28], resolution_s=row[29],
    )


def message_row(row: Any) -> Message:
    return Message(
        ticket=row[0], seq=row[1], id=row[2], author=Author(row[3], row[4], row[5]), body=row[6],
        created_at=row[7], client_id=row[8], queued_until=row[9], internal=bool(row[10]),
    )


def ticket_select() -> Any:
    return select(*TICKET_COLUMNS).select_from(tickets.join(shops, shops.c.id == tickets.c.shop_id))


def insert_for(engine: AsyncEngine) -> Any:
    """The dialect's INSERT (both have ON CONFLICT)."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


# The reads every hello makes, built once: SQLAlchemy then neither rebuilds the
# statement nor recomputes its cache key per call (the bulk of a small query's cost).
SHOP_TICKETS = (ticket_select().where(tickets.c.shop_id == bindparam("shop"))
                .order_by(tickets.c.id.desc()).limit(bindparam("limit")))
_IN_WINDOW = and_(messages.c.ticket_id == bindparam("ticket"), messages.c.seq > bindparam("after"),
                  messages.c.seq <= bindparam("upto"))
# A resume's replay: the seq just older than the newest `skip` of a window (an
# index-only walk down (ticket_id, seq)), then pages from there on.
REPLAY_START = (select(messages.c.seq).where(_IN_WINDOW).order_by(messages.c.seq.desc())
                .limit(1).offset(bindparam("skip")))
REPLAY_PAGE = select(*MESSAGE_COLUMNS).where(_IN_WINDOW).order_by(messages.c.seq).limit(bindparam("limit"))
LAST_SEQS = select(tickets.c.id, tickets.c.last_seq).where(tickets.c.id.in_(bindparam("ids", expanding=True)))
CURSORS = (select(read_cursors.c.ticket_id, read_cursors.c.seq)
           .where(read_cursors.c.reader == bindparam("reader"),
                  read_cursors.c.ticket_id.in_(bindparam("ids", expanding=True))))
_cursor = read_cursors.alias("c")
UNREAD_SEQS = (select(messages.c.ticket_id, messages.c.seq)
               .select_from(messages.outerjoin(_cursor, and_(_cursor.c.ticket_id == messages.c.ticket_id,
                                                             _cursor.c.reader == bindparam("reader"))))
               .where(messages.c.ticket_id.in_(bindparam("ids", expanding=True)))
               .where(messages.c.seq > func.coalesce(_cursor.c.seq, 0))
               .where(or_(messages.c.author_kind != bindparam("kind"), messages.c.author_id != bindparam("author"))))
# Support reads what customers wrote: Pomoc's own system notes are not news to agents.
UNREAD_SEQS_FOR_AGENTS = UNREAD_SEQS.where(messages.c.author_kind != "system")
# A private note is never news to the shop: it never reaches them.
UNREAD_SEQS_FOR_CUSTOMERS = UNREAD_SEQS.where(messages.c.internal == false())


# Working seconds on a ticket's calendar: (severity, plan, start, end) → seconds (the policy's).
WorkingSeconds = Callable[[str, "str | None", datetime, datetime], int]


def answer_columns(facts: Answered, agent_id: str, now: datetime) -> dict[str, Any]:
    """The ticket row's changes recording an agent's answer for the reports (SET
    expressions see the old row)."""
    if facts.first_s is not None:
        return {"first_response_at": func.coalesce(tickets.c.first_response_at, now),
                "first_responder": func.coalesce(tickets.c.first_responder, agent_id),
                "first_response_s": func.coalesce(tickets.c.first_response_s, facts.first_s)}
    return {"next_responses": tickets.c.next_responses + 1,
            "next_response_s": tickets.c.next_response_s + (facts.next_s or 0),
            "next_response_breaches": tickets.c.next_response_breaches + (1 if facts.late else 0)}


def bump_seq(internal: bool, now: datetime) -> dict[str, Any]:
    """The ticket row's changes for its next message (SET expressions see the old
    row: `last_seq + 1` is the new message's seq)."""
    values: dict[str, Any] = {"last_seq": tickets.c.last_seq + 1, "last_message_at": now, "updated_at": now}
    if not internal:
        values["last_public_seq"] = tickets.c.last_seq + 1
    return values


async def append_message(conn: AsyncConnection, ticket_id: int, author: Author, body: str, client_id: str,
                         now: datetime, queued_until: datetime | None, internal: bool = False) -> Message:
    """The ticket's next message, inside the caller's transaction."""
    seq = (await conn.execute(
        update(tickets).where(tickets.c.id == ticket_id).values(**bump_seq(internal, now))
        .returning(tickets.c.last_seq)
    )).scalar_one()
    msg_id = (await conn.execute(messages.insert().values(
        ticket_id=ticket_id, seq=seq, author_kind=author.kind, author_id=author.id,
        author_name=author.name, body=body, client_id=client_id, created_at=now, queued_until=queued_until,
        internal=internal,
    ).returning(messages.c.id))).scalar_one()
    return Message(ticket_id, seq, msg_id, author, body, now, client_id, queued_until, internal=internal)


async def release_held(conn: AsyncConnection, ticket_id: int) -> list[Message]:
    """The ticket's messages still waiting for working hours go to the agents now
    (inside the caller's transaction); oldest first."""
    rows = (await conn.execute(update(messages).where(and_(messages.c.ticket_id == ticket_id,
                                                           messages.c.queued_until.is_not(None)))
                               .values(queued_until=None).returning(*MESSAGE_COLUMNS))).all()
    return sorted((message_row(r) for r in rows), key=lambda m: m.seq)


async def set_cursor(conn: AsyncConnection, insert: Any, ticket_id: int, reader: str, seq: int,
                     now: datetime) -> int:
    """Move a reader's cursor forward (never back); returns where it stands."""
    stmt = insert(read_cursors).values(ticket_id=ticket_id, reader=reader, seq=seq, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[read_cursors.c.ticket_id, read_cursors.c.reader],
        set_={"seq": func.max(read_cursors.c.seq, stmt.excluded.seq) if insert is sqlite.insert
              else func.greatest(read_cursors.c.seq, stmt.excluded.seq),
              "updated_at": now},
    )
    await conn.execute(stmt)
    return int((await conn.execute(select(read_cursors.c.seq).where(and_(
        read_cursors.c.ticket_id == ticket_id, read_cursors.c.reader == reader)))).scalar_one())


def shop_upsert(insert: Any, principal: Principal, now: datetime) -> Any:
    stmt = insert(shops).values(
        id=principal.shop, name=principal.shop_name or principal.shop, plan=principal.plan or "standard",
        created_at=now, updated_at=now,
    )
    return stmt.on_conflict_do_update(
        index_elements=[shops.c.id],
        set_={"name": principal.shop_name or principal.shop, "plan": principal.plan or "standard",
              "updated_at": now},
    )
