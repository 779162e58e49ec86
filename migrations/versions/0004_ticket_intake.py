"""Attachments and help-centre deflections.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import BigId, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("shop_id", sa.String(200), nullable=False),
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE")),
        sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE")),
        sa.Column("position", sa.Integer),
        sa.Column("uploader", sa.String(420), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_attachments_ticket", "attachments", ["ticket_id"])
    op.create_index("ix_attachments_sha256", "attachments", ["sha256"])
    op.create_index("ix_attachments_unsent", "attachments", ["message_id", "created_at"])
    op.create_table(
        "help_deflections",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("article_id", sa.String(100), nullable=False),
        sa.Column("shop_id", sa.String(200)),
        sa.Column("query", sa.String(500)),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_help_deflections_article_created", "help_deflections", ["article_id", "created_at"])


def downgrade() -> None:
    op.drop_table("help_deflections")
    op.drop_table("attachments")
