"""First agent response, queue indexes and the escalation outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import BigId, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("first_response_at", UtcDateTime))
        batch.add_column(sa.Column("sla_warning_at", UtcDateTime))
    op.create_index("ix_tickets_queued", "tickets", ["queued_until"])
    op.create_index("ix_messages_queued", "messages", ["queued_until"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE")),
        sa.Column("event", sa.String(50), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("locked_until", UtcDateTime),
        sa.Column("delivered_at", UtcDateTime),
        sa.Column("last_error", sa.String(500)),
    )
    op.create_index("ix_outbox_pending", "outbox", ["delivered_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_index("ix_messages_queued", "messages")
    op.drop_index("ix_tickets_queued", "tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("sla_warning_at")
        batch.drop_column("first_response_at")
