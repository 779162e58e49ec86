"""Fair use: claimed severity and deprioritized tickets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("claimed_severity", sa.String(20)))
        batch.add_column(sa.Column("deprioritized", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("severity_reviewed", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_tickets_shop_claims", "tickets", ["shop_id", "claimed_severity", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tickets_shop_claims", "tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("severity_reviewed")
        batch.drop_column("deprioritized")
        batch.drop_column("claimed_severity")
