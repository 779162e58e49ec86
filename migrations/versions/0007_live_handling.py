"""Tickets an agent is handling outside working hours, and the opener's language.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("live_until", UtcDateTime()))
        batch.add_column(sa.Column("lang", sa.String(5), nullable=False, server_default="pl"))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("lang")
        batch.drop_column("live_until")
