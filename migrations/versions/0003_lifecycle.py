"""Waiting-on-customer state for reminders, and indexes for the lifecycle jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("waiting_since", UtcDateTime))
        batch.add_column(sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_tickets_lifecycle", "tickets", ["status", "waiting_since"])
    op.create_index("ix_tickets_closed", "tickets", ["closed_at"])


def downgrade() -> None:
    op.drop_index("ix_tickets_closed", "tickets")
    op.drop_index("ix_tickets_lifecycle", "tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("reminders_sent")
        batch.drop_column("waiting_since")
