"""The agents' inbox in index order: active tickets by deadline.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('open', 'waiting_on_customer')")


def upgrade() -> None:
    op.create_index("ix_tickets_inbox", "tickets", ["sla_due_at", "id"], postgresql_where=ACTIVE, sqlite_where=ACTIVE)


def downgrade() -> None:
    op.drop_index("ix_tickets_inbox", "tickets")
