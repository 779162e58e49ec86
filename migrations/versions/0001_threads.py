"""Shops, customers, tickets, messages and read cursors.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import BigId, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(20), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "customers",
        sa.Column("shop_id", sa.String(200), sa.ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("first_seen_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "tickets",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("shop_id", sa.String(200), sa.ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(200)),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("department", sa.String(100)),
        sa.Column("assignee", sa.String(200)),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("last_message_at", UtcDateTime),
        sa.Column("sla_due_at", UtcDateTime),
        sa.Column("queued_until", UtcDateTime),
        sa.Column("resolved_at", UtcDateTime),
        sa.Column("closed_at", UtcDateTime),
        sa.UniqueConstraint("shop_id", "created_by", "client_id", name="uq_tickets_client_id"),
    )
    op.create_index("ix_tickets_shop_created", "tickets", ["shop_id", "created_at"])
    op.create_index("ix_tickets_status_due", "tickets", ["status", "sla_due_at"])
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("author_kind", sa.String(20), nullable=False),
        sa.Column("author_id", sa.String(200), nullable=False),
        sa.Column("author_name", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("queued_until", UtcDateTime),
        sa.UniqueConstraint("ticket_id", "seq", name="uq_messages_ticket_seq"),
        sa.UniqueConstraint("ticket_id", "author_kind", "author_id", "client_id", name="uq_messages_client_id"),
    )
    op.create_table(
        "read_cursors",
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reader", sa.String(420), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_read_cursors_reader", "read_cursors", ["reader"])


def downgrade() -> None:
    op.drop_table("read_cursors")
    op.drop_table("messages")
    op.drop_table("tickets")
    op.drop_table("customers")
    op.drop_table("shops")
