"""Private notes: messages only agents see, and each ticket's newest message the
shop may see.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("internal", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("last_public_seq", sa.Integer(), nullable=False, server_default="0"))
    # No note exists yet: every message so far is the shop's to see.
    op.execute("UPDATE tickets SET last_public_seq = last_seq")


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("last_public_seq")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("internal")
