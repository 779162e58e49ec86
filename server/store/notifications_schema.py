"""The tables of mail and SMS notifications (declared into `server.store.models`' metadata).

- `notifications`: one row per mail or SMS to send, written in the transaction of the
  event that causes it (a ticket opened, resolved or closed by an agent, a reminder,
  an automatic resolution; unread agent replies and on-call escalations by the
  worker). `key` is the idempotency key: a second attempt to queue the same
  notification stores nothing. Delivery claims rows with a lease (`locked_until`),
  like the webhook outbox; `finished_at` and `outcome` say how it ended.
- `mail_optouts`: a shop user's "no more mail" for one ticket or (`ticket_id` 0) all.
- `mail_cursors`: per ticket and reader, the last agent reply already mailed.
- `mailbox`: mails kept locally when no SMTP server is configured (embedded mode).

A function rather than module-level tables, like `server.store.attachments_schema`.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.sql.expression import text

# Not yet finished: what the delivery jobs claim from.
PENDING = text("finished_at IS NULL")


def notification_tables(metadata: MetaData) -> tuple[Table, Table, Table, Table]:
    # Imported here so that `server.store.models` may import this module (see attachments_schema).
    from server.store.models import BigId, UtcDateTime

    notifications = Table(
        "notifications",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("key", String(400), nullable=False, unique=True),
        # ack, resolved, closed, reminder, silent_resolved, replies, oncall
        Column("kind", String(30), nullable=False),
        Column("channel", String(10), nullable=False),  # mail | sms
        Column("recipient", String(320), nullable=False),
        Column("lang", String(5), nullable=False, default="pl", server_default="pl"),
        Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE")),
        # The shop user it is about (opt-outs); none for the on-call team.
        Column("shop_id", String(200)),
        Column("user_id", String(200)),
        # The escalation it fans out (on-call mail and SMS).
        Column("outbox_id", BigId, ForeignKey("outbox.id", ondelete="CASCADE")),
        Column("data", JSON, nullable=False, default=dict),
        Column("created_at", UtcDateTime, nullable=False),
        Column("next_attempt_at", UtcDateTime, nullable=False),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
        Column("locked_until", UtcDateTime),
        Column("finished_at", UtcDateTime),
        # sent, mailbox, suppressed (opted out), read (nothing unread left), rejected, gave_up
        Column("outcome", String(20)),
        Column("last_error", String(500)),
    )
    Index("ix_notifications_pending", notifications.c.channel, notifications.c.next_attempt_at,
          postgresql_where=PENDING, sqlite_where=PENDING)
    Index("ix_notifications_ticket", notifications.c.ticket_id)
    Index("ix_notifications_outbox", notifications.c.outbox_id)

    optouts = Table(
        "mail_optouts",
        metadata,
        Column("shop_id", String(200), ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
        Column("user_id", String(200), primary_key=True),
        Column("ticket_id", BigInteger, primary_key=True),  # 0: every ticket
        Column("created_at", UtcDateTime, nullable=False),
    )

    cursors = Table(
        "mail_cursors",
        metadata,
        Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
        Column("reader", String(420), primary_key=True),
        Column("seq", Integer, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )

    mailbox = Table(
        "mailbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("notification_id", BigId, ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False,
               unique=True),
        Column("recipient", String(320), nullable=False),
        Column("subject", String(500), nullable=False),
        Column("message", Text, nullable=False),  # the whole RFC 5322 message
        Column("created_at", UtcDateTime, nullable=False),
    )
    Index("ix_mailbox_recipient", mailbox.c.recipient, mailbox.c.id)
    return notifications, optouts, cursors, mailbox
