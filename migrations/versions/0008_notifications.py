"""Mail and SMS notifications: the notifications to deliver, opt-outs, mailed reply
cursors, the local mailbox, and an index of agent replies by time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import BigId, UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PENDING = sa.text("finished_at IS NULL")
_AGENT = sa.text("author_kind = 'agent'")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(400), nullable=False, unique=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("lang", sa.String(5), nullable=False, server_default="pl"),
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE")),
        sa.Column("shop_id", sa.String(200)),
        sa.Column("user_id", sa.String(200)),
        sa.Column("outbox_id", BigId, sa.ForeignKey("outbox.id", ondelete="CASCADE")),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", UtcDateTime()),
        sa.Column("finished_at", UtcDateTime()),
        sa.Column("outcome", sa.String(20)),
        sa.Column("last_error", sa.String(500)),
    )
    op.create_index("ix_notifications_pending", "notifications", ["channel", "next_attempt_at"],
                    postgresql_where=_PENDING, sqlite_where=_PENDING)
    op.create_index("ix_notifications_ticket", "notifications", ["ticket_id"])
    op.create_index("ix_notifications_outbox", "notifications", ["outbox_id"])
    op.create_table(
        "mail_optouts",
        sa.Column("shop_id", sa.String(200), sa.ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("ticket_id", sa.BigInteger, primary_key=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "mail_cursors",
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reader", sa.String(420), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "mailbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("notification_id", BigId, sa.ForeignKey("notifications.id", ondelete="CASCADE"),
                  nullable=False, unique=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_mailbox_recipient", "mailbox", ["recipient", "id"])
    # The messages table may be large: on PostgreSQL the index is built without
    # blocking the writers (outside the migration's transaction).
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index("ix_messages_agent_replies", "messages", ["created_at"], postgresql_where=_AGENT,
                            postgresql_concurrently=True, if_not_exists=True)
    else:
        op.create_index("ix_messages_agent_replies", "messages", ["created_at"], sqlite_where=_AGENT)


def downgrade() -> None:
    op.drop_index("ix_messages_agent_replies", "messages")
    op.drop_index("ix_mailbox_recipient", "mailbox")
    op.drop_table("mailbox")
    op.drop_table("mail_cursors")
    op.drop_table("mail_optouts")
    op.drop_index("ix_notifications_outbox", "notifications")
    op.drop_index("ix_notifications_ticket", "notifications")
    op.drop_index("ix_notifications_pending", "notifications")
    op.drop_table("notifications")
