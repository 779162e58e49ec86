"""Database tables (SQLAlchemy Core): the source of truth.

Shops and their users, tickets, messages with a per-ticket gapless `seq`, and read
cursors. Timestamps are stored as UTC and come back UTC-aware on SQLite and
PostgreSQL alike (`UtcDateTime`). Alembic migrations in `migrations/` create exactly
these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import false, text
from sqlalchemy.types import TypeDecorator

from server.store.attachments_schema import attachment_table, help_deflection_table
from server.store.canned_schema import canned_reply_table
from server.store.notifications_schema import notification_tables

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware instants")
        value = value.astimezone(UTC)
        # SQLite has no time zone type: store naive UTC so text ordering is time ordering.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


shops = Table(
    "shops",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("plan", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("shop_id", String(200), ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320)),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
)

tickets = Table(
    "tickets",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("shop_id", String(200), ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("client_id", String(200)),
    Column("title", String(200), nullable=False),
    Column("status", String(30), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("department", String(100)),
    Column("assignee", String(200)),
    Column("context", JSON, nullable=False, default=dict),
    Column("last_seq", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_message_at", UtcDateTime),
    Column("sla_due_at", UtcDateTime),
    Column("queued_until", UtcDateTime),
    Column("resolved_at", UtcDateTime),
    Column("closed_at", UtcDateTime),
    # The first agent message: "somebody reacted" for SLA warnings and breaches.
    Column("first_response_at", UtcDateTime),
    Column("sla_warning_at", UtcDateTime),
    # Waiting on the customer since (reset by a customer message), and how many
    # reminders that wait has produced.
    Column("waiting_since", UtcDateTime),
    Column("reminders_sent", Integer, nullable=False, default=0, server_default="0"),
    # Fair use: the severity the customer claimed, and whether the shop's record of
    # overstated claims put this ticket behind others of its severity.
    Column("claimed_severity", String(20)),
    Column("deprioritized", Boolean, nullable=False, default=False, server_default=false()),
    Column("severity_reviewed", Boolean, nullable=False, default=False, server_default=false()),
    # An agent answered outside working hours: until then the customer's replies are
    # not held for the next opening (the ticket is being handled).
    Column("live_until", UtcDateTime),
    # The language of the shop user who opened it: the system messages' language.
    Column("lang", String(5), nullable=False, default="pl", server_default="pl"),
    # The newest message the shop may see (private notes are after it or between):
    # a customer's `last_seq`, so its resume asks for nothing when only notes came.
    Column("last_public_seq", Integer, nullable=False, default=0, server_default="0"),
    # The reaction clock (server.rules.deadlines): `sla_due_at` is the deadline now in
    # force (null: none runs), started at `sla_started_at`; the first reaction's own
    # deadline is kept in `first_response_due_at`. The plan the ticket was opened
    # under, and its place in the inbox: the plan's rank while a deadline runs,
    # IDLE_RANK (100) while none does.
    Column("sla_started_at", UtcDateTime),
    Column("first_response_due_at", UtcDateTime),
    Column("plan", String(20)),
    Column("inbox_rank", SmallInteger, nullable=False, default=1, server_default="1"),
    # The reports' facts, stored when they happen (migration 0016): the agent whose
    # answer was the first response; working seconds on the ticket's own calendar
    # from opening to that answer and to its first resolution; the next-response
    # steps answered (how many, their working seconds summed, how many late); and
    # the seconds the off-hours queue held it at opening.
    Column("first_responder", String(200)),
    Column("first_response_s", Integer),
    Column("resolution_s", Integer),
    Column("next_responses", Integer, nullable=False, default=0, server_default="0"),
    Column("next_response_s", BigInteger, nullable=False, default=0, server_default="0"),
    Column("next_response_breaches", Integer, nullable=False, default=0, server_default="0"),
    Column("held_s", Integer),
    UniqueConstraint("shop_id", "created_by", "client_id", name="uq_tickets_client_id"),
)
Index("ix_tickets_shop_created", tickets.c.shop_id, tickets.c.created_at)
Index("ix_tickets_status_due", tickets.c.status, tickets.c.sla_due_at)
# The agents' inbox (active tickets: those with a deadline running by plan rank, then
# by deadline; then the rest) read in index order: a page of the most urgent costs the
# same with 40 open tickets or 20,000.
_ACTIVE = text("status IN ('open', 'waiting_on_customer')")
Index("ix_tickets_inbox", tickets.c.inbox_rank, tickets.c.sla_due_at, tickets.c.id, postgresql_where=_ACTIVE,
      sqlite_where=_ACTIVE)
# The same condition for queries, spelled with literals: a prepared statement's generic
# plan can use the partial index only if the planner sees the index's own predicate.
ACTIVE_TICKETS = text("tickets.status IN ('open', 'waiting_on_customer')")
Index("ix_tickets_queued", tickets.c.queued_until)
Index("ix_tickets_lifecycle", tickets.c.status, tickets.c.waiting_since)
Index("ix_tickets_closed", tickets.c.closed_at)
# The reports' period (tickets opened between two instants).
Index("ix_tickets_created", tickets.c.created_at)
Index("ix_tickets_shop_claims", tickets.c.shop_id, tickets.c.claimed_severity, tickets.c.created_at)
# Assignment (server.store.agents): an agent's open tickets (its load, the "Moje" tab in
# inbox order) and the pool (assignee NULL), both read in index order.
Index("ix_tickets_assignee", tickets.c.assignee, tickets.c.inbox_rank, tickets.c.sla_due_at, tickets.c.id,
      postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)

messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("author_kind", String(20), nullable=False),
    Column("author_id", String(200), nullable=False),
    Column("author_name", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("client_id", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("queued_until", UtcDateTime),
    # A private note: agents only (never a customer's frame, export, mail or unread).
    Column("internal", Boolean, nullable=False, default=False, server_default=false()),
    # Resume, history and gap fills read by (ticket_id, seq); the constraint is the index.
    UniqueConstraint("ticket_id", "seq", name="uq_messages_ticket_seq"),
    # Idempotent sends: one message per author and client-made id within a ticket.
    UniqueConstraint("ticket_id", "author_kind", "author_id", "client_id", name="uq_messages_client_id"),
)

Index("ix_messages_queued", messages.c.queued_until)

read_cursors = Table(
    "read_cursors",
    metadata,
    Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
    # Principal.key: "c:<shop>:<user>" or "a:<agent>".
    Column("reader", String(420), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_read_cursors_reader", read_cursors.c.reader)

# Durable notifications (escalations) waiting for delivery to the webhook. One row
# per ticket and event: the unique constraint is what makes "at most once" hold
# when two workers find the same due escalation.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE")),
    Column("event", String(50), nullable=False),
    Column("dedup_key", String(200), nullable=False, unique=True),
    Column("payload", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    Column("last_error", String(500)),
)
Index("ix_outbox_pending", outbox.c.delivered_at, outbox.c.next_attempt_at)

# Ticket intake: uploads (bytes on disk, see server.store.attachments) and help-centre deflections.
attachments = attachment_table(metadata)
help_deflections = help_deflection_table(metadata)

# Mail and SMS notifications, opt-outs, mailed reply cursors and the local mailbox.
notifications, mail_optouts, mail_cursors, mailbox = notification_tables(metadata)
# Agent replies by time, for the unread-reply mails (only agents' messages are indexed).
_AGENT = text("author_kind = 'agent'")
Index("ix_messages_agent_replies", messages.c.created_at, postgresql_where=_AGENT, sqlite_where=_AGENT)
AGENT_MESSAGES = text("messages.author_kind = 'agent'")

# The support team as Pomoc knows it: each agent from its token at hello (at most once
# an hour, or when its name or departments change), `last_seen_at` refreshed while it
# is connected (every minute or so), `last_assigned_at` by the automatic assignment
# (the tie-break: least recently assigned first).
agents = Table(
    "agents",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("departments", JSON, nullable=False, default=list),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("last_assigned_at", UtcDateTime),
)

# A customer's answer to "was the problem solved?" on a resolved ticket (server.store.ratings).
ratings = Table(
    "ratings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
    Column("shop_id", String(200), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("solved", Boolean, nullable=False),
    Column("score", SmallInteger),  # 1–5 when solved; NULL when the answer was "no"
    Column("comment", Text),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_ratings_created", ratings.c.created_at)
Index("ix_ratings_ticket", ratings.c.ticket_id)
Index("ix_help_deflections_created", help_deflections.c.created_at)

# Canned replies agents insert from the composer (server.store.canned).
canned_replies = canned_reply_table(metadata)
